"""Parser for VisProg-style line programs (``BOX0=Loc(image=IMAGE, object='boat')``).

Each line is read with :func:`ast.parse` (which only parses) and then held to the line
language: one assignment per line, a tool call with literal/variable arguments or a plain
binding. Everything else is reported as a :class:`~sandbox.errors.ProgramError` with a
stable code; all problems are collected before :class:`~sandbox.errors.ProgramInvalid` is
raised, so a repair prompt can show the model every mistake at once.

Most lines have one plain shape: ASCII, ``NAME=Tool(...)`` (or ``NAME=value``) whose
arguments are variables, string literals without escapes, decimal numbers, True, False or
None. :func:`_plain_step` reads those with regular expressions into exactly the
:class:`Step` the :mod:`ast` route builds (building a Python AST costs ~15 µs a line, most
of a line's whole overhead); anything else it declines, and the line takes the ast route,
which handles every form and reports every error.
"""

from __future__ import annotations

import ast
import keyword
import re

from .errors import ErrorCode, ForbiddenError, ProgramError, ProgramInvalid
from .ir import Arg, Const, Expr, ListOf, Program, Ref, Step, Value
from .limits import Limits, admit_program, parse_bounded, unparsable
from .safe_builtins import is_dunder
from .validation import free_names, validate_tree

_LITERALS = (str, int, float, bool, type(None))


class _LineError(Exception):
    def __init__(self, code: ErrorCode, message: str, col: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.col = col


def parse_lines(text: str, *, limits: Limits | None = None) -> Program:
    """Parse a line program; raise :class:`ProgramInvalid` listing every problem."""
    limits = limits or Limits()
    text = admit_program(text, limits)
    errors: list[ProgramError] = []
    steps: list[Step] = []
    defined: dict[str, int] = {}
    renamed: set[str] = set()  # fresh names the fix-its of redefinitions took
    # split on newlines only: str.splitlines() would also break lines at \x85, \u2028...
    # inside string literals
    for number, raw in enumerate(text.replace("\r\n", "\n").split("\n"), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(raw) - len(raw.lstrip())
        if len(raw) > limits.max_line_chars:
            errors.append(
                ProgramError(
                    ErrorCode.TOO_LARGE,
                    f"line is {len(raw):,} characters; the limit is {limits.max_line_chars:,}",
                    number,
                    1,
                )
            )
            continue
        try:
            step = _plain_step(stripped, number, indent) or _parse_line(stripped, number, indent)
        except _LineError as exc:
            errors.append(ProgramError(exc.code, exc.message, number, indent + exc.col + 1))
            continue
        if step.target in defined:
            # the fix-it: a fresh name here and for the uses that follow (what a
            # sequential reading of the reassignment means)
            fresh = _fresh_name(step.target, text, renamed)
            renamed.add(fresh)
            errors.append(
                ProgramError(
                    ErrorCode.REDEFINED,
                    f"'{step.target}' is already defined on line {defined[step.target]}; "
                    f"give each step a new name (e.g. {fresh})",
                    number,
                    step.col,
                    step.target,
                    (step.target, fresh),
                )
            )
            continue
        defined[step.target] = number
        steps.append(step)
        if len(steps) > limits.max_steps:
            errors.append(
                ProgramError(
                    ErrorCode.TOO_LARGE,
                    f"program has more than {limits.max_steps:,} steps",
                    number,
                    1,
                )
            )
            break
    if not steps and not errors:
        errors.append(ProgramError(ErrorCode.EMPTY_PROGRAM, "the program has no steps", 1, 1))
    if errors:
        raise ProgramInvalid(errors)
    return Program(steps=tuple(steps), source=text, form="lines")


def _fresh_name(name: str, text: str, taken: set[str]) -> str:
    """``OBJ0`` → the first of ``OBJ1``, ``OBJ2``... that the program never mentions."""
    stem = name.rstrip("0123456789") or name
    n = 1
    while f"{stem}{n}" in taken or re.search(rf"(?<!\w){stem}{n}(?!\w)", text):
        n += 1
    return f"{stem}{n}"


_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
# a string literal without a prefix, escapes or control characters; a decimal number that
# no letter, digit, '_' or '.' continues (so 1e5, 0x1, 1_000, 1. and 007 are declined)
_PLAIN_VALUE = (
    r"'[^'\\\x00-\x08\x0a-\x1f\x7f]*'"
    r'|"[^"\\\x00-\x08\x0a-\x1f\x7f]*"'
    rf"|-?(?:0|[1-9][0-9]{{0,17}})(?:\.[0-9]{{1,17}})?(?![0-9A-Za-z_.])|{_NAME}"
)
_PLAIN_CALL = re.compile(rf"({_NAME})[ \t]*=[ \t]*({_NAME})[ \t]*\(")
_PLAIN_ARG = re.compile(rf"[ \t]*(?:({_NAME})[ \t]*=[ \t]*)?({_PLAIN_VALUE})[ \t]*(,|\))")
_PLAIN_CLOSE = re.compile(r"[ \t]*\)")
_PLAIN_BINDING = re.compile(rf"({_NAME})[ \t]*=[ \t]*({_PLAIN_VALUE})")
_NAMED_CONSTANTS = {"True": True, "False": False, "None": None}


def _plain_step(line: str, number: int, indent: int) -> Step | None:
    """The step of a plain line (see the module docstring), or None to use the ast route.
    Declines every name the ast route would refuse or treat specially (keywords, dunders),
    duplicate keywords and positional arguments after keywords."""
    if not line.isascii():  # ast's columns count UTF-8 bytes; leave those lines to it
        return None
    call = _PLAIN_CALL.match(line)
    if call is None:
        binding = _PLAIN_BINDING.fullmatch(line)
        if binding is None or not _plain_name(binding.group(1)):
            return None
        value = _plain_value(binding.group(2))
        if value is None:
            return None
        arg = Arg(None, value, number, indent + binding.start(2) + 1)
        return Step(binding.group(1), None, (arg,), number, indent + 1, line)
    target, tool = call.groups()
    if not (_plain_name(target) and _plain_name(tool)):
        return None
    args: list[Arg] = []
    keywords: set[str] = set()
    pos = call.end()
    while True:
        m = _PLAIN_ARG.match(line, pos)
        if m is None:  # no (more) arguments: only a ')' may follow, not after '(' + ','
            close = _PLAIN_CLOSE.match(line, pos)
            if close is None or (not args and pos != call.end()):
                return None
            pos = close.end()
            break
        name, text, end = m.groups()
        value = _plain_value(text)
        if value is None or (name is not None and not _plain_name(name)):
            return None
        if name is None:
            if keywords:
                return None  # a positional argument after a keyword one: ast's error
            args.append(Arg(None, value, number, indent + m.start(2) + 1))
        else:
            if name in keywords:
                return None  # given twice: ast's error
            keywords.add(name)
            args.append(Arg(name, value, number, indent + m.start(1) + 1))
        pos = m.end()
        if end == ")":
            break
    if pos != len(line):
        return None
    return Step(target, tool, tuple(args), number, indent + 1, line)


def _plain_name(name: str) -> bool:
    return not keyword.iskeyword(name) and not is_dunder(name)


def _plain_value(text: str) -> Value | None:
    if text[0] in "'\"":
        return Const(text[1:-1])
    if text[0] == "-" or text[0].isdigit():
        return Const(float(text) if "." in text else int(text))
    if text in _NAMED_CONSTANTS:
        return Const(_NAMED_CONSTANTS[text])
    return Ref(text) if _plain_name(text) else None


def _parse_line(line: str, number: int, indent: int) -> Step:
    try:
        module = parse_bounded(line, "exec")
    except SyntaxError as exc:
        raise _syntax_error(exc) from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise _LineError(ErrorCode.SYNTAX, f"cannot parse this line: {unparsable(exc)}") from None
    if len(module.body) != 1:
        raise _LineError(ErrorCode.NOT_A_STEP, "write exactly one step per line")
    stmt = module.body[0]
    if not isinstance(stmt, ast.Assign):
        raise _LineError(
            ErrorCode.NOT_A_STEP,
            f"expected NAME=Tool(...), found {_statement_kind(stmt)}",
            stmt.col_offset,
        )
    if len(stmt.targets) != 1 or not isinstance(stmt.targets[0], ast.Name):
        raise _LineError(
            ErrorCode.BAD_TARGET,
            "the left side must be a single variable name, e.g. ANSWER0=...",
            stmt.col_offset,
        )
    target = stmt.targets[0].id
    if is_dunder(target):
        raise _LineError(ErrorCode.FORBIDDEN_NAME, f"the name '{target}' is not allowed")
    value = stmt.value
    col = indent + 1
    if isinstance(value, ast.Call):
        if not isinstance(value.func, ast.Name):
            raise _LineError(
                ErrorCode.BAD_VALUE,
                "call a tool by its plain name, e.g. Loc(...)",
                value.func.col_offset,
            )
        if is_dunder(value.func.id):
            raise _LineError(ErrorCode.FORBIDDEN_NAME, f"the name '{value.func.id}' is not allowed")
        args = [_argument(None, a, line, number, indent) for a in value.args]
        seen: set[str] = set()
        for kw in value.keywords:
            if kw.arg is None:
                raise _LineError(
                    ErrorCode.BAD_VALUE, "'**' arguments are not allowed", kw.col_offset
                )
            if kw.arg in seen:
                raise _LineError(
                    ErrorCode.DUPLICATE_KEYWORD,
                    f"argument '{kw.arg}' is given twice",
                    kw.col_offset,
                )
            seen.add(kw.arg)
            args.append(_argument(kw.arg, kw.value, line, number, indent, kw.col_offset))
        return Step(target, value.func.id, tuple(args), number, col, line)
    if isinstance(value, ast.Name):
        arg = Arg(None, _value(value, line), number, indent + value.col_offset + 1)
        return Step(target, None, (arg,), number, col, line)
    if isinstance(value, (ast.Constant, ast.List, ast.Tuple, ast.UnaryOp)):
        converted = _value(value, line)
        if isinstance(converted, Const):
            arg = Arg(None, converted, number, indent + value.col_offset + 1)
            return Step(target, None, (arg,), number, col, line)
    raise _LineError(
        ErrorCode.BAD_VALUE,
        "the right side must be a tool call, a variable or a literal; "
        "use Eval('...') for expressions",
        value.col_offset,
    )


def _argument(
    name: str | None, node: ast.expr, line: str, number: int, indent: int, col: int | None = None
) -> Arg:
    if isinstance(node, ast.Starred):
        raise _LineError(ErrorCode.BAD_VALUE, "'*' arguments are not allowed", node.col_offset)
    if name is not None and is_dunder(name):
        raise _LineError(ErrorCode.FORBIDDEN_NAME, f"the name '{name}' is not allowed", col or 0)
    value = _value(node, line)
    return Arg(name, value, number, indent + (node.col_offset if col is None else col) + 1)


def _value(node: ast.expr, line: str) -> Value:
    """Convert an argument expression: literal, variable, list, or (last) an expression."""
    if isinstance(node, ast.Constant):
        if not isinstance(node.value, _LITERALS):
            raise _LineError(
                ErrorCode.BAD_VALUE,
                f"{type(node.value).__name__} values are not allowed",
                node.col_offset,
            )
        return Const(node.value)
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, (ast.USub, ast.UAdd))
        and isinstance(node.operand, ast.Constant)
        and isinstance(node.operand.value, (int, float))
        and not isinstance(node.operand.value, bool)
    ):
        v = node.operand.value
        return Const(-v if isinstance(node.op, ast.USub) else v)
    if isinstance(node, ast.Name):
        if is_dunder(node.id):
            raise _LineError(
                ErrorCode.FORBIDDEN_NAME, f"the name '{node.id}' is not allowed", node.col_offset
            )
        return Ref(node.id)
    if isinstance(node, (ast.List, ast.Tuple)):
        items = tuple(_value(e, line) for e in node.elts)
        if all(isinstance(i, Const) for i in items):
            return Const(tuple(i.value for i in items))  # type: ignore[union-attr]
        if any(isinstance(i, Expr) for i in items):
            raise _LineError(
                ErrorCode.BAD_VALUE, "list items must be literals or variables", node.col_offset
            )
        return ListOf(items)
    if isinstance(node, ast.Call):
        raise _LineError(
            ErrorCode.NESTED_CALL,
            "nested tool calls are not allowed; assign the inner call to a variable first",
            node.col_offset,
        )
    try:
        validate_tree(node)
    except ForbiddenError as exc:
        code = ErrorCode.FORBIDDEN_NAME if "name" in exc.message else ErrorCode.BAD_VALUE
        raise _LineError(code, exc.message, node.col_offset) from None
    source = ast.get_source_segment(line, node) or ast.unparse(node)
    return Expr(source=source, names=free_names(node))


def _syntax_error(exc: SyntaxError) -> _LineError:
    message = exc.msg or "invalid syntax"
    col = max((exc.offset or 1) - 1, 0)
    if "keyword argument repeated" in message:
        return _LineError(ErrorCode.DUPLICATE_KEYWORD, message.capitalize(), col)
    if "positional argument follows keyword argument" in message:
        return _LineError(
            ErrorCode.SYNTAX, "positional arguments must come before keyword arguments", col
        )
    if "unterminated string" in message or "EOL" in message:
        return _LineError(ErrorCode.SYNTAX, "unterminated string: close the quote", col)
    return _LineError(ErrorCode.SYNTAX, f"syntax error: {message}", col)


def _statement_kind(stmt: ast.stmt) -> str:
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
        return "a call whose result is not assigned to a name"
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        return "an import (imports are never allowed)"
    if isinstance(stmt, ast.AugAssign):
        return "an in-place update such as '+='"
    if isinstance(stmt, ast.AnnAssign):
        return "an annotated assignment"
    return f"a Python '{type(stmt).__name__}' statement"
