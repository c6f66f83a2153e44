"""The checker, against a small catalog written here (the sandbox imports no tools)."""

from __future__ import annotations

import difflib

import pytest

from sandbox import (
    Const,
    ErrorCode,
    Expr,
    ProgramInvalid,
    check,
    diagnose,
    parse,
)
from sandbox.hints import MAX_CANDIDATES, MAX_HINTS, apply_fixes
from sandbox.python import check_python, parse_python
from tests.support.catalog import SmallCatalog

CAT = SmallCatalog()


def errors(text: str, **kwargs: object) -> list[tuple[ErrorCode, int]]:
    return [(e.code, e.line) for e in diagnose(parse(text), CAT, **kwargs)]  # type: ignore[arg-type]


def test_binds_keywords_positionals_defaults_and_aliases() -> None:
    bound = check(
        parse(
            "B=detect(IMAGE, 'boat')\nC=Crop(image=IMAGE, box=B)\nN=count(B)\nL=Classify(B, ['a'])"
        ),
        CAT,
    )
    b, c, n, lst = bound.steps
    assert b.tool == "Loc" and b.args["object"] == Const("boat")
    assert c.deps == frozenset({"IMAGE", "B"})
    assert n.output_type == "Number"
    assert lst.args["top"] == Const(1)  # default filled in
    assert bound.inputs == {"IMAGE": "Image"}
    assert bound.result == "L"


def test_expression_arguments_bind_their_names() -> None:
    bound = check(parse("B=Loc(IMAGE, 'x')\nN=Count(B)\nA=Eval('{N} > 2')\nZ=EVAL(N == 3)"), CAT)
    assert bound.steps[2].args["expr"] == Expr("{N} > 2", frozenset({"N"}))
    assert bound.steps[2].deps == frozenset({"N"})
    assert bound.steps[3].deps == frozenset({"N"})


def test_unknown_tool_with_suggestion() -> None:
    with pytest.raises(ProgramInvalid) as info:
        check(parse("B=Lco(image=IMAGE, object='x')"), CAT)
    err = info.value.errors[0]
    assert err.code == ErrorCode.UNKNOWN_TOOL
    assert "did you mean 'Loc'" in err.message


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("B=Loc(image=IMAGE, objects='x')", ErrorCode.UNKNOWN_ARGUMENT),
        ("B=Loc(image=IMAGE)", ErrorCode.MISSING_ARGUMENT),
        ("B=Loc(IMAGE, 'x', 3)", ErrorCode.TOO_MANY_ARGUMENTS),
        ("B=Loc(IMAGE, 'x', image=IMAGE)", ErrorCode.ARGUMENT_TWICE),
        ("B=Loc(image=IMAGE, object=3)", ErrorCode.WRONG_TYPE),
        ("B=Loc(image=IMAGE, object='x')\nC=Crop(image=B, box=B)", ErrorCode.WRONG_TYPE),
        ("B=Loc(image=IMAGE, object='x')\nC=Loc(image=IMAGE, object=B)", ErrorCode.WRONG_TYPE),
        ("C=Crop(image=IMAGE, box=B)\nB=Loc(image=IMAGE, object='x')", ErrorCode.UNDEFINED_NAME),
        ("N=Count(object=NOPE)", ErrorCode.UNDEFINED_NAME),
        ("A=Eval('{MISSING} > 1')", ErrorCode.UNDEFINED_NAME),
        ("A=Eval('1 +')", ErrorCode.BAD_EXPRESSION),
        ("A=Eval('().__class__')", ErrorCode.BAD_EXPRESSION),
        ("B=Loc(image=IMAGE, object='x' + 'y')", ErrorCode.WRONG_TYPE),
        ("B=Classify(object=X, categories=[1, 2])", ErrorCode.UNDEFINED_NAME),
        (
            "B=Loc(image=IMAGE, object='x')\nC=Classify(object=B, categories=[B])",
            ErrorCode.WRONG_TYPE,
        ),
        ("B=Loc(image=IMAGE, object='x')\nC=Count(object=[B])", ErrorCode.WRONG_TYPE),
        ("RESULT=NOWHERE", ErrorCode.UNDEFINED_NAME),
    ],
)
def test_each_error_code(text: str, code: ErrorCode) -> None:
    assert code in [c for c, _ in errors(text)]


def test_every_problem_at_once_with_lines() -> None:
    found = errors("B=Loc(image=IMAGE)\nC=Cropp(image=IMAGE, box=B)\nN=Count(object=Q)")
    assert found == [
        (ErrorCode.MISSING_ARGUMENT, 1),
        (ErrorCode.UNKNOWN_TOOL, 2),
        (ErrorCode.UNDEFINED_NAME, 3),
    ]


def test_inputs_given_explicitly_are_strict_and_unused_inputs_are_fine() -> None:
    assert errors("B=Loc(image=LEFT, object='x')", inputs=["LEFT", "RIGHT"]) == []
    assert errors("B=Loc(image=IMAGEE, object='x')", inputs=["IMAGE"]) == [
        (ErrorCode.UNDEFINED_NAME, 1)
    ]
    assert (
        errors("IMAGE=Loc(image=IMAGE, object='x')", inputs=["IMAGE"])[0][0] == ErrorCode.REDEFINED
    )


def test_messages_are_fit_for_a_repair_prompt() -> None:
    with pytest.raises(ProgramInvalid) as info:
        check(parse("B=Loc(image=IMAGE, object='x')\nC=Crop(image=B, box=B)"), CAT)
    message = info.value.errors[0].message
    assert "argument 'image' of Crop expects Image" in message
    assert "B is ObjectList (from line 1)" in message


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("-" * 9000 + "1", "nested too deeply"),  # the parser's own stack overflows
        ("(" * 4000 + "1" + ")" * 4000, "too many nested parentheses"),
    ],
)
def test_a_pathological_expression_is_named_and_quoted_short(expression: str, reason: str) -> None:
    diagnosed = diagnose(parse(f"A=Eval('{expression}')"), CAT)
    assert [(e.code, e.line) for e in diagnosed] == [(ErrorCode.BAD_EXPRESSION, 1)]
    message = diagnosed[0].message
    assert reason in message
    assert f"in '{expression[:119]}…':" in message
    assert len(message) < 250


def _count_ratios(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    ratio = difflib.SequenceMatcher.ratio

    def counted(self: difflib.SequenceMatcher) -> float:
        calls[0] += 1
        return ratio(self)

    monkeypatch.setattr(difflib.SequenceMatcher, "ratio", counted)
    return calls


def test_near_miss_names_are_hinted_with_bounded_work(monkeypatch: pytest.MonkeyPatch) -> None:
    # issue 14 item 3: 4,500 near-miss names took 97 s ("did you mean" over every name)
    n = 600
    text = "\n".join(f"VARIABLE_NUMBER_{i}=Count(object=VARIABLE_NUMBR_{i})" for i in range(n))
    calls = _count_ratios(monkeypatch)
    found = diagnose(parse(text), CAT, inputs=[])  # type: ignore[arg-type]
    assert len(found) == n and all(e.code == ErrorCode.UNDEFINED_NAME for e in found)
    assert "did you mean 'VARIABLE_NUMBER_1" in found[2].message
    assert calls[0] <= MAX_HINTS * MAX_CANDIDATES  # was about n * n / 2


def test_python_check_hints_with_bounded_work(monkeypatch: pytest.MonkeyPatch) -> None:
    body = "".join(f"    x{i} = fnd{i}(image)\n" for i in range(600))
    program = parse_python("def execute_command(image):\n" + body + "    return 1\n")
    names = [f"find{i}" for i in range(600)]
    calls = _count_ratios(monkeypatch)
    found = check_python(program, functions=names, exposed={})
    assert len(found) == 600 and "did you mean 'find0'" in found[0].message
    assert calls[0] <= MAX_HINTS * MAX_CANDIDATES


def test_checking_is_time_bounded() -> None:
    text = "A=Loc(image=B, object='cat')\nC=Count(object=A)"
    found = diagnose(parse(text), CAT, inputs=["B"], time_limit=0.0)  # type: ignore[arg-type]
    assert [(e.code, e.line) for e in found] == [(ErrorCode.TIME_LIMIT, 1)]
    assert diagnose(parse(text), CAT, inputs=["B"]) == []  # type: ignore[arg-type]


def test_a_hint_with_one_name_is_a_fix_it_that_applies() -> None:
    """A small planner copies ``Count(text)`` unchanged into its "repair" even when told
    "did you mean 'TEXT0'": the one close name is a fix-it the planner applies itself."""
    source = (
        "TEXT0=Lco(image=IMAGE, object='text')\nN=Count(text)\n"
        "L=Classify(TEXT0, categories=['a'], tpo=2)\nRESULT=N"
    )
    found = diagnose(parse(source), CAT)
    assert [(e.code, e.fix) for e in found] == [
        (ErrorCode.UNKNOWN_TOOL, ("Lco", "Loc")),
        (ErrorCode.UNDEFINED_NAME, ("text", "TEXT0")),
        (ErrorCode.UNKNOWN_ARGUMENT, ("tpo", "top")),
    ]
    assert found[1].to_dict()["fix"] == ["text", "TEXT0"]
    fixed = apply_fixes(source, found)
    # the quoted 'text' is a value, not the name: only the reference changes
    assert fixed == (
        "TEXT0=Loc(image=IMAGE, object='text')\nN=Count(TEXT0)\n"
        "L=Classify(TEXT0, categories=['a'], top=2)\nRESULT=N"
    )
    assert diagnose(parse(fixed), CAT) == []


def test_no_fix_it_without_exactly_one_close_name() -> None:
    source = "BOX1=Loc(IMAGE, 'a')\nBOX2=Loc(IMAGE, 'b')\nN=Count(BOX3)\nM=Count(PEOPLE)"
    found = diagnose(parse(source), CAT)
    assert [e.code for e in found] == [ErrorCode.UNDEFINED_NAME] * 2
    assert "did you mean 'BOX" in found[0].message and "' or 'BOX" in found[0].message
    assert [e.fix for e in found] == [None, None]  # two close names; none close
    assert apply_fixes(source, found) is None
    assert "fix" not in found[0].to_dict()


def test_no_fix_it_to_an_input() -> None:
    """``RESULT=IMAGE0`` where the edit was never named: returning the input unchanged is
    not what was meant, so 'IMAGE' is hinted but not written in."""
    found = diagnose(parse("B=Loc(IMAGE, 'cat')\nD=Loc(IMAGE, 'dog')\nRESULT=IMAGE0"), CAT)
    assert "did you mean 'IMAGE'" in found[0].message and found[0].fix is None


def test_a_result_naming_nothing_is_fixed_to_the_one_value_no_step_reads() -> None:
    """The 0.5B wrote ``RESULT=IMAGE0`` after an edit it named OBJ2 (items 28, 31): the one
    computed value nothing reads is what the program computed to return."""
    source = "B=Loc(IMAGE, 'cat')\nC=Crop(image=IMAGE, box=B)\nRESULT=IMAGE0"
    [error] = diagnose(parse(source), CAT)
    assert (
        error.fix == ("IMAGE0", "C") and "did you mean 'C', the one value no step" in error.message
    )
    assert apply_fixes(source, [error]) == source.replace("IMAGE0", "C")
    # two values nothing reads: which one was meant is not known
    two = "B=Loc(IMAGE, 'cat')\nD=Loc(IMAGE, 'dog')\nRESULT=IMAGE0"
    assert [e.fix for e in diagnose(parse(two), CAT)] == [None]
    # a step (not the result) that reads an undefined name gets no such fix-it
    assert [e.fix for e in diagnose(parse("B=Loc(IMAGE, 'cat')\nN=Count(WHAT)"), CAT)] == [None]
