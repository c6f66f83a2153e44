"""Builtin operations that loop over data, run so the budget's clock keeps ticking.

A single C-level call such as ``xs.count(s)`` over a million references to a long string
compares a million long strings without ever returning to the evaluator, so a per-node
deadline cannot stop it. Here such operations run in slices: each slice is a C-level call
over at most ``_slice_len(probe)`` elements, chosen so one slice costs about a few
milliseconds whatever the elements' sizes (one string comparison costs at most the
probe's length), and the clock and cancellation are checked between slices. Elements that
are themselves containers are compared one by one, recursively, with the same checks.
Sorting, ``min`` and ``max`` spend one unit of work per comparison when comparisons may be
costly. Results are exactly Python's.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Sequence

from .limits import Budget

CONTAINERS = (list, tuple, dict, set, frozenset)
_SLICE_CHARS = 1 << 22  # characters compared per slice, at most
_MAX_SLICE = 1 << 16  # elements per slice, at most
_EQUAL_SLICE = 256  # elements compared between clock checks
_SCALARS = {str, int, float, bool, type(None)}
_CHEAP_TEXT = 256  # strings up to this long compare cheaply enough to sort natively


def _slice_len(probe: object) -> int:
    if isinstance(probe, str):
        return max(1, min(_MAX_SLICE, _SLICE_CHARS // (len(probe) + 64)))
    if isinstance(probe, (int, float, bool, type(None))):
        return _MAX_SLICE
    return 256  # a host object: its own comparison decides the cost


def _slices(n: int, step: int, start: int = 0, stop: int | None = None) -> range:
    return range(start, n if stop is None else min(n, stop), step)


def equal(a: object, b: object, budget: Budget) -> bool:
    """``a == b``, comparing containers slice by slice with the clock checked."""
    if a is b:
        return True
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if type(a) is not type(b) or len(a) != len(b):
            return False
        for i in range(0, len(a), _EQUAL_SLICE):
            budget.check_time()
            xs, ys = a[i : i + _EQUAL_SLICE], b[i : i + _EQUAL_SLICE]
            if set(map(type, xs)) | set(map(type, ys)) <= _SCALARS:
                if xs != ys:  # scalars only: each comparison costs one string at most
                    return False
                continue
            for x, y in zip(xs, ys, strict=True):
                if x is not y and not equal(x, y, budget):
                    return False
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        if len(a) != len(b):
            return False
        for n, (key, value) in enumerate(a.items()):
            if n % _EQUAL_SLICE == 0:
                budget.check_time()
            if key not in b or not equal(value, b[key], budget):
                return False
        return True
    return bool(a == b)


def _first_difference(a: Sequence[object], b: Sequence[object], budget: Budget) -> int | None:
    """The first index where ``a`` and ``b`` hold unequal items, or None."""
    for i in range(0, min(len(a), len(b)), _EQUAL_SLICE):
        budget.check_time()
        xs, ys = a[i : i + _EQUAL_SLICE], b[i : i + _EQUAL_SLICE]
        scalars = set(map(type, xs)) | set(map(type, ys)) <= _SCALARS
        if scalars and xs == ys:
            continue
        for k, (x, y) in enumerate(zip(xs, ys, strict=False)):
            if x is not y and not (x == y if scalars else equal(x, y, budget)):
                return i + k
    return None


def ordered(op: Callable[[object, object], bool], a: object, b: object, budget: Budget) -> bool:
    """``op(a, b)`` for an ordering operator (``operator.lt``...), with Python's semantics
    for lists and tuples (the first unequal items decide, else the lengths), found slice by
    slice with the clock checked."""
    if isinstance(a, (list, tuple)) and type(a) is type(b):
        i = _first_difference(a, b, budget)  # type: ignore[arg-type]
        if i is None:
            return op(len(a), len(b))  # type: ignore[arg-type]
        return ordered(op, a[i], b[i], budget)  # type: ignore[index]
    return op(a, b)


def count(items: Sequence[object], probe: object, budget: Budget) -> int:
    """``items.count(probe)``."""
    if isinstance(probe, CONTAINERS):
        return sum(1 for x in items if equal(x, probe, budget))
    step = _slice_len(probe)
    total = 0
    for i in _slices(len(items), step):
        budget.check_time()
        total += items[i : i + step].count(probe)
    return total


def index(
    items: Sequence[object], probe: object, budget: Budget, start: int = 0, stop: int | None = None
) -> int:
    """``items.index(probe, start, stop)``; ValueError when absent, as in Python."""
    n = len(items)
    lo, hi, _ = slice(start, stop).indices(n)
    if isinstance(probe, CONTAINERS):
        for i in range(lo, hi):
            if equal(items[i], probe, budget):
                return i
    else:
        step = _slice_len(probe)
        for i in _slices(hi, step, lo):
            budget.check_time()
            chunk = items[i : min(i + step, hi)]
            if probe in chunk:
                return i + chunk.index(probe)
    raise ValueError(f"{probe!r:.80} is not in the {type(items).__name__}")


def contains(items: object, probe: object, budget: Budget) -> bool:
    """``probe in items`` for a list or tuple (other containers answer natively)."""
    if not isinstance(items, (list, tuple)):
        return probe in items  # type: ignore[operator]
    try:
        index(items, probe, budget)
    except ValueError:
        return False
    return True


def remove(items: list[object], probe: object, budget: Budget) -> None:
    """``items.remove(probe)``."""
    del items[index(items, probe, budget)]


def _costly(values: Sequence[object]) -> bool:
    return any(
        isinstance(v, CONTAINERS) or (isinstance(v, str) and len(v) > _CHEAP_TEXT) for v in values
    )


def _ticking(budget: Budget) -> Callable[[object], object]:
    def compare(x: object, y: object) -> int:
        budget.tick()
        if ordered(operator.lt, x, y, budget):
            return -1
        return 1 if ordered(operator.lt, y, x, budget) else 0

    return functools.cmp_to_key(compare)


def sort(
    items: list[object],
    budget: Budget,
    *,
    key: Callable[[object], object] | None = None,
    reverse: bool = False,
) -> None:
    """``items.sort(key=..., reverse=...)`` in place (stable, as Python's); one unit of work
    per comparison when the values compared are long strings or containers."""
    keys = items if key is None else [key(x) for x in items]
    costly = _costly(keys)
    if key is None and not costly:
        items.sort(reverse=reverse)
        return
    wrap = _ticking(budget) if costly else (lambda k: k)
    order = sorted(range(len(items)), key=lambda i: wrap(keys[i]), reverse=reverse)
    items[:] = [items[i] for i in order]


def extreme(
    items: Sequence[object],
    budget: Budget,
    *,
    largest: bool,
    key: Callable[[object], object] | None = None,
) -> object:
    """``min(items, key=...)`` or ``max(...)`` (first of equals, as Python); ValueError when
    empty."""
    if not items:
        raise ValueError(f"{'max' if largest else 'min'}() of an empty sequence")
    if key is None and not _costly(items):
        return max(items) if largest else min(items)  # type: ignore[type-var]
    best, best_key = items[0], items[0] if key is None else key(items[0])
    for item in items[1:]:
        budget.tick()
        k = item if key is None else key(item)
        if (
            ordered(operator.lt, best_key, k, budget)
            if largest
            else ordered(operator.lt, k, best_key, budget)
        ):
            best, best_key = item, k
    return best
