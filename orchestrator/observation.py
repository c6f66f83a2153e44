"""What the planner is shown after a round ran: a compact, token-budgeted text rendering.

Built only from the typed trace — each step record's variable, tool, line, status, typed
output summary (``render.summarize``: counts, labels with scores, boxes, answers, image
sizes, text read) and error record (code, line, message) — never from ``repr`` of a value.
Every line starts with ``# `` so the text reads as comments in either program form.

Fitting the budget: each step is first rendered with up to 5 items per list and 160
characters of text; if the whole is over budget, lists shrink to 2 items and texts to 60
characters, then to counts only; if it is still over, steps in the middle are dropped
(failed steps and those a check names are kept) and a line says how many were left out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .checks import Issue
from .trace import StepStatus

# (items per list, characters of text) from the most detailed to the least
DETAIL_LEVELS = ((5, 160), (2, 60), (0, 24))


class StepLike(Protocol):
    """The fields of a trace step record an observation reads."""

    step: str
    line: int
    tool: str | None
    status: StepStatus
    output: dict[str, Any] | None
    error: dict[str, Any] | None


@dataclass(frozen=True)
class Observation:
    """The rendered text, its size in tokens, and how many steps it shows of how many."""

    text: str
    tokens: int
    shown: int
    total: int

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "tokens": self.tokens, "shown": self.shown, "total": self.total}


def _clip(text: str, chars: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= chars else text[: max(chars - 1, 1)] + "…"


def _score(score: Any) -> str:
    return "" if score is None else f" {float(score):.2f}"


def _box(box: Any) -> str:
    return "[" + ",".join(str(round(v)) for v in box) + "]" if box else ""


def summary_text(summary: Mapping[str, Any] | None, items: int, chars: int) -> str:
    """One line for a typed value summary (``render.summarize``'s dict)."""
    if not summary:
        return "nothing"
    kind = summary.get("type")
    if kind == "Image":
        return f"image {summary.get('width')}×{summary.get('height')}"
    if kind == "ObjectList":
        count = summary.get("count", 0)
        objs = list(summary.get("objects") or [])[:items]
        shown = ", ".join(
            f"{_clip(o.get('label') or 'object', 30)}{_score(o.get('score'))} {_box(o.get('box'))}"
            for o in objs
        )
        more = " …" if count > len(objs) and objs else ""
        return f"{count} object(s)" + (f": {shown}{more}" if shown else "")
    if kind == "Object":
        return (
            f"object {_clip(summary.get('label') or '', 30)}{_score(summary.get('score'))} "
            f"{_box(summary.get('box'))}"
        ).strip()
    if kind == "PointList":
        count = summary.get("count", 0)
        pts = list(summary.get("points") or [])[:items]
        shown = ", ".join(f"({p['x']:.0f},{p['y']:.0f})" for p in pts)
        return f"{count} point(s)" + (f": {shown}" if shown else "")
    if kind == "Bool":
        return "yes" if summary.get("value") else "no"
    if kind == "Number":
        return f"number {summary.get('value')}"
    if kind == "Text":
        return f"text '{_clip(summary.get('text', ''), chars)}'"
    if kind == "TextList":
        values = [f"'{_clip(v, 40)}'" for v in list(summary.get("items") or [])[:items]]
        count = summary.get("count", len(values))
        return f"{count} text(s)" + (f": {', '.join(values)}" if values else "")
    if kind == "None":
        return "none"
    return f"{kind} {_clip(summary.get('text', ''), chars)}".strip()


def step_line(step: StepLike, items: int, chars: int) -> str:
    """``# OBJ0 (line 1, FaceDet): ok → 2 object(s): face 0.99 [10,20,50,60]``"""
    head = f"# {step.step} (line {step.line}, {step.tool or 'value'}): {step.status}"
    if step.status == StepStatus.OK:
        return f"{head} → {summary_text(step.output, items, chars)}"
    if step.error:
        return f"{head} [{step.error.get('code')}] {_clip(step.error.get('message', ''), chars)}"
    return head


def render(
    steps: Sequence[StepLike],
    *,
    result: str,
    issues: Sequence[Issue] = (),
    variables: Mapping[str, Mapping[str, Any]] | None = None,
    budget: int = 600,
    count_tokens: Callable[[str], int] | None = None,
) -> Observation:
    """The observation of one round: its steps, the result line, the variables a follow-up
    program may read (name → typed summary) and what the checks found, in ``budget``
    tokens (counted with ``count_tokens``; about 4 characters a token without it)."""
    count = count_tokens or (lambda text: max(1, len(text) // 4))
    keep = {i.step for i in issues if i.step} | {
        s.step for s in steps if s.status == StepStatus.ERROR
    }

    def build(items: int, chars: int, shown: Sequence[StepLike], left_out: int) -> str:
        lines = ["# What happened:"]
        for i, s in enumerate(shown):
            lines.append(step_line(s, items, chars))
            if left_out and i == len(shown) // 2 - 1:
                lines.append(f"# … {left_out} step(s) left out …")
        lines.append(f"# Result: {_clip(result, chars)}")
        if variables:
            lines.append(
                "# Variables: "
                + "; ".join(
                    f"{n} = {summary_text(v, min(items, 2), 40)}" for n, v in variables.items()
                )
            )
        if issues:
            lines += [f"# Check {i.check}: {_clip(i.message, 2 * chars)}" for i in issues]
        else:
            lines.append("# Checks: none fired")
        return "\n".join(lines) + "\n"

    text = ""
    for items, chars in DETAIL_LEVELS:
        text = build(items, chars, steps, 0)
        if count(text) <= budget:
            return Observation(text, count(text), len(steps), len(steps))
    items, chars = DETAIL_LEVELS[-1]
    shown = list(steps)
    while len(shown) > 2 and count(text) > budget:
        middle = [i for i in range(1, len(shown) - 1) if shown[i].step not in keep]
        if not middle:
            break
        del shown[middle[len(middle) // 2]]
        text = build(items, chars, shown, len(steps) - len(shown))
    return Observation(text, count(text), len(shown), len(steps))


__all__ = ["DETAIL_LEVELS", "Observation", "render", "step_line", "summary_text"]
