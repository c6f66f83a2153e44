"""Lazy values: a tool call's result that may still be computing.

The Python-form interpreter passes lazy values along untouched (into variables, lists and
other tool calls, which then depend on them) and forces them only when control flow needs
the value: a test, an operator, a builtin, iteration, an attribute — and, through
:func:`force_deep`, wherever Python looks inside a container (membership, equality, hashing,
sorting, count/index, printing, returning). Independent calls issued before that point
therefore run together, batched where their tool batches.
"""

from __future__ import annotations

from typing import Any

from .errors import ErrorCode, LimitExceeded

MAX_VALUE_DEPTH = 100  # containers nested deeper than this are refused, not walked


class Lazy:
    """A value that becomes available when forced. Subclasses implement :meth:`force`."""

    __slots__ = ()

    def force(self) -> Any:
        raise NotImplementedError


def force(value: Any) -> Any:
    """The value itself, forcing it if lazy (repeatedly, if forcing yields another lazy)."""
    while isinstance(value, Lazy):
        value = value.force()
    return value


def force_deep(value: Any, _memo: dict[int, Any] | None = None, _depth: int = 0) -> Any:
    """Force a value and every lazy value inside lists, tuples, dicts and sets, so equality,
    membership, hashing, sorting and printing see values, never pending calls.

    Lists and dicts are settled in place (the forced value replaces the lazy one, so every
    alias of the container sees it, and a container without lazy values is never written);
    tuples and sets are rebuilt only when they held a lazy value. A container shared many
    times is visited once, so ``[[0] * 10**5] * 10**4`` costs 10**5 steps, not 10**9, and a
    list that contains itself ends. Nesting deeper than ``MAX_VALUE_DEPTH`` raises
    :class:`LimitExceeded` (``depth-limit``)."""
    value = force(value)
    if not isinstance(value, (list, tuple, dict, set, frozenset)):
        return value
    if _depth > MAX_VALUE_DEPTH:
        raise LimitExceeded(
            f"a value nested more than {MAX_VALUE_DEPTH} levels deep", code=ErrorCode.DEPTH_LIMIT
        )
    memo = {} if _memo is None else _memo
    key = id(value)
    if key in memo:
        return memo[key]
    memo[key] = value
    if isinstance(value, list):
        for i, item in enumerate(value):
            settled = force_deep(item, memo, _depth + 1)
            if settled is not item:
                value[i] = settled
        return value
    if isinstance(value, dict):
        pairs = [
            (force_deep(k, memo, _depth + 1), force_deep(v, memo, _depth + 1))
            for k, v in value.items()
        ]
        if any(a is not k for (a, _), k in zip(pairs, value, strict=True)):
            value.clear()  # a key was lazy: rebuild in place, keeping the order
            value.update(pairs)
        else:
            for k, v in pairs:
                if value[k] is not v:
                    value[k] = v
        return value
    items = [force_deep(v, memo, _depth + 1) for v in value]
    if all(a is b for a, b in zip(items, value, strict=True)):
        return value
    result: Any = type(value)(items) if type(value) in (tuple, set, frozenset) else items
    memo[key] = result
    return result
