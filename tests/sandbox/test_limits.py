"""The syntax-depth bound: the walk it skips for short text could never have fired."""

from __future__ import annotations

import ast

import pytest

from sandbox.limits import _SHALLOW_CHARS, MAX_SYNTAX_DEPTH, NestingTooDeep, parse_bounded


def depth(tree: ast.AST) -> int:
    return 1 + max((depth(c) for c in ast.iter_child_nodes(tree)), default=0)


def grow(pattern: str, mode: str) -> str:
    """The longest text of at most _SHALLOW_CHARS characters made by nesting ``pattern``
    (its ``@`` stands for the next level; the innermost is ``x``) that still parses."""
    text = "x"
    while True:
        nested = pattern.replace("@", text)
        if len(nested) > _SHALLOW_CHARS:
            return text
        try:
            ast.parse(nested, mode=mode)
        except (SyntaxError, RecursionError):
            return text
        text = nested


NESTINGS = [
    "-@", "~@", "not @", "@.a", "@[0]", "@()", "@(@)", "(@,)", "[@]", "{@}", "{@:@}",
    "@ if x else x", "x if x else @", "lambda:@", "f'{@}'", "@**x", "x**@", "@+x", "x+@",
    "x<@", "[@ for x in x]", "*@,", "@[::]", "await @", "(yield @)", "x[@:@]", "(x:=@)",
]  # fmt: skip
STATEMENTS = ["if x:\n @", "for x in x:\n @", "with x:\n @", "def f():\n @", "while x:\n @"]


@pytest.mark.parametrize(
    "mode,pattern", [("eval", p) for p in NESTINGS] + [("exec", p) for p in STATEMENTS]
)
def test_short_text_cannot_nest_past_the_bound(mode: str, pattern: str) -> None:
    text = grow(pattern, mode)
    tree = parse_bounded(text, mode)  # type: ignore[arg-type]  # no walk: it is short
    assert len(text) <= _SHALLOW_CHARS
    assert depth(tree) <= len(text) + 6 < MAX_SYNTAX_DEPTH


@pytest.mark.parametrize("text", ["-" * 400 + "1", "not " * 300 + "x", "x" + ".a" * 300])
def test_long_deep_text_is_still_refused(text: str) -> None:
    with pytest.raises((NestingTooDeep, RecursionError)):
        parse_bounded(text, "eval")
