"""Static validation of expression trees, before anything runs.

``ALLOWED_NODES`` is the expression subset both program forms share (the Python form adds
its statements to it); ``validate_tree`` refuses any other node, any dunder name and any
non-basic literal with a :class:`~sandbox.errors.ForbiddenError` naming line and column.
``free_names`` lists the variables an expression reads, so a step knows what it depends on.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable

from .errors import ForbiddenError
from .safe_builtins import BASIC_TYPES, SAFE_FUNCTIONS, is_dunder

ALLOWED_NODES: tuple[type[ast.AST], ...] = (
    ast.Expression, ast.Constant, ast.Name, ast.Load, ast.Store, ast.BinOp, ast.UnaryOp,
    ast.BoolOp, ast.Compare, ast.IfExp, ast.Call, ast.keyword, ast.Attribute, ast.Subscript,
    ast.Slice, ast.List, ast.Tuple, ast.Set, ast.Dict, ast.JoinedStr, ast.FormattedValue,
    ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.comprehension,
    ast.operator, ast.unaryop, ast.boolop, ast.cmpop, ast.expr_context,
)  # fmt: skip


def walk(tree: ast.AST) -> list[ast.AST]:
    """Every node of ``tree`` in :func:`ast.walk`'s order (breadth first), as a list: the
    same nodes without a generator per node (this runs for every new expression)."""
    nodes = [tree]
    for node in nodes:  # the loop reaches the children it appends: breadth first
        for name in node._fields:
            child = getattr(node, name, None)
            if isinstance(child, ast.AST):
                nodes.append(child)
            elif isinstance(child, list):
                nodes.extend(c for c in child if isinstance(c, ast.AST))
    return nodes


def validate_tree(
    tree: ast.AST,
    *,
    allowed: tuple[type[ast.AST], ...] = ALLOWED_NODES,
    nodes: list[ast.AST] | None = None,
) -> None:
    """Refuse node types and names the sandbox never evaluates, before anything runs.
    ``nodes``: ``walk(tree)``, when the caller has it already."""
    known = _CHECKS.setdefault(allowed, {})  # node type -> its check, learnt per type
    for node in walk(tree) if nodes is None else nodes:
        check = known.get(type(node))
        if check is None:
            check = known[type(node)] = _check_for(type(node), allowed)
        if check is _PLAIN:
            continue
        if check is _REFUSED:
            raise ForbiddenError(
                f"{describe_node(node)} is not allowed in a program",
                line=getattr(node, "lineno", None),
                col=getattr(node, "col_offset", None),
            )
        if check is _CONSTANT:
            if isinstance(node, ast.Constant) and not isinstance(node.value, BASIC_TYPES):
                raise ForbiddenError(
                    f"{type(node.value).__name__} literals are not allowed",
                    line=node.lineno,
                    col=node.col_offset,
                )
            continue
        name = getattr(node, check)  # type: ignore[call-overload]  # id, attr or arg
        if name is not None and is_dunder(name):
            raise ForbiddenError(
                f"the name '{name}' is not allowed (no dunder names)",
                line=getattr(node, "lineno", None),
                col=getattr(node, "col_offset", None),
            )


# What validate_tree checks on a node of each type: nothing more, refuse it, its constant's
# type, or the name in the field given
_PLAIN, _REFUSED, _CONSTANT = object(), object(), object()
_NAMED = ((ast.Name, "id"), (ast.Attribute, "attr"), (ast.keyword, "arg"))
_CHECKS: dict[tuple[type[ast.AST], ...], dict[type, object]] = {}


def _check_for(kind: type, allowed: tuple[type[ast.AST], ...]) -> object:
    if not issubclass(kind, allowed):
        return _REFUSED
    for base, name_field in _NAMED:
        if issubclass(kind, base):
            return name_field
    return _CONSTANT if issubclass(kind, ast.Constant) else _PLAIN


_NODE_NAMES = {
    "Lambda": "lambda", "NamedExpr": "':=' assignment", "Starred": "'*' unpacking",
    "Await": "'await'", "Yield": "'yield'", "YieldFrom": "'yield from'", "Import": "import",
    "ImportFrom": "import", "Global": "'global'", "Nonlocal": "'nonlocal'",
    "ClassDef": "a class definition", "FunctionDef": "a nested function definition",
    "AsyncFunctionDef": "an async function", "Try": "try/except", "TryStar": "try/except*",
    "With": "'with'", "AsyncWith": "'async with'", "Raise": "'raise'", "Delete": "'del'",
    "Assert": "'assert'", "Match": "'match'", "AsyncFor": "an async loop",
    "Slice": "assigning to a slice (x[a:b] = ...)",
}  # fmt: skip


def describe_node(node: ast.AST) -> str:
    """What a syntax node is, for "… is not allowed" (its class name when not listed)."""
    kind = type(node).__name__
    return _NODE_NAMES.get(kind, f"'{kind}'")


def free_names(
    tree: ast.AST,
    functions: Iterable[str] = SAFE_FUNCTIONS,
    *,
    nodes: list[ast.AST] | None = None,
) -> frozenset[str]:
    """Variables an expression reads (not its comprehension variables, not called builtins).
    ``nodes``: ``walk(tree)``, when the caller has it already."""
    bound: set[str] = set()
    called: set[str] = set()
    reads: set[str] = set()
    for node in walk(tree) if nodes is None else nodes:
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load):
                reads.add(node.id)
        elif isinstance(node, ast.comprehension):
            for t in walk(node.target):
                if isinstance(t, ast.Name):
                    bound.add(t.id)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            called.add(node.func.id)
    if not bound and not called:
        return frozenset(reads)
    fn = functions if isinstance(functions, (set, frozenset, dict)) else set(functions)
    return frozenset(n for n in reads if n not in bound and not (n in called and n in fn))
