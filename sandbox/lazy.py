"""Lazy values: a tool call's result that may still be computing.

The Python-form interpreter passes lazy values along untouched (into variables, lists and
other tool calls, which then depend on them) and forces them only when control flow needs
the value: a test, an operator, a builtin, iteration, an attribute. Independent calls issued
before that point therefore run together, batched where their tool batches.
"""

from __future__ import annotations

from typing import Any


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


def force_deep(value: Any, _memo: dict[int, Any] | None = None) -> Any:
    """Force a value and every lazy value inside lists, tuples and dicts. Containers without
    lazy values come back as they are (no copies), and a container shared many times is
    visited once, so ``[[0] * 10**5] * 10**4`` costs 10**5 steps, not 10**9."""
    value = force(value)
    if not isinstance(value, (list, tuple, dict)):
        return value
    memo = {} if _memo is None else _memo
    key = id(value)
    if key in memo:
        return memo[key]
    memo[key] = value
    if isinstance(value, dict):
        pairs = [(force_deep(k, memo), force_deep(v, memo)) for k, v in value.items()]
        same = all(a is k and b is v for (a, b), (k, v) in zip(pairs, value.items(), strict=True))
        result: Any = value if same else dict(pairs)
    else:
        items = [force_deep(v, memo) for v in value]
        if all(a is b for a, b in zip(items, value, strict=True)):
            result = value
        else:
            result = items if isinstance(value, list) else tuple(items)
    memo[key] = result
    return result
