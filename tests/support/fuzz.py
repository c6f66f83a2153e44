"""Fuzzing the sandbox: program-like text for both forms, and the property every input must
satisfy — it parses to a program or fails with a typed error (:class:`VisChainError`), and
checking and evaluating it end with a value or a typed error under a small budget (time,
work, sizes), never a raw Python exception and never a lazy value leaking out.

The strategies mix well-formed pieces (names, literals, operators, calls, methods,
comprehensions, f-strings with format specs, statements) with hostile ones (dunder walks,
deep brackets, huge numbers and widths, byte-order marks, stray quotes, random text), so
examples reach every stage: parser, checker, evaluator. Used by ``tests/sandbox/test_fuzz.py``
(fixed seed, small budget) and ``bench/fuzz.py`` (long runs).
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from sandbox import (
    Budget,
    Lazy,
    Limits,
    Program,
    PythonProgram,
    VisChainError,
    check,
    compile_expression,
    parse,
)
from sandbox.python import PY_FUNCTIONS, PythonInterpreter, check_python
from tests.support.catalog import SmallCatalog
from tests.support.lazy import Later

CATALOG = SmallCatalog()

# small limits: every example ends quickly whatever it does
LIMITS = Limits(
    max_str_len=100_000,
    max_total_chars=1_000_000,
    max_items=10_000,
    max_total_items=100_000,
    max_ops=20_000,
    max_loop_iterations=2_000,
    max_printed_chars=10_000,
    time_limit=0.5,
)


NAMES = ["A", "B", "C", "x", "y", "xs", "ANSWER0", "image", "i", "__class__", "_x_", "mro"]
VALUES: dict[str, object] = {
    "A": "yes",
    "B": "2",
    "C": [1, "two", 3.5, None],
    "ANSWER0": "no",
    "xs": ["red", "blue", "red"],
}
ATOMS = [
    "0", "1", "-1", "2.5", "1e308", "10**400", "9**9**9", "True", "None", "'yes'", "'no'",
    "'red'", '"a b"', "'{A}'", "{A}", "{B}", "[]", "{}", "()", "[1, 2, 3]", "range(10)",
    "'x' * 99999", "[0] * 9999", "f'{A:>99}'", "f'{B!r}'", "f'{1:.5f}'", "f'{A:{B}}'",
    "'\\ufeff'", "b'x'", "...", "1j", "lambda: 1", "(yield)", "__import__('os')",
]  # fmt: skip
BINARY = ["+", "-", "*", "/", "//", "%", "**", "<<", ">>", "&", "|", "^", "and", "or", "xor",
          "==", "!=", "<", "<=", ">", ">=", "in", "not in", "is", "is not", "@"]  # fmt: skip
UNARY = ["not ", "-", "+", "~"]
FUNCTIONS = [*sorted(PY_FUNCTIONS), "later", "getattr", "eval", "open", "type", "vars"]
METHODS = ["append", "count", "index", "join", "replace", "split", "upper", "sort", "remove",
           "keys", "items", "get", "pop", "clear", "extend", "insert", "__class__", "format"]  # fmt: skip


def expressions(max_leaves: int = 12) -> st.SearchStrategy[str]:
    """Expressions, mostly well formed, sometimes hostile or broken."""
    atom = st.one_of(st.sampled_from(ATOMS), st.sampled_from(NAMES))

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.tuples(inner, st.sampled_from(BINARY), inner).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
            st.tuples(st.sampled_from(UNARY), inner).map("".join),
            st.tuples(st.sampled_from(FUNCTIONS), st.lists(inner, max_size=3)).map(
                lambda t: f"{t[0]}({', '.join(t[1])})"
            ),
            st.tuples(inner, st.sampled_from(METHODS), st.lists(inner, max_size=2)).map(
                lambda t: f"({t[0]}).{t[1]}({', '.join(t[2])})"
            ),
            st.tuples(inner, inner).map(lambda t: f"({t[0]})[{t[1]}]"),
            st.tuples(inner, inner).map(lambda t: f"({t[0]})[{t[1]}:]"),
            st.lists(inner, max_size=4).map(lambda xs: f"[{', '.join(xs)}]"),
            st.lists(inner, max_size=3).map(lambda xs: f"({', '.join(xs)},)"),
            st.lists(inner, max_size=3).map(lambda xs: "{" + ", ".join(xs) + "}"),
            st.tuples(inner, inner).map(lambda t: "{" + f"{t[0]}: {t[1]}" + "}"),
            st.tuples(inner, inner, inner).map(lambda t: f"[{t[0]} for x in {t[1]} if {t[2]}]"),
            st.tuples(inner, inner).map(lambda t: f"{{x: {t[0]} for x in {t[1]}}}"),
            st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
            st.tuples(inner, st.sampled_from(["", ":>9", ":.3", "!r", ":>999999", ":{B}"])).map(
                lambda t: "f'{" + t[0].replace("'", '"') + t[1] + "}'"
            ),
            st.tuples(st.integers(1, 300), inner).map(lambda t: "(" * t[0] + t[1] + ")" * t[0]),
            inner.map(lambda e: f"({e})"),
        )

    return st.recursive(atom, extend, max_leaves=max_leaves)


def _mangle(text: str) -> st.SearchStrategy[str]:
    """The text as is, or truncated, or with noise spliced in."""
    return st.one_of(
        st.just(text),
        st.integers(0, len(text)).map(lambda n: text[:n]),
        st.tuples(st.integers(0, len(text)), st.text(max_size=8)).map(
            lambda t: text[: t[0]] + t[1] + text[t[0] :]
        ),
    )


def _line(name: str, tool: str, args: list[tuple[str, str]]) -> str:
    return f"{name}={tool}(" + ", ".join(f"{k}={v}" if k else v for k, v in args) + ")"


@st.composite
def line_programs(draw: st.DrawFn) -> str:
    """VisProg-style programs over the small catalog (and tools it does not have)."""
    lines = []
    for n in range(draw(st.integers(1, 5))):
        name = draw(st.sampled_from([*NAMES, f"S{n}", "RESULT", "FINAL_RESULT"]))
        if draw(st.booleans()):
            lines.append(f"{name}=Eval({draw(expressions())!r})")
            continue
        tool = draw(st.sampled_from(["Loc", "Count", "Crop", "Classify", "detect", "Lco", "Eval"]))
        keys = ["image", "object", "box", "categories", "top", "expr", "", "__x__"]
        args = draw(
            st.lists(
                st.tuples(st.sampled_from(keys), st.one_of(st.sampled_from(NAMES), expressions(4))),
                max_size=3,
            )
        )
        lines.append(_line(name, tool, args))
    text = draw(st.sampled_from(["", "\ufeff", "# a comment\n"])) + "\n".join(lines)
    return draw(_mangle(text))


STATEMENTS = [
    "x = {e}", "y = {e}", "xs = [later('red'), later('blue'), {e}]", "x += {e}",
    "xs.append({e})", "print({e})", "return {e}", "pass", "break", "continue",
    "if {e}:\n{i}    x = {e}", "for i in {e}:\n{i}    y = {e}", "while {e}:\n{i}    break",
    "import os", "def f():\n{i}    return 1", "try:\n{i}    pass\n{i}except: pass",
    "xs.sort(key=lambda v: {e})", "d = {{}}\n{i}d[{e}] = {e}", "x = sorted(xs, key=lambda v: [v])",
]  # fmt: skip


@st.composite
def python_programs(draw: st.DrawFn) -> str:
    """ViperGPT-style programs: ``execute_command`` with a few (nested) statements."""
    body = []
    for _ in range(draw(st.integers(1, 6))):
        template = draw(st.sampled_from(STATEMENTS))
        indent = "    "
        filled = template.replace("{i}", indent)
        while "{e}" in filled:
            filled = filled.replace("{e}", draw(expressions(6)), 1)
        body.append(indent + filled.replace("{{}}", "{}"))
    head = draw(st.sampled_from(["", "\ufeff", '"""doc"""\n']))
    text = head + "def execute_command(image):\n" + "\n".join(body) + "\n"
    return draw(_mangle(text))


def any_text() -> st.SearchStrategy[str]:
    """Program-like text of either form, or anything at all."""
    return st.one_of(line_programs(), python_programs(), st.text(max_size=200))


# --- the properties -------------------------------------------------------------------------


def no_lazy(value: Any, depth: int = 0) -> bool:
    """True when no lazy value hides anywhere in ``value``."""
    if isinstance(value, Lazy) or depth > 200:
        return False
    if isinstance(value, dict):
        return all(no_lazy(k, depth + 1) and no_lazy(v, depth + 1) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return all(no_lazy(v, depth + 1) for v in value)
    return True


def parse_or_typed_error(text: str) -> Program | PythonProgram | None:
    """Parse ``text`` (form detected); None when it is refused with a typed error."""
    try:
        return parse(text, limits=LIMITS)
    except VisChainError as exc:
        assert exc.message
        return None


def evaluate_line_program(program: Program) -> None:
    """Check against the small catalog, then evaluate every Eval-like expression."""
    try:
        bound = check(program, CATALOG)  # type: ignore[arg-type]
    except VisChainError:
        return
    for step in bound.steps:
        for value in step.args.values():
            source = getattr(value, "source", None)
            if not isinstance(source, str):
                continue
            for answers in (True, False):
                try:
                    result = compile_expression(source).evaluate(
                        VALUES, budget=Budget(LIMITS), answers=answers
                    )
                except VisChainError:
                    continue
                assert no_lazy(result)


def run_python_program(program: PythonProgram) -> None:
    """Statically check, then interpret with lazy host values and ``print``."""
    functions = set(PY_FUNCTIONS) | {"later"}
    errors = check_python(program, functions=functions, exposed={})
    assert all(e.message for e in errors)
    printed: list[str] = []
    interpreter = PythonInterpreter(
        Budget(LIMITS), functions={"later": Later}, output=printed.append
    )
    try:
        result = interpreter.run(program, {p: None for p in program.params})
    except VisChainError:
        return
    assert no_lazy(result)
    assert "pending call" not in "".join(printed)


def holds_for(text: str) -> None:
    """The whole property for one text: parse, then check and evaluate what parsed."""
    program = parse_or_typed_error(text)
    if isinstance(program, PythonProgram):
        run_python_program(program)
    elif isinstance(program, Program):
        evaluate_line_program(program)
