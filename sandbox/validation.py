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


def validate_tree(tree: ast.AST, *, allowed: tuple[type[ast.AST], ...] = ALLOWED_NODES) -> None:
    """Refuse node types and names the sandbox never evaluates, before anything runs."""
    for node in ast.walk(tree):
        if not isinstance(node, allowed):
            raise ForbiddenError(
                f"{describe_node(node)} is not allowed in a program",
                line=getattr(node, "lineno", None),
                col=getattr(node, "col_offset", None),
            )
        name = None
        if isinstance(node, ast.Name):
            name = node.id
        elif isinstance(node, ast.Attribute):
            name = node.attr
        elif isinstance(node, ast.keyword):
            name = node.arg
        if name is not None and is_dunder(name):
            raise ForbiddenError(
                f"the name '{name}' is not allowed (no dunder names)",
                line=getattr(node, "lineno", None),
                col=getattr(node, "col_offset", None),
            )
        if isinstance(node, ast.Constant) and not isinstance(node.value, BASIC_TYPES):
            raise ForbiddenError(
                f"{type(node.value).__name__} literals are not allowed",
                line=node.lineno,
                col=node.col_offset,
            )


def describe_node(node: ast.AST) -> str:
    names = {
        "Lambda": "lambda", "NamedExpr": "':=' assignment", "Starred": "'*' unpacking",
        "Await": "await", "Yield": "yield", "YieldFrom": "yield from", "Import": "import",
        "ImportFrom": "import", "Global": "global", "Nonlocal": "nonlocal",
    }  # fmt: skip
    kind = type(node).__name__
    return names.get(kind, f"'{kind}'")


def free_names(tree: ast.AST, functions: Iterable[str] = SAFE_FUNCTIONS) -> frozenset[str]:
    """Variables an expression reads (not its comprehension variables, not called builtins)."""
    bound: set[str] = set()
    called: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.comprehension):
            for t in ast.walk(node.target):
                if isinstance(t, ast.Name):
                    bound.add(t.id)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            called.add(node.func.id)
    fn = set(functions)
    reads = {
        n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
    }
    return frozenset(n for n in reads if n not in bound and not (n in called and n in fn))
