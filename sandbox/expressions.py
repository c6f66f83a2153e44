"""Compiled expressions: what a line program's ``Eval`` step holds.

``compile_expression`` parses (with :mod:`ast`; parsing executes nothing), rewrites VisProg
text (:mod:`sandbox.visprog`) and validates (:mod:`sandbox.validation`) once; the result is
an immutable, cached :class:`Expression` that knows the names it reads.
:class:`BoundExpression` pairs it with those values, and evaluating either runs the
:class:`~sandbox.evaluator.Evaluator` under a fresh or given budget.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from .errors import ErrorCode, EvalError, LimitExceeded, VisChainError
from .evaluator import Evaluator
from .limits import Budget, Limits, parse_bounded
from .safe_builtins import Exposed
from .validation import free_names, validate_tree, walk
from .visprog import prepare_visprog

MAX_EXPRESSION_CHARS = 20_000
# The compile cache holds the short expressions programs are made of (a 10,000-step
# program's all fit, so repeating it parses nothing): a few MB, tens at the very worst.
CACHED_EXPRESSIONS = 16_384
MAX_CACHED_CHARS = 256


@dataclass(frozen=True)
class Expression:
    """A parsed, validated expression: ``source`` as written, ``names`` it reads."""

    source: str
    text: str
    tree: ast.Expression = field(repr=False, compare=False)
    names: frozenset[str] = frozenset()

    def evaluate(
        self,
        values: Mapping[str, object],
        *,
        limits: Limits | None = None,
        budget: Budget | None = None,
        answers: bool = True,
        exposed: Mapping[type, Exposed] | None = None,
    ) -> object:
        budget = budget or Budget(limits or Limits())
        evaluator = Evaluator(budget, answers=answers, exposed=exposed)
        try:
            return evaluator.eval(self.tree.body, values)
        except VisChainError as exc:
            exc.line = None  # positions inside the expression; the caller knows the program line
            raise

    def bind(self, values: Mapping[str, object]) -> BoundExpression:
        return BoundExpression(self, {n: values[n] for n in self.names if n in values})


@dataclass(frozen=True)
class BoundExpression:
    """An expression together with the values of the names it reads (what Eval receives)."""

    expression: Expression
    values: Mapping[str, object]

    def evaluate(
        self,
        *,
        limits: Limits | None = None,
        budget: Budget | None = None,
        answers: bool = True,
        exposed: Mapping[type, Exposed] | None = None,
    ) -> object:
        """:meth:`Expression.evaluate` on the bound values."""
        return self.expression.evaluate(
            self.values, limits=limits, budget=budget, answers=answers, exposed=exposed
        )

    def __str__(self) -> str:
        return self.expression.source


def compile_expression(source: str, *, visprog: bool = True) -> Expression:
    """Parse and validate ``source``; raise :class:`EvalError` (code ``bad-expression``) or
    :class:`ForbiddenError` on bad input. Compiled expressions are immutable and cached, so
    the checker and the executor parse each expression once."""
    if isinstance(source, str) and len(source) <= MAX_CACHED_CHARS:
        return _compile_cached(source, visprog)
    return _compile(source, visprog)


@lru_cache(maxsize=CACHED_EXPRESSIONS)
def _compile_cached(source: str, visprog: bool) -> Expression:
    return _compile(source, visprog)


def clear_compiled() -> None:
    """Forget every cached compiled expression (what a new process starts with)."""
    _compile_cached.cache_clear()


def _compile(source: str, visprog: bool) -> Expression:
    if not isinstance(source, str):
        raise EvalError("an expression must be text", code=ErrorCode.BAD_EXPRESSION)
    if len(source) > MAX_EXPRESSION_CHARS:
        raise LimitExceeded(
            f"expression longer than {MAX_EXPRESSION_CHARS:,} characters", code=ErrorCode.SIZE_LIMIT
        )
    try:
        text = prepare_visprog(source) if visprog else source
        tree = parse_expression_text(text)
        nodes = walk(tree)
        validate_tree(tree, nodes=nodes)
        return Expression(source=source, text=text, tree=tree, names=free_names(tree, nodes=nodes))
    except (RecursionError, MemoryError) as exc:  # any walk over a pathological tree
        raise EvalError(
            f"invalid expression: nested too deeply ({type(exc).__name__})",
            code=ErrorCode.BAD_EXPRESSION,
        ) from None


def parse_expression_text(text: str) -> ast.Expression:
    try:
        return parse_bounded(text.strip(), "eval")
    except SyntaxError as exc:
        raise EvalError(
            f"invalid expression: {exc.msg}",
            code=ErrorCode.BAD_EXPRESSION,
            col=(exc.offset or 1) - 1,
        ) from exc
    except (ValueError, RecursionError, MemoryError) as exc:
        raise EvalError(
            f"invalid expression: {type(exc).__name__}", code=ErrorCode.BAD_EXPRESSION
        ) from exc
