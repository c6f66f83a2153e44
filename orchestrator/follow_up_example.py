"""What a decision prompt shows after a round whose result is of the wrong kind.

The agent loop (:mod:`.agent`) does not offer ANSWER for such a result. Instead the
decision prompt says which kind is needed and shows the most similar example program that
gives it (:func:`wrong_kind_text`). When that example's last step makes the kind asked for
from a value of the type the round computed (an ``Emoji`` from the faces found, a ``Count``
of the boxes), the step is also shown rewritten to read the round's result
(:func:`follow_up_example`), so a CONTINUE can finish what the round computed instead of
starting over::

    IMAGE0=Emoji(image=IMAGE, object=OBJ1, emoji='smiling_face')
    RESULT=IMAGE0

Only line programs have such steps; for any other form, or a step that reads computed
values other than the one of the result's type, nothing is shown.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from programs import template
from sandbox import VisChainError
from sandbox.ir import value_names
from tools.types import value_type

from .answer_kind import AnswerKind, describe
from .planner import fill

if TYPE_CHECKING:
    from programs import Example
    from tools import Registry

    from .api import RunResult
    from .forms import ProgramForm


def result_step(program: Any) -> str | None:
    """The step whose value a line program returns (through ``RESULT=X`` aliases): its
    target name, or None (no such tool step: a program form without steps, a result that
    is an input or a computed expression)."""
    steps = {s.target: s for s in getattr(program, "steps", ())}
    name = getattr(program, "result_name", None)
    seen: set[str] = set()
    while name in steps and steps[name].tool is None and name not in seen:
        seen.add(name)
        refs = [n for a in steps[name].args for n in value_names(a.value)]
        if len(refs) != 1:
            break
        name = refs[0]
    return name if name in steps and steps[name].tool is not None else None


def follow_up_example(
    example: str,
    program: str,
    result: RunResult,
    *,
    form: ProgramForm[Any, Any],
    registry: Registry,
    first_input: str,
) -> tuple[str, list[str]] | None:
    """The example's last step as a follow-up from the round's result: (the name of the
    round's value it reads, the follow-up's lines).

    ``example`` is the example program's text, ``program`` the round's program text and
    ``result`` its result (``result.program`` is the program as parsed to run, when it
    ran). The example's last step is shown reading the round's result when each value it
    reads is an input of the example (replaced by ``first_input``, the run's first input)
    or made by a tool whose output type is the round's result's type. None when it cannot
    be (a program form without lines, a step that reads other computed values)."""
    try:
        ours = result.program or form.parse(program)  # as parsed to run
        theirs = form.parse(example)
    except VisChainError:
        return None
    name = result_step(ours)
    if name is None or name not in result.values:
        return None
    wanted = value_type(result.values[name])
    final = result_step(theirs)
    steps = {s.target: s for s in getattr(theirs, "steps", ())}
    step = steps.get(final or "")
    if step is None or step.tool is None or step.tool not in registry:
        return None
    swap: dict[str, str] = {}
    for ref in {n for a in step.args for n in value_names(a.value)}:
        source = steps.get(ref)
        if source is None:  # an input of the example: the run's first input
            swap[ref] = first_input
        elif source.tool in registry and registry.get(source.tool).spec.output == wanted:
            swap[ref] = name
        else:
            return None
    if name not in swap.values():
        return None
    line = re.sub(r"\b[A-Za-z_]\w*\b", lambda m: swap.get(m.group(0), m.group(0)),
                  step.text.strip())  # fmt: skip
    return name, [line, form.returning(step.target).strip()]


def wrong_kind_text(
    expected: AnswerKind, example: Example | None, follow_up: tuple[str, list[str]] | None
) -> str:
    """What the decision prompt says of a result of the wrong kind: the kind needed
    (``expected``), the most similar example program that gives it (``example``, when
    there is one) and that example's last step as a follow-up from the round's result
    (``follow_up``, from :func:`follow_up_example`; shown only with an example)."""
    kind = describe(expected)
    text = fill(template("decision_wrong_kind"), kind=kind)
    if example is None:
        return text
    program = "".join(f"#   {line}\n" for line in example.text.splitlines())
    text += fill(template("decision_kind_example"), kind=kind,
                 instruction=example.instruction, program=program.rstrip("\n"))  # fmt: skip
    if follow_up is not None:
        name, lines = follow_up
        shown = "".join(f"#   {line}\n" for line in lines)
        text += fill(template("decision_kind_follow_up"), kind=kind, name=name,
                     program=shown.rstrip("\n"))  # fmt: skip
    return text


__all__ = ["follow_up_example", "result_step", "wrong_kind_text"]
