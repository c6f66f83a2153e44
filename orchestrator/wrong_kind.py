"""The kind of answer an agent run asks for, as its programs and decisions are told it.

The agent loop (:mod:`.agent`) decides once what kind of answer the instruction asks for
(:mod:`.answer_kind`). A :class:`KindAsked` holds that kind with what it is judged against
(the planner's tools and examples, the instruction, the program form) and decides three
things from it:

- which examples show the kind (:meth:`KindAsked.shows_kind`): in agent runs they rank
  first, so a small planner copies a pattern that returns the right kind;
- whether a program, by its result's type, can give the kind at all
  (:meth:`KindAsked.check_kind`, ``agent.static_kind``): one that cannot (an image for a
  yes/no question) is sent back for repair before it runs, told which tools give one
  (:meth:`KindAsked.giving`: first those the most similar example of the kind calls, the
  step such an instruction ends with);
- what a decision prompt says of a round whose result is of the wrong kind
  (:meth:`KindAsked.wrong_kind_text`): the kind needed, the most similar example program
  that gives it and, when it can be, that example's last step as a follow-up from the
  round's result (:mod:`.follow_up_example`) — returned with whether that follow-up was
  shown, since the program written after such a decision is then cued as a follow-up.

What varies per call (a program and its result type, the round's program and result, the
run's first input) is passed in; the object itself holds no state of a round.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sandbox import ErrorCode, ProgramError, VisChainError

from .answer_kind import AnswerKind, describe, example_kind, fits, kind_of_type, matches
from .follow_up_example import follow_up_example, wrong_kind_text
from .forms import form_of, get_form

if TYPE_CHECKING:
    from programs import Example

    from .api import RunResult
    from .forms import Parsed
    from .planner import Planner


@dataclass(frozen=True)
class KindAsked:
    """The kind of answer asked for (``expected``) and what it is judged against: the
    ``planner`` (its tools and examples), the ``instruction`` (the nearest example is the
    most similar to it) and the program ``form`` (the examples of that form)."""

    planner: Planner
    expected: AnswerKind
    instruction: str
    form: str

    def shows_kind(self, example: Example) -> bool:
        """Whether an example's program gives the kind of answer asked for (its result's
        type as the checker knows it; for a text or untyped result, its instruction's
        wording): in agent runs such examples rank first, so a small planner copies a
        pattern that returns the right kind."""
        got = example_kind(self.planner.example_result_type(example), example.instruction)
        return matches(self.expected, got)

    def check_kind(self, type_name: str | None, program: Parsed) -> ProgramError | None:
        """An error to repair when a program's result, by its type, cannot be of the kind
        asked for (an image for a yes/no question, a count for "find the dogs"). A text
        result may be any kind of answer (what a VLM replies), except an image or objects."""
        got = kind_of_type(type_name)
        if fits(self.expected, got) or (
            got is AnswerKind.TEXT and self.expected not in (AnswerKind.IMAGE, AnswerKind.OBJECTS)
        ):
            return None
        steps = getattr(program, "steps", ())
        name = getattr(program, "result_name", None)
        line = next((s.line for s in steps if s.target == name), 1)
        giving = self.giving(type_name, form_of(program).name)
        message = (
            f"the result is {describe(got)} ({type_name}), but the instruction asks for "
            f"{describe(self.expected)}: end the program with a value of that kind"
        )
        if giving:
            message += f" (tools that give one: {', '.join(giving[:8])})"
        return ProgramError(ErrorCode.WRONG_TYPE, message, line, 1, name)

    def giving(self, type_name: str | None, form: str | None = None) -> list[str]:
        """The tools whose result is of the kind asked for: first those the most similar
        example of that kind calls (a blur, an emoji: the step such an instruction ends
        with; among the examples of ``form``, the program's own, else the run's), then
        those that take a value of the type the program has (``type_name``), then the
        rest, each group in the registry's order."""
        registry = self.planner.registry
        giving = [
            t.spec.name for t in registry
            if kind_of_type(t.spec.output) is not AnswerKind.ANY
            and matches(self.expected, kind_of_type(t.spec.output))
        ]  # fmt: skip
        shown: set[str] = set()
        example = self.planner.nearest_example(self.instruction, form or self.form, self.shows_kind)
        if example is not None:
            try:
                form = get_form(example.form)
                used = form.tools_used(form.parse(example.program))
            except VisChainError:
                used = set()
            shown = {registry.get(n).spec.name for n in used if n in registry}
        reads = set(registry.taking(type_name, required=True)) if type_name else set()
        return sorted(giving, key=lambda n: (n not in shown, n not in reads))

    def wrong_kind_text(
        self, program: str | None, result: RunResult | None, first_input: str
    ) -> tuple[str, bool]:
        """What the decision prompt says of a round's result of the wrong kind (``program``
        and ``result``: the round's), and whether it shows a follow-up: the kind needed, the
        most similar example program that gives it and, when it can be, that example's
        last step as a follow-up from the round's result (:meth:`follow_up_example`) — the
        most similar example whose last step can follow up, when any can (however the
        examples are ranked: by embeddings, or by word overlap where no embedding model is
        installed)."""
        nearest = self.planner.nearest_example
        follows: dict[str, tuple[str, list[str]] | None] = {}

        def follows_on(example: Example) -> bool:  # of the kind, and its last step follows up
            if not self.shows_kind(example):
                return False  # parsed for a follow-up only when it shows the kind
            if example.text not in follows:
                follows[example.text] = self.follow_up_example(
                    example.text, program, result, first_input
                )
            return follows[example.text] is not None

        example = nearest(self.instruction, self.form, follows_on) or nearest(
            self.instruction, self.form, self.shows_kind
        )
        follow = None if example is None else follows.get(example.text)
        return wrong_kind_text(self.expected, example, follow), follow is not None

    def follow_up_example(
        self, example: str, program: str | None, result: RunResult | None, first_input: str
    ) -> tuple[str, list[str]] | None:
        """The example's last step as a follow-up from a round's result (name, lines;
        :func:`.follow_up_example.follow_up_example`; ``program`` and ``result``: the
        round's, ``first_input``: the run's first input), None when it cannot be (no
        program, or no result yet)."""
        if result is None or not program:
            return None
        return follow_up_example(
            example,
            program,
            result,
            form=get_form(self.form),
            registry=self.planner.registry,
            first_input=first_input,
        )


__all__ = ["KindAsked"]
