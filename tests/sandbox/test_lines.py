"""The line-program parser: every accepted form, and one test per error code."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox import Const, ErrorCode, Expr, Limits, ListOf, ProgramInvalid, Ref, parse

NLVR = """\
ANSWER0=Vqa(image=LEFT, question='How many people are in the image?')
ANSWER1=Vqa(image=RIGHT, question='How many people are in the image?')
ANSWER2=Vqa(image=LEFT, question='How many boats are in the image?')
ANSWER3=Vqa(image=RIGHT, question='How many boats are in the image?')
ANSWER4=Eval('{ANSWER0} + {ANSWER1} == 6 and {ANSWER2} + {ANSWER3} == 2')
RESULT=ANSWER4
"""

PYTHONISH = """\
boat_box = LOC(image, "boat")
boat_crop = CROP(image, boat_box)
people = DETECT(boat_crop, "person")
count = COUNT(people)
answer = EVAL(count == 3)
"""


def codes(text: str) -> list[str]:
    with pytest.raises(ProgramInvalid) as info:
        parse(text)
    return [e.code for e in info.value.errors]


def test_nlvr_program_parses_into_steps() -> None:
    program = parse(NLVR)
    assert [s.target for s in program] == [
        "ANSWER0",
        "ANSWER1",
        "ANSWER2",
        "ANSWER3",
        "ANSWER4",
        "RESULT",
    ]
    first = program.steps[0]
    assert first.tool == "Vqa"
    assert first.args[0].name == "image" and first.args[0].value == Ref("LEFT")
    assert first.args[1].value == Const("How many people are in the image?")
    assert program.steps[5].tool is None and program.steps[5].bound_value == Ref("ANSWER4")
    assert program.result_name == "RESULT"


def test_positional_arguments_expression_arguments_and_double_quotes() -> None:
    program = parse(PYTHONISH)
    loc = program.steps[0]
    assert [a.name for a in loc.args] == [None, None]
    assert loc.args[1].value == Const("boat")
    ev = program.steps[4]
    assert isinstance(ev.args[0].value, Expr)
    assert ev.args[0].value.source == "count == 3"
    assert ev.args[0].value.names == frozenset({"count"})
    assert program.result_name == "answer"  # no RESULT: the last step


def test_literals_lists_comments_blank_lines_and_escapes() -> None:
    program = parse(
        "# a comment\n\n"
        '  A = Tool(x=-3, y=2.5, z=True, w=None, s=\'it\\\'s\', t="a \\"b\\"")  # trailing\n'
        "B=Tool(items=['a', \"b\"], refs=[A, 'c'])\n"
        "FINAL_RESULT=B\n"
    )
    a, b, _ = program.steps
    values = {arg.name: arg.value for arg in a.args}
    assert values == {
        "x": Const(-3),
        "y": Const(2.5),
        "z": Const(True),
        "w": Const(None),
        "s": Const("it's"),
        "t": Const('a "b"'),
    }
    assert a.line == 3 and a.col == 3
    refs = {arg.name: arg.value for arg in b.args}
    assert refs["items"] == Const(("a", "b"))
    assert refs["refs"] == ListOf((Ref("A"), Const("c")))
    assert program.result_name == "FINAL_RESULT"


def test_result_prefers_final_result_then_result() -> None:
    assert parse("RESULT=Tool()\nFINAL_RESULT=RESULT\nX=Tool()").result_name == "FINAL_RESULT"
    assert parse("RESULT=Tool()\nX=Tool()").result_name == "RESULT"


def test_constant_binding() -> None:
    program = parse("N=3\nRESULT=N")
    assert program.steps[0].bound_value == Const(3)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("A=Tool(x=", ErrorCode.SYNTAX),
        ("A=Tool(x='open)", ErrorCode.SYNTAX),
        ("Tool(x=1)", ErrorCode.NOT_A_STEP),
        ("import os", ErrorCode.NOT_A_STEP),
        ("A=Tool(); B=Tool()", ErrorCode.NOT_A_STEP),
        ("A, B = Tool()", ErrorCode.BAD_TARGET),
        ("A.b = Tool()", ErrorCode.BAD_TARGET),
        ("A = B = Tool()", ErrorCode.BAD_TARGET),
        ("A = IMAGE.crop(1)", ErrorCode.BAD_VALUE),
        ("A = X + 1", ErrorCode.BAD_VALUE),
        ("A = Tool(x=b'bytes')", ErrorCode.BAD_VALUE),
        ("A = Tool(*xs)", ErrorCode.BAD_VALUE),
        ("A = Tool(x=[Tool()])", ErrorCode.NESTED_CALL),
        ("A = Tool(x=Crop(image=IMAGE))", ErrorCode.NESTED_CALL),
        ("A = Tool(x=1, x=2)", ErrorCode.DUPLICATE_KEYWORD),
        ("A = Tool()\nA = Tool()", ErrorCode.REDEFINED),
        ("__x__ = Tool()", ErrorCode.FORBIDDEN_NAME),
        ("A = Tool(x=__import__)", ErrorCode.FORBIDDEN_NAME),
        ("A = Tool(x=().__class__)", ErrorCode.FORBIDDEN_NAME),
        ("A = __builtins__()", ErrorCode.FORBIDDEN_NAME),
        ("", ErrorCode.EMPTY_PROGRAM),
        ("# only a comment\n", ErrorCode.EMPTY_PROGRAM),
    ],
)
def test_error_codes(text: str, code: ErrorCode) -> None:
    assert code in codes(text)


def test_too_large_program_line_and_step_count() -> None:
    limits = Limits(max_program_chars=100, max_line_chars=40, max_steps=3)
    with pytest.raises(ProgramInvalid) as info:
        parse("A=Tool()\n" * 20, limits=limits)
    assert info.value.errors[0].code == ErrorCode.TOO_LARGE
    with pytest.raises(ProgramInvalid) as info:
        parse("A=Tool(x='" + "a" * 50 + "')", limits=limits)
    assert info.value.errors[0].code == ErrorCode.TOO_LARGE
    with pytest.raises(ProgramInvalid) as info:
        parse("A=T()\nB=T()\nC=T()\nD=T()\nE=T()", limits=limits)
    assert info.value.errors[-1].code == ErrorCode.TOO_LARGE


def test_every_problem_is_reported_with_line_and_column() -> None:
    with pytest.raises(ProgramInvalid) as info:
        parse("A=Tool(x=\nB=Tool()\nC=D.e\nA=Tool()")
    errors = info.value.errors
    assert [e.line for e in errors] == [1, 3]
    assert errors[0].col >= 1
    assert "line 1" in str(info.value)


def test_hostile_parse_inputs_fail_cleanly() -> None:
    deep = "A=Tool(x=" + "(" * 500 + "1" + ")" * 500 + ")"
    assert codes(deep) == [ErrorCode.SYNTAX]
    assert codes("A=Tool(x='\x00')") == [ErrorCode.SYNTAX]
    assert codes("A=Tool(x=lambda: 1)") == [ErrorCode.BAD_VALUE]
    assert codes("A=Tool(x=" + "-" * 5000 + "1)") == [ErrorCode.SYNTAX]


@pytest.mark.parametrize("nesting", ["-", "not ", "~"])
def test_nesting_is_bounded_the_same_on_every_python(nesting: str) -> None:
    # ast.parse alone accepts 300 levels of these on 3.11 to 3.13; the bound is ours
    assert codes("A=Tool(x=" + nesting * 300 + "1)") == [ErrorCode.SYNTAX]
    step = parse("A=Tool(x=" + nesting * 150 + "1)").steps[0]
    assert step.tool == "Tool"


def test_expressions_are_kept_for_the_checker_to_judge() -> None:
    step = parse("A=Tool(x=[y for y in z])").steps[0]
    assert isinstance(step.args[0].value, Expr)
    assert step.args[0].value.names == frozenset({"z"})


def test_not_text() -> None:
    assert codes(None) == [ErrorCode.SYNTAX]  # type: ignore[arg-type]


# --- the plain-line fast path: exactly what the ast route builds, or nothing -------------

_PIECES = (
    "A", "B0", "Eval", "Tool", "x", "_", "True", "False", "None", "if", "lambda", "__x__",
    "match", "=", "==", "(", ")", ",", " ", "\t", "-", ".", "0", "7", "007", "1.5", "1e5",
    "1_0", "0x1", "'a'", '"b"', "'it\"s'", "'\\n'", "'", '"', "\\", "#", ";", "[", "]",
    "b'x'", "f'{A}'", "'é'", "'\x00'", "'\x0c'", "'\r'", "'\x7f'", "A.b", "*", "**", ":",
)  # fmt: skip


def _equivalent(line: str) -> str | None:
    """Which route read ``line`` and whether they agree (None: the fast path declined)."""
    from sandbox.lines import _LineError, _parse_line, _plain_step

    fast = _plain_step(line, 3, 2)
    if fast is None:
        return None
    try:
        slow = _parse_line(line, 3, 2)
    except _LineError as exc:
        raise AssertionError(f"fast path accepted {line!r}; ast refused it: {exc}") from None
    assert repr(fast) == repr(slow), line  # repr: Const(1) and Const(True) differ there
    return "fast"


def test_plain_lines_take_the_fast_path_and_match_the_ast_route() -> None:
    lines = [
        *NLVR.splitlines(),
        "A=Tool()",
        "A = Tool ( x = -3 , y=2.5, z=True, w=None, s='it\"s', t=\"a'b\", )",
        "A=Eval('{B} + 1')",
        "A=B",
        "A=-0.0",
        "A='text'",
        "A=Tool(B, 'c', 0, k=None)",
    ]
    assert [_equivalent(line) for line in lines] == ["fast"] * len(lines)


def test_the_fast_path_declines_what_it_cannot_read_exactly() -> None:
    for line in ("A=Tool(x=1, x=2)", "A=Tool(x=1, 2)", "A=Tool(,)", "if=Tool(1)",
                 "A=Tool(x=__y__)", "A=Tool(1e5)", "A=Tool(007)", "A=Tool('\\n')",
                 "A=Tool('é')", "A=Tool(b'x')", "A=Tool('a' 'b')", "A=Tool(1) # c",
                 "A=Tool(x=[1])", "A=Tool(f(1))", "A=Tool(1);", "A=lambda"):  # fmt: skip
        assert _equivalent(line) is None, line


@given(st.lists(st.sampled_from(_PIECES) | st.text(max_size=3), max_size=14))
@settings(max_examples=600, deadline=None, derandomize=True, database=None)
def test_fast_path_agrees_with_ast_on_any_text(pieces: list[str]) -> None:
    line = "".join(pieces).strip()
    if line:
        _equivalent(line)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(("", "x=", "y =", "if=", "True=", "__a__=")),
            st.sampled_from(_PIECES[:13] + _PIECES[18:33] + _PIECES[50:]),
        ),
        max_size=4,
    ),
    st.sampled_from((",", ", ", " ,", ",)", "")),
)
@settings(max_examples=600, deadline=None, derandomize=True, database=None)
def test_fast_path_agrees_with_ast_on_call_shaped_lines(
    args: list[tuple[str, str]], tail: str
) -> None:
    _equivalent("A=Tool(" + ", ".join(k + v for k, v in args) + tail + ")")


def test_a_redefinition_is_a_fix_it_that_renames_it_and_its_uses() -> None:
    """A small planner reuses one name (``OBJ0=Loc...``, ``OBJ0=Point(object=OBJ0)``):
    read in order, each reassignment is a new step; the fix-it gives it a name the program
    never mentions and renames its uses up to the next reassignment."""
    from sandbox.hints import apply_fixes

    source = (
        "OBJ0=Loc(image=IMAGE, object='OBJ0 cat')\nOBJ1X=Count(OBJ0)\n"
        "OBJ0=Point(image=IMAGE, object=OBJ0)\n"
        "OBJ0=Eval(\"{OBJ0}[0].label if len({OBJ0}) > 0 else 'none'\")\nRESULT=OBJ0"
    )
    with pytest.raises(ProgramInvalid) as info:
        parse(source)
    errors = info.value.errors
    assert [(e.code, e.line, e.fix) for e in errors] == [
        (ErrorCode.REDEFINED, 3, ("OBJ0", "OBJ1")),
        (ErrorCode.REDEFINED, 4, ("OBJ0", "OBJ2")),
    ]
    assert "give each step a new name (e.g. OBJ1)" in errors[0].message
    fixed = apply_fixes(source, errors)
    assert fixed == (
        "OBJ0=Loc(image=IMAGE, object='OBJ0 cat')\nOBJ1X=Count(OBJ0)\n"  # the text stays
        "OBJ1=Point(image=IMAGE, object=OBJ0)\n"
        "OBJ2=Eval(\"{OBJ1}[0].label if len({OBJ1}) > 0 else 'none'\")\nRESULT=OBJ2"
    )
    assert [s.target for s in parse(fixed).steps] == ["OBJ0", "OBJ1X", "OBJ1", "OBJ2", "RESULT"]
