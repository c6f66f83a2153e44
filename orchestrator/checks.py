"""Checks that send a round's result back to the planner: each one configurable, each
finding recorded in the trace.

- ``runtime-error``: the result was not computed (a step failed on its way);
- ``empty-detection``: a detection or selection found nothing, and later steps used it;
- ``answer-kind``: the result's kind does not fit the kind the instruction asks for (decided
  once per run, see :mod:`orchestrator.answer_kind`);
- ``low-confidence``: a tool's best score is under its threshold (per tool, in the config);
- ``unsure-answer``: a VLM or LLM answered "unknown", "unclear", "cannot tell"...

Checks read the typed step records of the trace and the result value, nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from .answer_kind import AnswerKind, fits, is_unsure, kind_of_value
from .trace import StepStatus

if TYPE_CHECKING:
    from .config import AgentChecks
    from .observation import StepLike


class Check(StrEnum):
    RUNTIME_ERROR = "runtime-error"
    EMPTY_DETECTION = "empty-detection"
    ANSWER_KIND = "answer-kind"
    LOW_CONFIDENCE = "low-confidence"
    UNSURE_ANSWER = "unsure-answer"


@dataclass(frozen=True)
class Issue:
    """One check that fired: which, why (written for the planner), and at which step."""

    check: Check
    message: str
    step: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "check": str(self.check)}

    @property
    def signature(self) -> tuple[str, str]:
        """What makes two findings "the same" when deciding that errors repeat."""
        return (str(self.check), self.message)


_LISTS = ("ObjectList", "PointList")


def _scores(summary: dict[str, Any] | None) -> list[float]:
    if not summary:
        return []
    if summary.get("type") == "Object":
        return [summary["score"]] if summary.get("score") is not None else []
    return [o["score"] for o in summary.get("objects") or [] if o.get("score") is not None]


def run_checks(
    steps: Sequence[StepLike],
    *,
    output: Any,
    error: Any,
    expected: AnswerKind,
    config: AgentChecks,
) -> list[Issue]:
    """Every finding on one round: its step records, its output value and its error."""
    issues: list[Issue] = []
    used_by: dict[str, list[str]] = {}
    for s in steps:
        for d in getattr(s, "deps", None) or []:
            used_by.setdefault(d, []).append(s.step)
    if config.runtime_error and error is not None:
        where = f" (line {error.line}, step {error.step})" if getattr(error, "line", None) else ""
        issues.append(
            Issue(
                Check.RUNTIME_ERROR,
                f"[{getattr(error, 'code', 'error')}]{where} {getattr(error, 'message', error)}",
                getattr(error, "step", None),
            )
        )
    for s in steps:
        if s.status != StepStatus.OK or not s.output:
            continue
        kind = s.output.get("type")
        if config.empty_detection and kind in _LISTS and s.output.get("count") == 0:
            users = used_by.get(s.step, [])
            if users:
                issues.append(
                    Issue(
                        Check.EMPTY_DETECTION,
                        f"{s.tool} found nothing for {s.step} (line {s.line}), and "
                        f"{', '.join(users)} used it",
                        s.step,
                    )
                )
        threshold = config.low_confidence.get(s.tool or "")
        scores = _scores(s.output)
        if threshold is not None and scores and max(scores) < threshold:
            issues.append(
                Issue(
                    Check.LOW_CONFIDENCE,
                    f"{s.tool}'s best score for {s.step} is {max(scores):.2f}, under "
                    f"{threshold:.2f}",
                    s.step,
                )
            )
        if (
            config.unsure_answer
            and s.tool in config.unsure_tools
            and kind == "Text"
            and is_unsure(str(s.output.get("text", "")), config.unsure_phrases)
        ):
            issues.append(
                Issue(
                    Check.UNSURE_ANSWER,
                    f"{s.tool} answered '{s.output.get('text', '')}' for {s.step}",
                    s.step,
                )
            )
    if config.answer_kind and error is None:
        got = kind_of_value(output)
        if not fits(expected, got):
            issues.append(
                Issue(
                    Check.ANSWER_KIND,
                    f"the instruction asks for {_describe(expected)} but the result is "
                    f"{_describe(got)}",
                )
            )
    return issues


_DESCRIPTIONS = {
    AnswerKind.YESNO: "a yes/no answer",
    AnswerKind.NUMBER: "a number",
    AnswerKind.TEXT: "a text answer",
    AnswerKind.LABEL: "a label (a name or category)",
    AnswerKind.IMAGE: "an image",
    AnswerKind.OBJECTS: "objects (boxes or masks)",
    AnswerKind.ANY: "anything",
}


def _describe(kind: AnswerKind) -> str:
    return _DESCRIPTIONS[kind]


__all__ = ["Check", "Issue", "run_checks"]
