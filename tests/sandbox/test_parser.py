"""``parse`` for both forms: form detection, and text no parser may choke on (deep nesting,
a byte-order mark): each gives a program or a typed error, never a raw Python exception."""

from __future__ import annotations

import pytest

from sandbox import (
    Budget,
    ErrorCode,
    Limits,
    ProgramInvalid,
    VisChainError,
    check,
    compile_expression,
    detect_form,
    parse,
)
from sandbox.python import PythonInterpreter
from tests.support.catalog import SmallCatalog

CAT = SmallCatalog()
DEEP = 1500


def _deep_lines() -> list[str]:
    return [
        "A=Eval('xor " + "(" * DEEP + "1" + ")" * DEEP + "')",  # issue 14 item 5
        "A=Eval('1 xor " + "[" * DEEP + "]" * DEEP + "')",
        "A=Eval('" + "-" * 100_000 + "1')",
        "A=Eval('" + "not " * 50_000 + "1')",
        "A=Eval('" + "(" * DEEP + "1" + ")" * DEEP + "')",
        "A=Eval('" + "{A}" * 2000 + "')",
        "A=Eval('" + "x." * 20_000 + "y')",
        "A=Count(object=" + "[" * DEEP + "]" * DEEP + ")",
        "A=Count(object=" + "-" * 100_000 + "1)",
        "A=Count(object=" + "(" * 150 + "1" + ")" * 150 + ")",
        "A=Count(" + "[" * 150 + "]" * 150 + ")",
    ]


def _deep_python() -> list[str]:
    head = "def execute_command(image):\n"
    return [
        head + "    return " + "(" * DEEP + "1" + ")" * DEEP + "\n",
        head + "    return " + "-" * 100_000 + "1\n",
        head + "    return " + "[" * 150 + "]" * 150 + "\n",
        head + "    return " + "x." * 20_000 + "y\n",
        head + "    x = []\n    for i in range(5000):\n        x = [x]\n    return x\n",
        head + "    x = ()\n    for i in range(5000):\n        x = (x, 1)\n    return str(x)\n",
        head + "    x = {}\n    for i in range(5000):\n        x = {'k': x}\n    return x == x\n",
        head
        + "".join("    " * (i + 1) + "if 1:\n" for i in range(120))
        + "    " * 121
        + "return 1\n",
    ]


@pytest.mark.parametrize("text", _deep_lines(), ids=range(len(_deep_lines())))
def test_deep_line_programs_give_typed_errors(text: str) -> None:
    try:
        program = parse(text)
        bound = check(program, CAT)  # type: ignore[arg-type]
    except ProgramInvalid as exc:
        assert exc.errors and all(e.message for e in exc.errors)
        return
    for step in bound.steps:
        for value in step.args.values():
            source = getattr(value, "source", None)
            if source is not None:
                with pytest.raises(VisChainError):
                    compile_expression(source).evaluate({}, limits=Limits(time_limit=5))


@pytest.mark.parametrize("text", _deep_python(), ids=range(len(_deep_python())))
def test_deep_python_programs_give_typed_errors(text: str) -> None:
    try:
        program = parse(text)
    except ProgramInvalid as exc:
        assert exc.errors and all(e.message for e in exc.errors)
        return
    interpreter = PythonInterpreter(Budget(Limits(time_limit=5)))
    with pytest.raises(VisChainError):
        interpreter.run(program, {"image": None})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "line", "start"),
    [
        (
            "A=Eval('1')\nB=Loc(image=IMAGE, object=" + "-" * 9000 + "1)\n",
            2,
            "cannot parse this line",
        ),
        (
            "def execute_command(image):\n    x = 1\n    return " + "-" * 100_000 + "1\n",
            3,
            "cannot parse the program",
        ),
    ],
)
def test_text_past_the_parsers_stack_is_named_nested_too_deeply_on_its_line(
    text: str, line: int, start: str
) -> None:
    with pytest.raises(ProgramInvalid) as info:
        parse(text)
    [error] = info.value.errors
    assert (error.code, error.line) == (ErrorCode.SYNTAX, line)
    assert error.message.startswith(f"{start}: nested too deeply (")


def test_a_byte_order_mark_is_not_part_of_the_program() -> None:
    python = "\ufeffdef execute_command(image):\n    return 1 + 2\n"
    assert detect_form(python) == "python"
    program = parse(python)
    assert PythonInterpreter(Budget(Limits())).run(program, {"image": None}) == 3  # type: ignore[arg-type]
    lines = parse("\ufeffA=Count(object=B)\nC=Eval('1 + 2')")
    assert [s.target for s in lines.steps] == ["A", "C"]  # type: ignore[union-attr]
    assert lines.steps[0].col == 1  # type: ignore[union-attr]
