"""One item's score: what the run predicted, in the form the item's metric compares, and
the metric's value (0..1).

- text metrics (exact, GQA, VQA, NLVR2) read ``RunResult.answer`` (yes/no for booleans);
- boxes (RefCOCO) come from the output: a Box, an Object, the best-scoring object of an
  ObjectList, or a crop (an Image cut from the input: its place in the picture), mapped to
  the original picture's pixels;
- (box, label) pairs (tagging, editing) come from the output when it is an ObjectList,
  else from the last object list the program computed (what it tagged or edited).

An item is *correct* when its score is 1 — except VQA, where any answer at least one
other annotator gave (a score above 0) counts, as the metric gives partial credit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tools.types import Box, Image, Object, ObjectList

from . import metrics
from .datasets import Item, Metric


@dataclass(frozen=True)
class Score:
    value: float
    correct: bool
    prediction: Any  # JSON-friendly: text, [x0, y0, x1, y1], or [[box, label], ...]
    pairs: metrics.PairCounts | None = None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def exact_match(prediction: str | None, answer: str | list[str]) -> float:
    """Normalised exact match against the answer (or any of a list); numbers as numbers."""
    if prediction is None:
        return 0.0
    guess = metrics.gqa_normalize(prediction)
    for option in answer if isinstance(answer, list) else [answer]:
        want = metrics.gqa_normalize(option)
        a, b = _number(guess), _number(want)
        if guess == want or (a is not None and a == b):
            return 1.0
    return 0.0


def _shifted(box: Box, origin: tuple[int, int]) -> list[float]:
    ox, oy = origin
    return [box.x0 + ox, box.y0 + oy, box.x1 + ox, box.y1 + oy]


def predicted_box(output: Any) -> list[float] | None:
    """The box an output points at, in the original picture's pixels (None if none)."""
    if isinstance(output, Box):
        return _shifted(output, (0, 0))
    if isinstance(output, Object):
        return _shifted(output.box, (0, 0))
    if isinstance(output, ObjectList) and len(output):
        scored = [o for o in output.items if o.score is not None]
        best = max(scored, key=lambda o: o.score) if scored else output.items[0]
        return _shifted(best.box, output.origin)
    if isinstance(output, Image) and output.origin != (0, 0):
        ox, oy = output.origin
        return [ox, oy, ox + output.width, oy + output.height]
    return None


def predicted_pairs(output: Any, values: dict[str, Any]) -> list[list[Any]]:
    """(box, label) pairs from the output, else from the last object list computed."""
    found = output if isinstance(output, ObjectList) else None
    if found is None:
        lists = [v for v in values.values() if isinstance(v, ObjectList)]
        found = lists[-1] if lists else None
    if found is None:
        return []
    return [[_shifted(o.box, found.origin), o.label] for o in found.items]


def score(
    item: Item, *, ok: bool, answer: str | None, output: Any, values: dict[str, Any]
) -> Score:
    """The item's score from a run's outcome (``answer``: its text; None when it failed)."""
    text = answer if ok else None
    m = item.metric
    if m is Metric.BOX:
        box = predicted_box(output) if ok else None
        value = metrics.box_hit(None if box is None else tuple(box), item.answer)
        return Score(value, value == 1.0, box)
    if m is Metric.TAGGING:
        pairs = predicted_pairs(output, values) if ok else []
        counts = metrics.match_pairs([(tuple(b), lab) for b, lab in pairs], item.answer)
        return Score(counts.f1, counts.f1 == 1.0, pairs, counts)
    if m is Metric.VQA:
        value = metrics.vqa_accuracy(text, item.answer)
        return Score(value, value > 0, text)
    if m is Metric.GQA:
        value = metrics.gqa_match(text, item.answer)
    elif m is Metric.NLVR2:
        value = metrics.nlvr2_match(text, item.answer)
    else:
        value = exact_match(text, item.answer)
    return Score(value, value == 1.0, text)
