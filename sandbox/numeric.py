"""The parts of ``numpy`` and ``math`` that ViperGPT-style programs use, as safe namespaces.

Programs written for ViperGPT call ``np.percentile(counts, 90)``, ``np.round(x)`` or
``math.sqrt(d)``. Here ``np`` and ``math`` are objects whose only reachable members are the
plain functions below: they take numbers or (nested) lists of numbers, return Python
numbers or lists, and never expose arrays, dtypes, file I/O or attributes. Inputs are
bounded by the number of items a program may hold anyway (the budget's item limit).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .errors import EvalError
from .lazy import force_deep
from .safe_builtins import Exposed

MAX_ITEMS = 1_000_000


def _numbers(values: object) -> np.ndarray:
    values = force_deep(values)
    if isinstance(values, bool):
        raise EvalError("expected numbers, got a bool")
    if isinstance(values, (int, float)):
        return np.asarray([values], dtype=np.float64)
    if not isinstance(values, (list, tuple)):
        raise EvalError(f"expected a list of numbers, got {type(values).__name__}")
    flat: list[float] = []
    stack = [values]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend(reversed(item))
        elif isinstance(item, (int, float)) and not isinstance(item, bool):
            flat.append(float(item))
        else:
            raise EvalError(f"expected numbers, got {type(item).__name__}")
        if len(flat) > MAX_ITEMS:
            raise EvalError(f"more than {MAX_ITEMS:,} numbers")
    if not flat:
        raise EvalError("expected at least one number")
    return np.asarray(flat, dtype=np.float64)


def _plain(value: float) -> int | float:
    number = float(value)
    return int(number) if number.is_integer() and abs(number) < 2**53 else number


def _reduce(fn: Callable[[np.ndarray], object]) -> Callable[[object], int | float]:
    def call(values: object) -> int | float:
        return _plain(fn(_numbers(values)))  # type: ignore[arg-type]

    return call


def _round(value: object, decimals: object = 0) -> object:
    value, decimals = force_deep(value), force_deep(decimals)
    if isinstance(decimals, bool) or not isinstance(decimals, int) or not -20 <= decimals <= 20:
        raise EvalError("round's decimals must be a whole number between -20 and 20")
    if isinstance(value, (list, tuple)):
        return [float(np.round(v, decimals)) for v in _numbers(value)]
    return float(np.round(_numbers(value)[0], decimals))


def _percentile(values: object, q: object) -> float:
    q = force_deep(q)
    if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0 <= q <= 100:
        raise EvalError("percentile's q must be a number from 0 to 100")
    return float(np.percentile(_numbers(values), q))


class Numpy:
    """``np`` for programs: statistics over lists of numbers."""

    mean = staticmethod(_reduce(np.mean))
    median = staticmethod(_reduce(np.median))
    std = staticmethod(_reduce(np.std))
    var = staticmethod(_reduce(np.var))
    sum = staticmethod(_reduce(np.sum))
    min = staticmethod(_reduce(np.min))
    max = staticmethod(_reduce(np.max))
    argmin = staticmethod(_reduce(np.argmin))
    argmax = staticmethod(_reduce(np.argmax))
    percentile = staticmethod(_percentile)
    round = staticmethod(_round)
    around = staticmethod(_round)

    @staticmethod
    def abs(value: object) -> object:
        value = force_deep(value)
        if isinstance(value, (list, tuple)):
            return [_plain(abs(v)) for v in _numbers(value)]
        return _plain(abs(_numbers(value)[0]))

    def __repr__(self) -> str:
        return "<numpy subset>"


class Math:
    """``math`` for programs: the usual scalar functions and constants."""

    pi = math.pi
    e = math.e
    inf = math.inf

    @staticmethod
    def _one(fn: Callable[[float], float]) -> Callable[[object], float]:
        def call(x: object) -> float:
            try:
                return fn(float(_numbers(x)[0]))
            except (ValueError, OverflowError) as exc:
                raise EvalError(f"math error: {exc}") from None

        return call

    def __repr__(self) -> str:
        return "<math subset>"


for _name in ("sqrt", "exp", "log", "log10", "log2", "sin", "cos", "tan", "atan", "floor",
              "ceil", "fabs", "radians", "degrees"):  # fmt: skip
    setattr(Math, _name, staticmethod(Math._one(getattr(math, _name))))
Math.atan2 = staticmethod(lambda y, x: math.atan2(float(force_deep(y)), float(force_deep(x))))  # type: ignore[attr-defined]
Math.hypot = staticmethod(lambda x, y: math.hypot(float(force_deep(x)), float(force_deep(y))))  # type: ignore[attr-defined]

NUMPY_METHODS = frozenset({"mean", "median", "std", "var", "sum", "min", "max", "argmin",
                           "argmax", "percentile", "round", "around", "abs"})  # fmt: skip
MATH_METHODS = frozenset({"sqrt", "exp", "log", "log10", "log2", "sin", "cos", "tan", "atan",
                          "floor", "ceil", "fabs", "radians", "degrees", "atan2",
                          "hypot"})  # fmt: skip

# the names a program sees, and what it may do with them
NAMESPACES: dict[str, object] = {"np": Numpy(), "numpy": Numpy(), "math": Math()}
EXPOSED_NUMERIC: dict[type, Exposed] = {
    Numpy: Exposed(methods=NUMPY_METHODS),
    Math: Exposed(attributes=frozenset({"pi", "e", "inf"}), methods=MATH_METHODS),
}
