"""``str.format`` for programs, without what makes Python's unsafe.

Python's ``"{0.__class__}".format(x)`` walks attributes and ``"{0[key]}"`` indexes, so a
format string written by an LLM could reach anything its arguments can reach; a width such
as ``"{:999999999}"`` builds gigabytes. :func:`safe_format` accepts only:

* replacement fields that are empty (``{}``, numbered automatically), a position (``{0}``)
  or a keyword name (``{name}``) — never ``.attr`` or ``[index]``;
* the conversions ``!s``, ``!r`` and ``!a``;
* a standard format spec (fill, align, sign, ``#``, ``0``, width, grouping, precision,
  type) with no nested fields, width at most the string limit and precision at most
  :data:`MAX_PRECISION`.

Every value is rendered with the budget's size checks; the result's length is checked too.
Any violation is a typed error, never a partial string.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence

from .errors import ErrorCode, EvalError, ForbiddenError, LimitExceeded
from .lazy import force_deep
from .limits import Budget
from .safe_builtins import check_renderable

MAX_PRECISION = 100
MAX_FIELDS = 1_000

# [[fill]align][sign][z][#][0][width][grouping][.precision][type]
_SPEC = re.compile(
    r"(?:(?P<fill>.)?(?P<align>[<>=^]))?(?P<sign>[-+ ]?)z?#?0?"
    r"(?P<width>\d*)[,_]?(?:\.(?P<precision>\d+))?[bcdeEfFgGnosxX%]?",
    re.S,
)
_PLAIN_TYPES = (str, int, float, bool, type(None))


def safe_format(
    budget: Budget, template: str, args: Sequence[object], kwargs: Mapping[str, object]
) -> str:
    """``template.format(*args, **kwargs)`` under the rules in the module docstring."""
    try:
        pieces = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise EvalError(f"bad format string: {exc}", code=ErrorCode.BAD_EXPRESSION) from None
    if len(pieces) > MAX_FIELDS:
        raise LimitExceeded(
            f"format string has more than {MAX_FIELDS:,} fields", code=ErrorCode.SIZE_LIMIT
        )
    out: list[str] = []
    total = 0
    auto = 0
    numbering: str | None = None  # "auto" or "manual", as Python refuses to mix them
    for literal, field, spec, conversion in pieces:
        out.append(literal)
        total += len(literal)
        if field is None:
            continue
        if "." in field or "[" in field:
            raise ForbiddenError(
                f"format field '{{{field}}}': attribute and index access are not allowed"
            )
        if field == "" or field.isdigit():
            style = "auto" if field == "" else "manual"
            if numbering not in (None, style):
                raise EvalError("cannot mix automatic ({}) and numbered ({0}) format fields")
            numbering = style
            index = auto if field == "" else int(field)
            auto += field == ""
            if index >= len(args):
                raise EvalError(
                    f"format field {{{field}}} needs positional argument {index}, "
                    f"but {len(args)} were given"
                )
            value = args[index]
        elif field.isidentifier():
            if field not in kwargs:
                raise EvalError(f"format field {{{field}}} has no keyword argument '{field}'")
            value = kwargs[field]
        else:
            raise ForbiddenError(f"format field '{{{field}}}' is not a position or a name")
        text = _render(budget, force_deep(value), spec or "", conversion)
        total += len(text)
        budget.check_str_len(total)
        out.append(text)
    return "".join(out)


def _render(budget: Budget, value: object, spec: str, conversion: str | None) -> str:
    if "{" in spec or "}" in spec:
        raise ForbiddenError("nested fields in a format spec are not allowed")
    m = _SPEC.fullmatch(spec)
    if m is None:
        raise EvalError(f"bad format spec '{spec}'", code=ErrorCode.BAD_EXPRESSION)
    width, precision = m.group("width"), m.group("precision")
    if width and (len(width) > 9 or int(width) > budget.limits.max_str_len):
        raise LimitExceeded("format width too large", code=ErrorCode.SIZE_LIMIT)
    if precision and (len(precision) > 9 or int(precision) > MAX_PRECISION):
        raise LimitExceeded(f"format precision above {MAX_PRECISION}", code=ErrorCode.SIZE_LIMIT)
    check_renderable(value, budget)
    if conversion in ("r", "a", "s"):
        value = {"r": repr, "a": ascii, "s": str}[conversion](value)
    elif conversion is not None:
        raise EvalError(f"unknown conversion '!{conversion}'")
    if not isinstance(value, _PLAIN_TYPES):
        if spec:
            raise EvalError(f"a {type(value).__name__} cannot be formatted with '{spec}'")
        return str(value)
    try:
        return format(value, spec)
    except (ValueError, TypeError, OverflowError) as exc:
        raise EvalError(f"cannot format {type(value).__name__} with '{spec}': {exc}") from None
