"""Compiled expressions: what a line program's ``Eval`` step holds.

``compile_expression`` parses (with :mod:`ast`; parsing executes nothing), rewrites VisProg
text (:mod:`sandbox.visprog`) and validates (:mod:`sandbox.validation`) once; the result is
an immutable, cached :class:`Expression` that knows the names it reads.

Expressions that differ only in their placeholders' names (``{ANSWER0} + 1`` and
``{ANSWER1} + 1``: a chain of steps), and those without placeholders that differ only in
their integer literals (``3 + 1`` and ``4 + 1``), share one parsed, validated tree: plain
text (no quotes, no ``xor``) has each placeholder renamed to a stand-in of the same length
(``{_v_____0}``), or else each decimal integer literal (at most 18 digits, not part of a
float or other number) replaced by a name of its length (``_``, ``_v``, ``_vk``...:
``3 + 12`` reads ``_ + _v``). That *template* is compiled once,
and the expression evaluates it with each stand-in bound to the real name's value, or the
literal's, at run time (same columns, same messages: the evaluator names the real
variable). A template whose stand-ins are called, assigned, not read as variables exactly
where the literals were, or fail to compile is not shared: the expression is compiled from
its own text instead (so is text that names a variable of underscores only, such as ``_``).
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
from .limits import Budget, Limits, parse_bounded, unparsable
from .safe_builtins import SAFE_FUNCTIONS, XOR_FUNCTION, Exposed, is_dunder
from .validation import free_names, validate_tree, walk
from .visprog import PLAIN_TEXT, prepare_visprog

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
    # stand-in -> the integer literal it stands for, in a shared template
    literals: Mapping[str, int] = field(default_factory=dict, repr=False, compare=False)

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
        if aliases or self.literals:
            env = dict(values)
            for stand_in, name in aliases.items():
                if name in values:
                    env[stand_in] = values[name]
            env.update(self.literals)
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
_PLACEHOLDER_PARTS = re.compile(r"(\{ *)([A-Za-z_][A-Za-z0-9_]*)( *\})")  # SPACED_PLACEHOLDER's
_NOT_RENAMED = frozenset(SAFE_FUNCTIONS) | {XOR_FUNCTION}


# a decimal integer literal of at most 18 digits standing alone (not in a name, a float,
# 1e3, 0x1f, 1_000 or 1j; not 007, which Python refuses)
_INT_LITERAL = re.compile(r"(?<![\w.])(0{1,18}|[1-9][0-9]{0,17})(?![\w.])")
_UNDERSCORES = re.compile(r"(?<![\w.])_+(?![\w.])")  # a name of underscores only
# a literal's stand-in in a template's text, by its length: "_" for one digit, "_v", "_vk",
# "_vkk"... for more (a source holding "_v" or an underscores-only name is never templated)
_LITERAL_STAND_INS = re.compile(r"(?<![\w.])(?:_|_vk*)(?![\w.])")
_STAND_IN_OF_LENGTH = ("", "_", *(_STAND_IN + "k" * n for n in range(17)))
# the literal stand-ins' names in a template's tree, in the order they are written
_LITERAL_NAMES = tuple(f"{_STAND_IN}_k{i}" for i in range(MAX_CACHED_CHARS))


def _from_template(source: str) -> Expression | None:
    """``source`` compiled through the template of its placeholders and integer literals
    (module doc), or None when it has neither or is not plain text."""
    if _STAND_IN in source or "xor" in source:
        return None
    literal = _INT_LITERAL.search(source)
    if ("{" not in source and literal is None) or not PLAIN_TEXT.fullmatch(source):
        return None
    if _UNDERSCORES.search(source):
        return None  # a real name of underscores: it would read as a literal's stand-in
    renames: dict[str, str] = {}  # real name -> stand-in
    if "{" in source:
        parts = _PLACEHOLDER_PARTS.split(source)  # text, "{ ", name, " }", text, ...
        names = parts[2::4]
        for name in names:
            if name in renames:
                continue
            index = str(len(renames))
            width = len(name) - len(_STAND_IN) - len(index)
            if width < 0 or keyword.iskeyword(name) or is_dunder(name) or name in _NOT_RENAMED:
                return None  # too short to rename, or not a variable
            renames[name] = _STAND_IN + "_" * width + index
    if renames:
        parts[2::4] = [renames[name] for name in names]
        template = "".join(parts)
        parts[1::4] = parts[3::4] = [" "] * len(names)  # as prepare_visprog writes them
        parts[2::4] = names
        text = "".join(parts)
    elif literal is not None:  # literals only: with placeholders, a chain shares already
        parts = _INT_LITERAL.split(source)  # text, literal, text, literal, ..., text
        digits = parts[1::2]
        parts[1::2] = [_STAND_IN_OF_LENGTH[len(d)] for d in digits]
        template, text = "".join(parts), source
    else:
        return None
    shared = _template(template)
    if shared is None:
        return None
    tree, _, others = shared
    if renames:
        aliases = {found: name for name, found in renames.items()}
        return Expression(source, text, tree, others.union(renames), aliases)
    literals = {_LITERAL_NAMES[i]: int(d) for i, d in enumerate(digits)}
    return Expression(source, text, tree, others, literals=literals)


@lru_cache(maxsize=CACHED_EXPRESSIONS)
def _template(text: str) -> tuple[ast.Expression, str, frozenset[str]] | None:
    """The template's tree, rewritten text and names other than stand-ins; None when it
    cannot be shared: it does not compile (the real text's own error is then reported), or
    a stand-in is called, assigned or not read as a variable; literal stand-ins must be
    variables read exactly where the literals were, and are renamed ``_v_k0``, ``_v_k1``...
    in the tree, in the order they are written."""
    try:
        compiled = _compile_text(text, True)
    except VisChainError:
        return None
    literals: list[ast.Name] = []
    for node in walk(compiled.tree):
        if isinstance(node, ast.Name) and _is_stand_in(node.id):
            if not isinstance(node.ctx, ast.Load):
                return None
            if _LITERAL_STAND_INS.fullmatch(node.id):
                literals.append(node)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if _is_stand_in(node.func.id):
                return None
        elif isinstance(node, ast.comprehension | ast.Lambda | ast.NamedExpr):
            return None
    stand_ins = {n for n in compiled.names if _is_stand_in(n)}
    placeholders = {n for n in stand_ins if _STAND_INS.fullmatch(n)}
    if len(placeholders) != len(set(_STAND_INS.findall(text))):  # each one a variable read
        return None
    literals.sort(key=lambda n: n.col_offset)
    spans = [m.span() for m in _LITERAL_STAND_INS.finditer(compiled.text.strip())]  # as parsed
    if spans != [(n.col_offset, n.end_col_offset) for n in literals]:
        return None  # a literal's stand-in became something else (an attribute, a keyword)
    for i, node in enumerate(literals):
        node.id = _LITERAL_NAMES[i]
    return compiled.tree, compiled.text, compiled.names - stand_ins


def _is_stand_in(name: str) -> bool:
    """A placeholder's stand-in (``_v…``) or a literal's (``_``, ``_v``, ``_vk``...)."""
    return name.startswith(_STAND_IN) or name == "_"


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
            f"invalid expression: {unparsable(exc)}", code=ErrorCode.BAD_EXPRESSION
        ) from exc
