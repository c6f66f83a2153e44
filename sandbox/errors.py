"""Typed errors: the root of VisChain's hierarchy, and the sandbox's own.

The sandbox is the bottom layer, so the root of VisChain's error hierarchy lives here. Every
error carries a stable ``code`` (for programs, tests and repair prompts) and, where it is
known, the program ``line``/``col`` and the ``step`` (the variable the step assigns). Each
layer owns its codes: :class:`ErrorCode` holds the sandbox's (parsing, checking, evaluation,
limits); the tool layer's are ``tools.errors.ToolErrorCode``, the orchestrator's
``orchestrator.errors.RunErrorCode``. A code is a ``StrEnum`` member, so it compares equal
to its stable text (``"no-backend"``) whichever layer defines it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ErrorCode(StrEnum):
    """The sandbox's stable error codes. Never rename one: traces, tests and prompts refer
    to them."""

    # parsing
    SYNTAX = "syntax"
    NOT_A_STEP = "not-a-step"
    BAD_TARGET = "bad-target"
    BAD_VALUE = "bad-value"
    NESTED_CALL = "nested-call"
    DUPLICATE_KEYWORD = "duplicate-keyword"
    REDEFINED = "redefined"
    FORBIDDEN_NAME = "forbidden-name"
    TOO_LARGE = "too-large"
    EMPTY_PROGRAM = "empty-program"
    # checking
    UNKNOWN_TOOL = "unknown-tool"
    UNKNOWN_ARGUMENT = "unknown-argument"
    MISSING_ARGUMENT = "missing-argument"
    TOO_MANY_ARGUMENTS = "too-many-arguments"
    ARGUMENT_TWICE = "argument-twice"
    WRONG_TYPE = "wrong-type"
    UNDEFINED_NAME = "undefined-name"
    UNKNOWN_ATTRIBUTE = "unknown-attribute"
    BAD_EXPRESSION = "bad-expression"
    REPEATED_STEP = "repeated-step"  # a call that repeats its chain's (sandbox.repeats)
    # evaluation and execution
    EVAL_ERROR = "eval-error"
    FORBIDDEN = "forbidden"
    TIME_LIMIT = "time-limit"
    STEP_LIMIT = "step-limit"
    SIZE_LIMIT = "size-limit"
    DEPTH_LIMIT = "depth-limit"
    CANCELLED = "cancelled"
    # an error no layer gave a more specific code
    ERROR = "error"


class VisChainError(Exception):
    """Root of every error VisChain raises on purpose. ``code`` is a member of the raising
    layer's code enum (a subclass sets its own)."""

    code: StrEnum = ErrorCode.ERROR

    def __init__(
        self,
        message: str,
        *,
        code: StrEnum | None = None,
        line: int | None = None,
        col: int | None = None,
        step: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.line = line
        self.col = col
        self.step = step

    def __reduce__(self) -> tuple[object, ...]:
        """Errors cross process boundaries (model replicas, Ray workers): they are rebuilt
        from their state, not their constructor, whose arguments differ by subclass."""
        return (_rebuild, (type(self), self.args, self.__dict__.copy()))

    def located(self, *, line: int | None = None, step: str | None = None) -> VisChainError:
        """Fill in where the error happened, unless something deeper already did."""
        if self.line is None:
            self.line = line
        if self.step is None:
            self.step = step
        return self

    def __str__(self) -> str:
        where = []
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.step is not None:
            where.append(f"step {self.step}")
        prefix = f"[{self.code}] " + (f"({', '.join(where)}) " if where else "")
        return prefix + self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    def to_dict(self) -> dict[str, object]:
        return {
            "type": type(self).__name__,
            "code": str(self.code),
            "message": self.message,
            "line": self.line,
            "col": self.col,
            "step": self.step,
        }


@dataclass(frozen=True, slots=True)
class ProgramError:
    """One problem found in a program before it runs, phrased so an LLM can repair it."""

    code: ErrorCode
    message: str
    line: int
    col: int = 0
    step: str | None = None
    # a fix-it: (the name as written, the one name close to it that is defined), so the
    # planner can apply it without another LLM call (see :func:`sandbox.hints.apply_fixes`)
    fix: tuple[str, str] | None = None

    def __str__(self) -> str:
        return f"line {self.line}, col {self.col}: [{self.code}] {self.message}"

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "code": str(self.code),
            "message": self.message,
            "line": self.line,
            "col": self.col,
            "step": self.step,
        }
        if self.fix is not None:
            out["fix"] = list(self.fix)
        return out


class ProgramInvalid(VisChainError):
    """A program failed to parse or check; ``errors`` lists every problem at once."""

    def __init__(self, errors: list[ProgramError]) -> None:
        self.errors = list(errors)
        first = self.errors[0] if self.errors else None
        summary = "; ".join(str(e) for e in self.errors[:5])
        if len(self.errors) > 5:
            summary += f"; and {len(self.errors) - 5} more"
        super().__init__(
            f"invalid program: {summary}",
            code=first.code if first else ErrorCode.SYNTAX,
            line=first.line if first else None,
            col=first.col if first else None,
            step=first.step if first else None,
        )

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, object]:
        data = super().to_dict()
        data["errors"] = [e.to_dict() for e in self.errors]
        return data


class EvalError(VisChainError):
    """An expression or program failed while being evaluated (bad operand, unknown name...)."""

    code = ErrorCode.EVAL_ERROR


class ForbiddenError(VisChainError):
    """A program tried something the sandbox never allows (imports, dunders, attributes...)."""

    code = ErrorCode.FORBIDDEN


class LimitExceeded(VisChainError):
    """A time, work, size or depth limit fired."""

    code = ErrorCode.SIZE_LIMIT


def _rebuild(
    cls: type[VisChainError], args: tuple[object, ...], state: dict[str, object]
) -> VisChainError:
    """An unpickled error: ``cls`` with its message and attributes, ``__init__`` skipped."""
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error
