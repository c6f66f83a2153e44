"""Rounds of the agent loop's own: it returns an offered value itself (``agent.take_offered``).

When the answer-kind check finds that a round computed a value of the kind asked for that
is not its result (``BOX0`` for "Find the saucer" whose program ended with text), the
decision offers ``ANSWER NAME``. A small planner often declines it and rewrites into
another result of the wrong kind (measured with Qwen2.5-Coder-0.5B on "Find the saucer": it
rewrote three times into a text answer instead of returning ``BOX0``). So the loop takes the
offered value itself (:func:`should_take` says when) in a round of its own
(:func:`take`): a one-line follow-up (``RESULT=NAME``) from the round that computed it, no
LLM call, no tool call, its result carrying a warning that says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .answer_kind import describe
from .checks import Check, Issue
from .forms import get_form
from .rounds import RoundKind

if TYPE_CHECKING:
    from .agent import AgentRun, Stop
    from .api import RunResult


def should_take(run: AgentRun, stop: Stop | None) -> bool:
    """Whether the loop returns the offered value itself: a value of the kind asked for
    was computed and named (``run.offered``), the round in hand has no result of that
    kind, and either the loop would end in an error now (``stop``) or the planner already
    declined such a value once (``run.declined``). At most once per run."""
    from .agent import Stop

    current = run.current
    if not run.config.take_offered or run.taken or run.offered is None or current is None:
        return False
    if stop in (Stop.ACCEPTED, Stop.CONFIRMED, Stop.CAPABILITY):
        return False
    result = current.result
    has_none = (
        result is None
        or result.error is not None
        or any(i.check is Check.ANSWER_KIND for i in current.issues)
    )
    return has_none and (stop is not None or run.declined)


def take(run: AgentRun, stop: Stop | None) -> RunResult:
    """Close the round in hand with the loop's decision to return the offered value, and
    run a round of the loop's own that returns it (a one-line follow-up from the round
    that computed it); the run's warnings gain one that says so."""
    current = run.current
    assert current is not None and run.offered is not None
    index, name = run.offered
    if index == current.index:
        values = current.result.values if current.result is not None else {}
    else:
        values = run.results[index - 1].values
    known = {**values, **run.named}
    why = f"the loop stopped ({stop})" if stop is not None else "the planner declined it"
    run._decision_meta.update(action="ANSWER", value=name, round=index, by="loop", why=why)
    run.close()
    run.taken = True
    run.start(RoundKind.CONTINUE, None, None)
    program = get_form(run.form).returning(name)
    assert run.current is not None
    run.current.program = program
    run.loop_warnings.append(
        Issue(
            Check.ANSWER_KIND,
            f"the loop returned {name}, computed in round {index} and of the kind asked "
            f"for ({describe(run.expected)}): {why}, and no program of the planner's "
            "ended with one",
            name,
            key="taken",
            fits=(name,),
        ).to_dict()
    )
    # returning a computed value runs no tool: the run's deadline does not stop it
    result = run.orch.run_program(program, run.named, run.trace, form=run.form,
                                  known=known)  # fmt: skip
    result.values = {**known, **result.values}
    return result


__all__ = ["should_take", "take"]
