"""Where a wrong answer went wrong: the analysis the VisProg paper did by hand.

For an item answered wrongly (or not at all), :func:`attribute` names one culprit:

0. a run the agent loop ended at one of its limits (``agent-limit``) is blamed on what its
   checks still found on the round it returned — ``program`` (answer-kind), ``empty``
   (empty-detection), ``error`` (runtime-error, with the failed step), ``low-confidence``
   or ``unsure`` — rather than on a generic error;
1. ``input`` — the item's own inputs could not be used (an image missing, corrupt or past
   the limits: a ``bad-input`` error before any step ran): no program is to blame;
   ``planning`` — no program came out of planning;
2. ``program`` — the program ran but does not do what was asked: its result is not of the
   kind the instruction asks for (a count asked, an image returned), judged with the
   agent loop's answer-kind check (:mod:`orchestrator.answer_kind`);
3. otherwise the first step, in program order, whose output is implausible: ``error`` (it
   failed), ``empty`` (a detection found nothing), ``type`` (its value is not the type its
   tool declares);
4. otherwise ``answer`` — every step looks plausible and the answer is simply wrong; the
   culprit is the tool step that produced the result (else the last tool step).

With the agent loop, only the steps behind the returned result count (its round and the
rounds it continued from): an empty detection a later round re-phrased is not the culprit.

Counts per (category, tool) go into the report's attribution table.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from tools import Registry
from tools.errors import ToolErrorCode
from tools.types import assignable, value_type

from ..answer_kind import AnswerKind, fits, kind_by_rules, kind_of_value
from ..errors import RunErrorCode
from ..rounds import findings, returned
from ..trace import StepRecord, Trace

_EMPTY_TYPES = ("ObjectList", "PointList")


class Culprit(StrEnum):
    INPUT = "input"
    PLANNING = "planning"
    PROGRAM = "program"
    ERROR = "error"
    EMPTY = "empty"
    TYPE = "type"
    ANSWER = "answer"
    LOW_CONFIDENCE = "low-confidence"
    UNSURE = "unsure"


# the agent's checks (orchestrator.checks) → the culprit they name
_BY_CHECK = {
    "answer-kind": Culprit.PROGRAM,
    "tool-fit": Culprit.PROGRAM,
    "empty-detection": Culprit.EMPTY,
    "runtime-error": Culprit.ERROR,
    "low-confidence": Culprit.LOW_CONFIDENCE,
    "unsure-answer": Culprit.UNSURE,
}


@dataclass(frozen=True)
class Attribution:
    culprit: Culprit
    reason: str
    step: str | None = None
    tool: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "culprit": self.culprit.value}


def expected_kind(instruction: str, kind: str | None) -> AnswerKind | None:
    """The answer kind an item asks for: the dataset's when it states one, else the
    instruction's wording (None when neither says)."""
    if kind:
        try:
            return AnswerKind(kind)
        except ValueError:
            return None
    return kind_by_rules(instruction)


def _implausible(rec: StepRecord, registry: Registry | None) -> Attribution | None:
    status = str(rec.status)
    if status == "error":
        message = (rec.error or {}).get("message", "failed")
        return Attribution(Culprit.ERROR, str(message), rec.step, rec.tool)
    if status != "ok":
        return None
    summary = rec.output or {}
    kind = value_type(rec.value) if rec.value is not None else str(summary.get("type", ""))
    if kind in _EMPTY_TYPES and summary.get("count") == 0:
        return Attribution(Culprit.EMPTY, f"{rec.tool} found nothing", rec.step, rec.tool)
    if registry is not None and rec.tool and rec.tool in registry and rec.value is not None:
        declared = registry.get(rec.tool).spec.output
        if not assignable(kind, declared):
            reason = f"{rec.tool} returned {kind}, declared {declared}"
            return Attribution(Culprit.TYPE, reason, rec.step, rec.tool)
    return None


def attribute(
    trace: Trace,
    *,
    instruction: str,
    output: Any,
    ok: bool,
    kind: str | None = None,
    registry: Registry | None = None,
) -> Attribution:
    """The culprit for one wrongly answered item (see the module docstring)."""
    steps = sorted(trace.steps, key=lambda s: s.index)
    span = returned(trace.rounds)
    if span is not None:
        steps = [s for s in steps if span[0] <= s.meta.get("round", span[0]) <= span[1]]
    if not ok and (trace.error or {}).get("code") == RunErrorCode.AGENT_LIMIT:
        for issue in findings(trace.rounds):
            culprit = _BY_CHECK.get(str(issue.get("check")))
            if culprit is not None:
                name = issue.get("step")
                tool = next((s.tool for s in reversed(steps) if name and s.step == name), None)
                return Attribution(culprit, f"{issue['check']}: {issue['message']}", name, tool)
    if not steps and not trace.program:
        message = (trace.error or {}).get("message", "no program")
        if (trace.error or {}).get("code") == ToolErrorCode.BAD_INPUT:
            return Attribution(Culprit.INPUT, str(message))
        return Attribution(Culprit.PLANNING, str(message))
    if ok:
        wanted = expected_kind(instruction, kind)
        got = kind_of_value(output)
        if wanted is not None and not fits(wanted, got):
            return Attribution(Culprit.PROGRAM, f"asked for {wanted}, the program returned {got}")
    for rec in steps:
        found = _implausible(rec, registry)
        if found is not None:
            return found
    if not ok:
        message = (trace.error or {}).get("message", "the run failed")
        return Attribution(Culprit.ERROR, str(message))
    tools = [s for s in reversed(steps) if s.tool and str(s.status) == "ok"]
    last = next((s for s in tools if s.value is output and output is not None), None)
    last = last or next(iter(tools), None)
    return Attribution(
        Culprit.ANSWER,
        "every step looks plausible; the answer is wrong",
        last.step if last else None,
        last.tool if last else None,
    )
