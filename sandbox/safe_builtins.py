"""What a sandboxed program may call: whitelisted functions and size-checked methods.

``SAFE_FUNCTIONS`` are the builtins an expression may call by name; ``BUILTIN_METHODS`` maps
``str``/``list``/``tuple``/``dict`` to the methods a program may call on them, each a wrapper
taking the :class:`~sandbox.limits.Budget` first so sizes are checked before a value is
built (never a raw ``getattr`` on program-chosen names). :class:`Exposed` is how a host type
declares what programs may read, call, index or iterate on it; ``check_renderable`` refuses
to turn an oversized value into text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from . import guarded
from .errors import ErrorCode, EvalError, LimitExceeded
from .limits import Budget

BASIC_TYPES = (str, int, float, bool, type(None))
XOR_FUNCTION = "xor_"


@dataclass(frozen=True, slots=True)
class Exposed:
    """What a program may do with a host type: read ``attributes``, call ``methods``, index it,
    iterate it. Types not declared are opaque values that can only be passed around."""

    attributes: frozenset[str] = frozenset()
    methods: frozenset[str] = frozenset()
    subscript: bool = False
    iterable: bool = False


def is_dunder(name: str) -> bool:
    return name.startswith("__") or name.endswith("__")


def _positive_int(n: object, what: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise EvalError(f"{what} must be a whole number, got {type(n).__name__}")
    return n


# --- whitelisted functions ----------------------------------------------------------------


def _xor(*values: object) -> bool:
    return sum(1 for v in values if v) % 2 == 1


def _sum(items: Iterable[object], start: object = 0) -> object:
    values = [start, *items]
    if not all(isinstance(v, (int, float)) for v in values):
        raise EvalError("sum() adds numbers only")
    return sum(values)  # type: ignore[arg-type]


def _round(x: object, ndigits: object = None) -> object:
    if ndigits is None:
        return round(x)  # type: ignore[call-overload]
    return round(x, max(-400, min(400, _positive_int(ndigits, "round's digits"))))  # type: ignore[call-overload]


SAFE_FUNCTIONS: dict[str, Callable[..., object]] = {
    "len": len,
    "min": min,
    "max": max,
    "abs": abs,
    "round": _round,
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "sum": _sum,
    XOR_FUNCTION: _xor,
}


# --- safe methods of builtin types (size-checked wrappers, never raw getattr) ----------------


def _str_replace(b: Budget, s: str, old: str, new: str, count: int = -1) -> str:
    n = s.count(old) if old else len(s) + 1
    if count >= 0:
        n = min(n, count)
    b.check_str_len(len(s) + n * (len(new) - len(old)))
    return s.replace(old, new, count)


def _str_join(b: Budget, sep: str, items: Iterable[object]) -> str:
    parts = list(items)
    if not all(isinstance(p, str) for p in parts):
        raise EvalError("join() needs a list of strings")
    b.check_str_len(sum(len(p) for p in parts) + len(sep) * max(len(parts) - 1, 0))  # type: ignore[arg-type]
    return sep.join(parts)  # type: ignore[arg-type]


def _list_append(b: Budget, xs: list, x: object) -> None:
    b.check_items(1)
    xs.append(x)


def _list_extend(b: Budget, xs: list, other: Iterable[object]) -> None:
    more = list(other)
    b.check_items(len(more))
    if len(xs) + len(more) > b.limits.max_items:
        b.check_items(b.limits.max_items + 1)
    xs.extend(more)


def _list_insert(b: Budget, xs: list, i: int, x: object) -> None:
    b.check_items(1)
    xs.insert(i, x)


def _plain(name: str) -> Callable[..., object]:
    def call(_b: Budget, obj: object, *args: object) -> object:
        return getattr(obj, name)(*args)

    return call


_STR_PLAIN = (
    "lower upper strip lstrip rstrip startswith endswith isdigit isalpha isnumeric count find "
    "title capitalize split rsplit splitlines index"
).split()
_LIST_PLAIN = "pop reverse copy clear".split()
_DICT_PLAIN = "get pop copy".split()


# element-wise methods run in slices with the clock checked (sandbox.guarded)
_SEQUENCE_SCANS: dict[str, Callable[..., object]] = {
    "count": lambda b, xs, x: guarded.count(xs, x, b),
    "index": lambda b, xs, x, *bounds: guarded.index(xs, x, b, *bounds),
}
_LIST_SCANS: dict[str, Callable[..., object]] = {
    "remove": lambda b, xs, x: guarded.remove(xs, x, b),
    "sort": lambda b, xs: guarded.sort(xs, b),
}


def _dict_view(name: str) -> Callable[..., object]:
    def call(_b: Budget, obj: dict) -> list[object]:
        return list(getattr(obj, name)())

    return call


BUILTIN_METHODS: dict[type, dict[str, Callable[..., object]]] = {
    str: {n: _plain(n) for n in _STR_PLAIN} | {"replace": _str_replace, "join": _str_join},
    list: {n: _plain(n) for n in _LIST_PLAIN}
    | _SEQUENCE_SCANS
    | _LIST_SCANS
    | {"append": _list_append, "extend": _list_extend, "insert": _list_insert},
    tuple: _SEQUENCE_SCANS,
    dict: {n: _plain(n) for n in _DICT_PLAIN}
    | {n: _dict_view(n) for n in ("keys", "values", "items")},
}


def check_renderable(value: object, budget: Budget) -> int:
    """Estimate how many characters ``str(value)`` would take, without building it, and
    refuse (``size-limit``) when that exceeds the string limit: ``str([[0] * 10**5] * 10**4)``
    fails before building gigabytes of text. Integers count by their digits, strings by
    their length, containers by their items and separators; the walk stops as soon as the
    limit is passed, so it costs at most about ``max_str_len`` steps. Returns the estimate."""
    limit = budget.limits.max_str_len
    size = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            size += len(item)
        elif isinstance(item, bool) or item is None:
            size += 5
        elif isinstance(item, int):
            size += item.bit_length() * 30103 // 100_000 + 2  # log10(2) digits per bit
        elif isinstance(item, float):
            size += 24
        elif isinstance(item, dict):
            size += 2 + 6 * len(item)  # ': ', ', ' and quotes per pair
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            size += 2 + 4 * len(item)  # ', ' and quotes per item
            stack.extend(item)
        else:
            size += 16
        if size > limit:
            raise LimitExceeded(
                f"value too large to turn into text (over {limit:,} characters)",
                code=ErrorCode.SIZE_LIMIT,
            )
        if len(stack) & 0xFFF == 0:
            budget.check_time()
    return size
