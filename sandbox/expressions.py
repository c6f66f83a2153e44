"""Compiled expressions: what a line program's ``Eval`` step holds.

``compile_expression`` parses (with :mod:`ast`; parsing executes nothing), rewrites VisProg
text (:mod:`sandbox.visprog`) and validates (:mod:`sandbox.validation`) once; the result is
an immutable, cached :class:`Expression` that knows the names it reads.

Expressions that differ only in their placeholders' names (``{ANSWER0} + 1`` and
``{ANSWER1} + 1``: a chain of steps) share one parsed, validated tree: plain text (no quotes,
no ``xor``) has each placeholder renamed to a stand-in of the same length (``{_v_____0}``),
that *template* is compiled once, and the expression evaluates it with each stand-in bound
to the real name's value at run time (same columns, same messages: the evaluator names the
real variable). A template whose stand-ins are called, assigned or fail to compile is not
shared: the expression is compiled from its own text instead.
:class:`BoundExpression` pairs it with those values, and evaluating either runs the
:class:`~sandbox.evaluator.Evaluator` under a fresh or given budget.
"""

from __future__ import annotations

import ast
import keyword
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from .errors import ErrorCode, EvalError, LimitExceeded, VisChainError
from .evaluator import Evaluator
from .limits import Budget, Limits, parse_bounded
from .safe_builtins import SAFE_FUNCTIONS, XOR_FUNCTION, Exposed, is_dunder
from .validation import free_names, validate_tree, walk
from .visprog import PLAIN_TEXT, SPACED_PLACEHOLDER, prepare_visprog

MAX_EXPRESSION_CHARS = 20_000
# The compile cache holds the short expressions programs are made of (a 10,000-step
# program's all fit, so repeating it parses nothing): a few MB, tens at the very worst.
CACHED_EXPRESSIONS = 16_384
MAX_CACHED_CHARS = 256


@dataclass(frozen=True, slots=True)
class Expression:
    """A parsed, validated expression: ``source`` as written, ``names`` it reads."""

    source: str
    text: str
    tree: ast.Expression = field(repr=False, compare=False)
    names: frozenset[str] = frozenset()
    # stand-in -> real name, when ``tree`` is a shared template (see the module doc)
    aliases: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

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
        aliases = self.aliases
        if aliases:
            env = dict(values)
            for stand_in, name in aliases.items():
                if name in values:
                    env[stand_in] = values[name]
            values = env
        evaluator = Evaluator(budget, answers=answers, exposed=exposed, aliases=aliases)
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
    _template.cache_clear()


def _compile(source: str, visprog: bool) -> Expression:
    if visprog and isinstance(source, str) and len(source) <= MAX_CACHED_CHARS:
        shared = _from_template(source)
        if shared is not None:
            return shared
    return _compile_text(source, visprog)


_STAND_IN = "_v"  # text containing it is never templated, so stand-ins cannot clash
_STAND_INS = re.compile(_STAND_IN + r"_*[0-9]+")
_NOT_RENAMED = frozenset(SAFE_FUNCTIONS) | {XOR_FUNCTION}


def _from_template(source: str) -> Expression | None:
    """``source`` compiled through the template of its placeholders (module doc), or None
    when it has none or is not plain text."""
    if "{" not in source or _STAND_IN in source or "xor" in source:
        return None
    if not PLAIN_TEXT.fullmatch(source):
        return None
    renames: dict[str, str] = {}  # real name -> stand-in

    def stand_in(match: re.Match[str]) -> str:
        name = match[1]
        found = renames.get(name)
        if found is None:
            index = str(len(renames))
            width = len(name) - len(_STAND_IN) - len(index)
            if width < 0 or keyword.iskeyword(name) or is_dunder(name) or name in _NOT_RENAMED:
                raise _NoTemplate
            found = renames[name] = _STAND_IN + "_" * width + index
        return match[0].replace(name, found)

    try:
        template = _template(SPACED_PLACEHOLDER.sub(stand_in, source))
    except _NoTemplate:
        return None
    if template is None or not renames:
        return None
    tree, text, others = template
    aliases = {}
    for name, found in renames.items():
        aliases[found] = name
        text = text.replace(found, name)
    return Expression(source, text, tree, others.union(renames), aliases)


class _NoTemplate(Exception):
    """A placeholder that cannot be renamed (too short, a keyword, a function...)."""


@lru_cache(maxsize=CACHED_EXPRESSIONS)
def _template(text: str) -> tuple[ast.Expression, str, frozenset[str]] | None:
    """The template's tree, rewritten text and names other than stand-ins; None when it
    cannot be shared: it does not compile (the real text's own error is then reported), or
    a stand-in is called, assigned or not read as a variable."""
    try:
        compiled = _compile_text(text, True)
    except VisChainError:
        return None
    for node in walk(compiled.tree):
        if isinstance(node, ast.Name) and node.id.startswith(_STAND_IN):
            if not isinstance(node.ctx, ast.Load):
                return None
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id.startswith(_STAND_IN):
                return None
        elif isinstance(node, ast.comprehension | ast.Lambda | ast.NamedExpr):
            return None
    stand_ins = {n for n in compiled.names if n.startswith(_STAND_IN)}
    if len(stand_ins) != len(set(_STAND_INS.findall(text))):  # each one is a variable read
        return None
    return compiled.tree, compiled.text, compiled.names - stand_ins


def _compile_text(source: str, visprog: bool) -> Expression:
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
