"""Limits on untrusted programs, and the budget that enforces them while code runs.

Everything an LLM writes runs under a :class:`Budget`: each evaluated node costs one unit of
work, values are measured before they are built (so ``'a' * 10**10`` fails without
allocating), and a deadline is checked as the work proceeds.
"""

from __future__ import annotations

import ast
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Literal, overload

from .errors import ErrorCode, LimitExceeded, ProgramError, ProgramInvalid


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds for one evaluation (an Eval step, or one Python program)."""

    max_int_bits: int = 4096  # about 1,200 decimal digits
    max_str_len: int = 1_000_000
    max_total_chars: int = 50_000_000  # text created over a whole evaluation (memory bound)
    max_printed_chars: int = 1_000_000  # text a Python program prints (kept in the trace)
    max_items: int = 1_000_000  # elements of one list/tuple/dict/range
    max_total_items: int = 5_000_000  # elements created over a whole evaluation
    max_ops: int = 2_000_000  # evaluated nodes
    max_depth: int = 64  # nesting of calls and expressions
    max_loop_iterations: int = 100_000  # per loop
    time_limit: float | None = 10.0  # seconds per evaluation
    max_program_chars: int = 200_000
    max_line_chars: int = 10_000
    max_steps: int = 20_000  # steps (lines) of one line program

    def with_(self, **changes: object) -> Limits:
        return replace(self, **changes)


@dataclass
class Budget:
    """Live counters for one evaluation; raises :class:`LimitExceeded` when one runs out."""

    limits: Limits = field(default_factory=Limits)
    deadline: float | None = None
    cancel: threading.Event | None = None
    ops: int = 0
    items: int = 0
    chars: int = 0
    depth: int = 0

    def __post_init__(self) -> None:
        if self.limits.time_limit is not None:
            own = time.monotonic() + self.limits.time_limit
            self.deadline = own if self.deadline is None else min(self.deadline, own)

    def tick(self, n: int = 1) -> None:
        """Spend ``n`` units of work, then check the clock and cancellation (on every node:
        a monotonic clock read costs tens of nanoseconds)."""
        self.ops += n
        if self.ops > self.limits.max_ops:
            raise LimitExceeded(
                f"program did too much work (more than {self.limits.max_ops:,} operations)",
                code=ErrorCode.STEP_LIMIT,
            )
        cancel, deadline = self.cancel, self.deadline
        if (cancel is not None and cancel.is_set()) or (
            deadline is not None and time.monotonic() > deadline
        ):
            self.check_time()  # raises the matching error

    def check_time(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise LimitExceeded("evaluation was cancelled", code=ErrorCode.CANCELLED)
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise LimitExceeded("evaluation ran out of time", code=ErrorCode.TIME_LIMIT)

    def enter(self) -> None:
        self.depth += 1
        if self.depth > self.limits.max_depth:
            raise LimitExceeded(
                f"nesting deeper than {self.limits.max_depth} levels",
                code=ErrorCode.DEPTH_LIMIT,
            )

    def leave(self) -> None:
        self.depth -= 1

    # --- sizes, checked before a value is built -------------------------------------------

    def check_int(self, value: int) -> int:
        if value.bit_length() > self.limits.max_int_bits:
            bits = self.limits.max_int_bits
            raise LimitExceeded(f"number too large (over {bits} bits)", code=ErrorCode.SIZE_LIMIT)
        return value

    def check_str_len(self, n: int) -> None:
        """Account for a string of ``n`` characters about to be created."""
        if n > self.limits.max_str_len:
            raise LimitExceeded(
                f"string too long ({n:,} characters; limit {self.limits.max_str_len:,})",
                code=ErrorCode.SIZE_LIMIT,
            )
        self.chars += n
        if self.chars > self.limits.max_total_chars:
            raise LimitExceeded(
                f"program created too much text (over {self.limits.max_total_chars:,} characters)",
                code=ErrorCode.SIZE_LIMIT,
            )

    def check_items(self, n: int) -> None:
        """Account for a collection of ``n`` elements about to be created."""
        if n > self.limits.max_items:
            raise LimitExceeded(
                f"collection too large ({n:,} items; limit {self.limits.max_items:,})",
                code=ErrorCode.SIZE_LIMIT,
            )
        self.items += n
        if self.items > self.limits.max_total_items:
            raise LimitExceeded(
                f"program created too many items (over {self.limits.max_total_items:,})",
                code=ErrorCode.SIZE_LIMIT,
            )

    def check_value(self, value: object) -> object:
        """Measure a freshly produced value of a basic type."""
        if isinstance(value, bool):
            return value
        if isinstance(value, int):
            return self.check_int(value)
        if isinstance(value, str):
            self.check_str_len(len(value))
        elif isinstance(value, (list, tuple, dict, set, frozenset)):
            self.check_items(len(value))
        return value


BYTE_ORDER_MARK = "\ufeff"


def admit_program(text: object, limits: Limits) -> str:
    """Refuse program text that is not text or is longer than ``limits`` allow, before any
    parser looks at it (both program forms start here); return the text without a leading
    byte-order mark (an editor's encoding marker, not part of the program)."""
    if not isinstance(text, str):
        raise ProgramInvalid([ProgramError(ErrorCode.SYNTAX, "a program must be text", 1)])
    if len(text) > limits.max_program_chars:
        raise ProgramInvalid(
            [
                ProgramError(
                    ErrorCode.TOO_LARGE,
                    f"program is {len(text):,} characters; the limit is "
                    f"{limits.max_program_chars:,}",
                    1,
                )
            ]
        )
    return text.removeprefix(BYTE_ORDER_MARK)


# CPython's parser refuses more than 200 nested brackets, but how deep other nesting
# (``- - - 1``, ``not not x``, ``a.b.c…``) may go before ast.parse gives up depends on the
# Python version (about 1,000 levels on 3.11 and 3.12, several thousand on 3.13). One bound
# for every version; the evaluators stop far earlier anyway (``Limits.max_depth``).
MAX_SYNTAX_DEPTH = 200
# Every syntax level below the first few takes at least one character of its own (an
# operator, a dot, a bracket, a keyword); the leaves (Load, Add…) and the root add a few
# more. So text of at most this many characters cannot nest MAX_SYNTAX_DEPTH deep, with
# room to spare (tests/sandbox/test_limits.py builds the deepest short texts it can).
_SHALLOW_CHARS = MAX_SYNTAX_DEPTH // 2 - 8


class NestingTooDeep(RecursionError):
    """Program text nests deeper than :data:`MAX_SYNTAX_DEPTH` syntax levels."""


def unparsable(exc: BaseException) -> str:
    """Why :func:`parse_bounded` gave up on text, for an error message: a ``RecursionError``
    (its own depth bound, or the compiler's) or a ``MemoryError`` (the parser's stack) is
    text nested too deeply; a ``ValueError`` is a null byte."""
    if isinstance(exc, RecursionError | MemoryError):
        return (
            f"nested too deeply ({exc})"
            if str(exc)
            else f"nested too deeply ({type(exc).__name__})"
        )
    return str(exc) or type(exc).__name__


@overload
def parse_bounded(text: str, mode: Literal["exec"]) -> ast.Module: ...
@overload
def parse_bounded(text: str, mode: Literal["eval"]) -> ast.Expression: ...
def parse_bounded(text: str, mode: Literal["exec", "eval"]) -> ast.Module | ast.Expression:
    """``ast.parse(text, mode)``, refusing trees deeper than :data:`MAX_SYNTAX_DEPTH` with
    :class:`NestingTooDeep` (a ``RecursionError``, which is what ``ast.parse`` itself raises
    for deeper nesting on some versions). The depth is measured without recursion."""
    tree = compile(text, "<unknown>", mode, ast.PyCF_ONLY_AST)  # ast.parse, less a call
    if len(text) <= _SHALLOW_CHARS:
        return tree  # too short to nest that deep: skip the walk (most lines and expressions)
    stack: list[tuple[ast.AST, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_SYNTAX_DEPTH:
            raise NestingTooDeep(f"nesting deeper than {MAX_SYNTAX_DEPTH} levels")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return tree
