"""Checks that send a round's result back to the planner: each one configurable, each
finding recorded in the trace.

- ``runtime-error``: the result was not computed (a step failed on its way);
- ``empty-detection``: a detection or selection found nothing, and later steps used it —
  unless the instruction asks for a number or a yes/no, every step that used it reduced it
  to one (``Count``: "how many dogs?" → 0 is the answer, not a failure) and the result is of
  the kind asked for (``checks.empty_counts: true`` makes that a finding too);
- ``answer-kind``: the result's kind does not fit the kind the instruction asks for (decided
  once per run, see :mod:`orchestrator.answer_kind`) — unless it is a VLM's or LLM's reply
  to a question of that kind (the program asked the right thing; the reply is the model's);
  the finding names the values already computed that are of the right kind
  (:attr:`Issue.fits`), which a decision can return as they are (``ANSWER NAME``), and the
  models' replies the result was computed from that are not of the kind their question
  asked for (an Eval adding two Vqa replies to "How many...?" that are words, not numbers:
  the model's answers are what went wrong, and a re-planned program would ask the same);
- ``tool-fit``: a detection the result depends on finds nothing the instruction names
  (``FaceDet`` → ``Count`` for "how many wheels?", ``Seg`` of every region, a ``Loc`` query
  the instruction does not mention) and no step that uses it is told what it names (see
  :mod:`orchestrator.tool_fit`; ``about``, what the instruction names, is decided once);
- ``low-confidence``: a tool's best score is under its threshold (per tool, in the config);
- ``unsure-answer``: a VLM or LLM answered "unknown", "unclear", "cannot tell"...

Checks read the typed step records of the trace, the result value and the round's computed
values, nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from .answer_kind import (
    AnswerKind,
    describe,
    fits,
    is_unsure,
    kind_by_rules,
    kind_of_summary,
    kind_of_value,
    matches,
)
from .render import summarize
from .tool_fit import record_steps, unfit
from .trace import StepStatus

if TYPE_CHECKING:
    from .config import AgentChecks
    from .observation import StepLike


class Check(StrEnum):
    RUNTIME_ERROR = "runtime-error"
    EMPTY_DETECTION = "empty-detection"
    ANSWER_KIND = "answer-kind"
    TOOL_FIT = "tool-fit"
    LOW_CONFIDENCE = "low-confidence"
    UNSURE_ANSWER = "unsure-answer"


# findings on a result that was computed and is of the right kind: what the tools found (or
# could not tell) may simply be so; a re-phrased round that reproduces the result confirms it
SOFT = frozenset({Check.EMPTY_DETECTION, Check.LOW_CONFIDENCE, Check.UNSURE_ANSWER})


@dataclass(frozen=True)
class Issue:
    """One check that fired: which, why (written for the planner), at which step; ``key``
    is what the finding is about without the program's names and lines (the tool, the error
    code, the result's kind), so a re-phrased program that fails the same way repeats it;
    ``fits`` (answer-kind) names the steps whose values are of the kind asked for."""

    check: Check
    message: str
    step: str | None = None
    key: str = ""
    fits: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "check": str(self.check), "fits": list(self.fits)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Issue:
        return cls(
            Check(data["check"]), data["message"], data.get("step"), data.get("key", ""),
            tuple(data.get("fits") or ()),
        )  # fmt: skip

    @property
    def signature(self) -> tuple[str, str]:
        """What makes two findings "the same" when deciding that errors repeat."""
        return (str(self.check), self.key or self.message)


_LISTS = ("ObjectList", "PointList")
_REDUCED = (AnswerKind.NUMBER, AnswerKind.YESNO)  # a count, or whether there is any


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
    values: Mapping[str, Any] | None = None,
    about: frozenset[str] = frozenset(),
    names: Sequence[str] = (),
    queries: bool = True,
    proper: frozenset[str] = frozenset(),
) -> list[Issue]:
    """Every finding on one round: its step records, its output value and its error;
    ``values`` are the round's computed values by name (inputs left out), which the
    answer-kind finding searches for values of the kind asked for; ``about``: what the
    instruction names (:func:`orchestrator.tool_fit.named`; empty: tool-fit is not judged),
    ``names`` its words as written, for the finding's message; ``queries``: whether a
    detection's query is judged too (not in a follow-up, which may re-phrase it);
    ``proper``: the names the instruction gives (:func:`orchestrator.tool_fit.proper_names`)."""
    issues: list[Issue] = []
    used_by: dict[str, list[StepLike]] = {}
    for s in steps:
        for d in getattr(s, "deps", None) or []:
            used_by.setdefault(d, []).append(s)
    answered = error is None and (
        fits(expected, kind_of_value(output)) or _asked(steps, output, expected, config)
    )
    if config.runtime_error and error is not None:
        where = f" (line {error.line}, step {error.step})" if getattr(error, "line", None) else ""
        failed = next((s for s in steps if s.step == getattr(error, "step", None)), None)
        code = getattr(error, "code", "error")
        tool = failed.tool if failed is not None else ""
        if failed is None and str(code) == "planning":  # no program ran: what failed to check
            tool = _planning_key(str(getattr(error, "message", error)))
        issues.append(
            Issue(
                Check.RUNTIME_ERROR,
                f"[{code}]{where} {getattr(error, 'message', error)}",
                getattr(error, "step", None),
                key=f"{code} {tool}".strip(),
            )
        )
    for s in steps:
        if s.status != StepStatus.OK or not s.output:
            continue
        kind = s.output.get("type")
        if config.empty_detection and kind in _LISTS and s.output.get("count") == 0:
            users = used_by.get(s.step, [])
            counted = (
                not config.empty_counts
                and answered
                and expected in _REDUCED
                and all(kind_of_summary(u.output) in _REDUCED for u in users)
            )
            if users and not counted:
                issues.append(
                    Issue(
                        Check.EMPTY_DETECTION,
                        f"{s.tool} found nothing for {s.step} (line {s.line}), and "
                        f"{', '.join(u.step for u in users)} used it",
                        s.step,
                        key=str(s.tool),
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
                    key=str(s.tool),
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
                    key=str(s.tool),
                )
            )
    if config.tool_fit and error is None:
        for miss in unfit(
            about,
            record_steps(steps),
            subjects=config.fit_subjects,
            synonyms=config.fit_synonyms,
            queries=queries,
            proper=proper,
        ):
            issues.append(
                Issue(Check.TOOL_FIT, miss.message(names), miss.step.name, key=str(miss.step.tool))
            )
    if config.answer_kind and error is None and not answered:
        got = kind_of_value(output)
        ready = [
            name
            for name, value in (values or {}).items()
            if not name.startswith("_")
            and name != "RESULT"
            and value is not output
            and kind_of_value(value) is not AnswerKind.ANY
            and fits(expected, kind_of_value(value))
        ]
        ready.reverse()  # the latest first: it went furthest towards the answer
        # of exactly the kind asked for first: boxes for "find the saucer" before a crop
        ready.sort(key=lambda n: not matches(expected, kind_of_value(values[n])))
        message = f"the instruction asks for {describe(expected)} but the result is {describe(got)}"
        for s in _off_kind_replies(steps, output, expected, config)[:2]:
            message += (
                f"; {s.tool}'s reply to '{_question(s)}' ({s.step}) is not {describe(expected)}: "
                f"'{_clip(str(s.output.get('text', '')))}' (the model's answer, not the program's)"
            )
        if ready:
            message += "; already computed and of that kind: " + ", ".join(
                f"{n} = {_short(values[n])}" for n in ready[:3]
            )
        issues.append(
            Issue(Check.ANSWER_KIND, message, key=f"{expected}<-{got}", fits=tuple(ready))
        )
    return issues


def _asked(
    steps: Sequence[StepLike], output: Any, expected: AnswerKind, config: AgentChecks
) -> bool:
    """Whether the result is an answering model's reply (``unsure_tools``: Vqa, LlmQuery)
    to a question of the kind asked for: the program did the right kind of thing, and what
    the model replied is the model's (a re-planned program would ask the same; an unsure
    reply is the unsure-answer check's)."""
    if output is None:
        return False
    step = _result_step(steps, output, among=config.unsure_tools)
    return step is not None and _asks_for(step, expected)


def _result_step(
    steps: Sequence[StepLike], output: Any, among: Collection[str] | None = None
) -> StepLike | None:
    """The last step that ended with the result (of one of the tools ``among``, if given)."""
    want = summarize(output)
    return next(
        (
            s
            for s in reversed(steps)
            if (among is None or s.tool in among) and s.status == StepStatus.OK and s.output == want
        ),
        None,
    )


def _question(step: StepLike) -> str | None:
    """The question an answering model's step was asked (its ``question`` argument)."""
    args = getattr(step, "args", None) or []
    question = next((a.summary for a in args if a.name == "question"), None)
    return str(question).strip("'\" ") if question else None


def _asks_for(step: StepLike, expected: AnswerKind) -> bool:
    """Whether the step's question, by its wording, asks for an answer of the kind asked."""
    question = _question(step)
    kind = kind_by_rules(question) if question else None
    return kind is not None and fits(expected, kind)


def _off_kind_replies(
    steps: Sequence[StepLike], output: Any, expected: AnswerKind, config: AgentChecks
) -> list[StepLike]:
    """The answering models' replies the result was computed from (``unsure_tools``: Vqa,
    LlmQuery) to questions that ask for the kind asked, which are not of that kind (a VLM
    that answers "How many wheels?" with a word): why a result combined from them (an Eval
    of a sum) is not of that kind either — the model's answers, not the program's doing."""
    by_name = {s.step: s for s in steps}
    last = _result_step(steps, output)
    todo, seen = ([last.step] if last is not None else []), set()
    while todo:
        name = todo.pop()
        if name in seen or name not in by_name:
            continue
        seen.add(name)
        todo.extend(getattr(by_name[name], "deps", None) or [])
    return [
        s
        for s in steps
        if s.step in seen
        and s.tool in config.unsure_tools
        and s.status == StepStatus.OK
        and s.output is not None
        and _asks_for(s, expected)
        and not fits(expected, kind_of_summary(s.output))
    ]


_LOCATION = re.compile(r"line \d+(, col \d+)?:?\s*")
_NAME = re.compile(r"\b[A-Z][A-Z_]*\d+\b|\b\d+\b")  # a program's own names (BOX0) and numbers


def _planning_key(message: str) -> str:
    """What a planning failure was about, without the program's names, lines and numbers:
    two failures with other problems (an unknown tool, then a type error) are not "the same
    findings", so the loop does not stop as if the planner repeated itself."""
    _, _, last = message.partition("last errors:")
    return " ".join(_NAME.sub("N", _LOCATION.sub("", last or message)).split())


def _short(value: Any) -> str:
    return _clip(str(summarize(value).get("text", "")))


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 40 else text[:39] + "…"


__all__ = ["SOFT", "Check", "Issue", "run_checks"]
