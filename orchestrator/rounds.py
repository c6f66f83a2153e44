"""One round of the agent loop, as ``RunResult.rounds`` and the trace record it.

A round is one program executed: the first one the planner wrote, or the follow-up
(CONTINUE) or fresh program (REWRITE) it decided on after seeing the previous round's
observation. The record keeps the prompt that produced the program, the program, the names
of the steps it ran, what the checks found, the observation shown to the planner, the
decision taken after it, and whether its result was the one returned.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class RoundKind(StrEnum):
    PLAN = "plan"  # the planner's first program (with its repairs and votes)
    CONTINUE = "continue"  # a follow-up program that starts from the state so far
    REWRITE = "rewrite"  # a fresh program


@dataclass(frozen=True)
class Round:
    """What happened in one round (frozen: built once the round is decided)."""

    index: int  # 1-based
    kind: RoundKind
    form: str
    program: str | None
    prompt: str | None  # the decision prompt that produced the program (round 1: planning)
    steps: tuple[str, ...] = ()
    answer: str | None = None
    error: dict[str, Any] | None = None
    issues: tuple[dict[str, Any], ...] = ()
    observation: str | None = None
    decision: dict[str, Any] | None = None  # what was decided after this round
    tool_calls: int = 0
    seconds: float = 0.0
    started: float = 0.0  # wall-clock time the round began
    accepted: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index, "kind": str(self.kind), "form": self.form,
            "program": self.program, "prompt": self.prompt, "steps": list(self.steps),
            "answer": self.answer, "error": self.error, "issues": [dict(i) for i in self.issues],
            "observation": self.observation, "decision": self.decision,
            "tool_calls": self.tool_calls, "seconds": self.seconds, "started": self.started,
            "accepted": self.accepted,
            "meta": dict(self.meta),
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Round:
        data = dict(data)
        data.pop("type", None)
        data["kind"] = RoundKind(data["kind"])
        data["steps"] = tuple(data.get("steps") or ())
        data["issues"] = tuple(data.get("issues") or ())
        return cls(**data)


def returned(rounds: Sequence[Round | Mapping[str, Any]]) -> tuple[int, int] | None:
    """The rounds behind a run's returned result, as 1-based (first, last) indices: the
    accepted round (else the last) and the rounds it continued from, back to the latest
    fresh program (plan or rewrite; a value the loop returned, ``"round"`` in the decision
    before it, continues from the round that computed it). None without rounds (a one-shot
    run)."""
    records = [r.to_dict() if isinstance(r, Round) else r for r in rounds]
    if not records:
        return None
    chosen = next((r for r in records if r.get("accepted")), records[-1])
    last = int(chosen["index"])
    first = last
    while first > 1 and records[first - 1].get("kind") == RoundKind.CONTINUE:
        # a value the loop returned continues from the round that computed it
        source = (records[first - 2].get("decision") or {}).get("round")
        first = int(source) if source else first - 1
    return first, last


def findings(rounds: Sequence[Round | Mapping[str, Any]]) -> list[dict[str, Any]]:
    """What the checks still found on the returned round (the agent's own reasons when it
    stopped at a limit: ``[{"check": "answer-kind", "message": ..., "step": ...}]``)."""
    span = returned(rounds)
    if span is None:
        return []
    chosen = rounds[span[1] - 1]
    issues = chosen.issues if isinstance(chosen, Round) else chosen.get("issues") or ()
    return [dict(i) for i in issues]


__all__ = ["Round", "RoundKind", "findings", "returned"]
