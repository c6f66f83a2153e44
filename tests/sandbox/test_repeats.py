"""Steps that repeat their chain's call (sandbox.repeats) and their fix-its (sandbox.hints)."""

from __future__ import annotations

import pytest

from programs import load_library
from sandbox import ErrorCode, VisChainError, parse
from sandbox.hints import apply_fixes
from sandbox.repeats import repeated_steps
from tests.programs.test_visprog_forms import PROGRAMS
from tools import default_registry

TOOLS = default_registry(plugins=False)

LOOP = """OBJ0=FaceDet(image=IMAGE)
OBJ1=Select(image=IMAGE, object=OBJ0, query='face of a man')
OBJ2=Select(image=IMAGE, object=OBJ1, query='face of a man')
OBJ3=Select(image=IMAGE, object=OBJ2, query='face of a man')
IMAGE0=Emoji(image=IMAGE, object=OBJ3, emoji='ghost')
RESULT=IMAGE0"""


def test_a_call_repeated_on_what_it_chose_is_found_and_its_fix_drops_it() -> None:
    errors = repeated_steps(parse(LOOP), TOOLS)
    assert [(e.code, e.line, e.step, e.fix) for e in errors] == [
        (ErrorCode.REPEATED_STEP, 3, "OBJ2", ("OBJ2", "OBJ1")),
        (ErrorCode.REPEATED_STEP, 4, "OBJ3", ("OBJ3", "OBJ1")),  # resolved: one pass
    ]
    assert "arguments of OBJ1 (line 2)" in errors[0].message
    assert apply_fixes(LOOP, errors) == (
        "OBJ0=FaceDet(image=IMAGE)\n"
        "OBJ1=Select(image=IMAGE, object=OBJ0, query='face of a man')\n"
        "IMAGE0=Emoji(image=IMAGE, object=OBJ1, emoji='ghost')\n"
        "RESULT=IMAGE0"
    )


def test_arguments_are_compared_by_parameter_and_tools_through_their_aliases() -> None:
    source = (
        "A=Loc(image=IMAGE, object='dog')\nB=Select(image=IMAGE, object=A, query='dog')\n"
        "C=SELECT(IMAGE, B, 'dog')\nRESULT=C"
    )
    [error] = repeated_steps(parse(source), TOOLS)
    assert error.fix == ("C", "B") and apply_fixes(source, [error]).endswith("\nRESULT=B")


def test_a_chain_that_alternates_two_queries_keeps_one_step_of_each() -> None:
    lines = ["OBJ0=FaceDet(image=IMAGE)"]
    for i in range(1, 9):
        query = "man" if i % 2 else "woman"
        lines.append(f"OBJ{i}=Select(image=IMAGE, object=OBJ{i - 1}, query='{query}')")
    source = "\n".join([*lines, "RESULT=OBJ8"])
    errors = repeated_steps(parse(source), TOOLS)
    assert [e.step for e in errors] == [f"OBJ{i}" for i in range(3, 9)]
    assert {e.fix[1] for e in errors if e.fix} == {"OBJ2"}
    assert apply_fixes(source, errors) == "\n".join([*lines[:3], "RESULT=OBJ2"])


@pytest.mark.parametrize(
    "source",
    [
        # another query, another image, another argument: each step chooses anew
        "A=Loc(image=IMAGE, object='dog')\nB=Select(image=IMAGE, object=A, query='big dog')\n"
        "C=Select(image=IMAGE, object=B, query='brown dog')\nRESULT=C",
        "A=Loc(image=IMAGE, object='dog')\nB=Select(image=IMAGE, object=A, query='dog')\n"
        "C=Select(image=LEFT, object=B, query='dog')\nRESULT=C",
        # the same call on the same input twice is not a chain (nothing reads what it chose)
        "A=Loc(image=IMAGE, object='dog')\nB=Select(image=IMAGE, object=A, query='dog')\n"
        "C=Select(image=IMAGE, object=A, query='dog')\nRESULT=C",
        # a chain broken by another tool
        "A=Loc(image=IMAGE, object='dog')\nB=Select(image=IMAGE, object=A, query='dog')\n"
        "C=Seg(image=IMAGE, object=B)\nD=Select(image=IMAGE, object=C, query='dog')\nRESULT=D",
        # a picture tool applied again changes the picture again: not a selection
        "A=Loc(image=IMAGE, object='dog')\nB=BgBlur(image=IMAGE, object=A)\n"
        "C=BgBlur(image=B, object=A)\nRESULT=C",
        "A=Loc(image=IMAGE, object='dog')\nB=Crop(image=IMAGE, box=A)\nC=Crop(image=B, box=A)\n"
        "RESULT=C",
        # an expression is not a value passed on
        "A=Eval(expr='1 + 1')\nB=Eval(expr='{A} + 1')\nC=Eval(expr='{B} + 1')\nRESULT=C",
    ],
)
def test_steps_that_choose_anew_are_not_repeats(source: str) -> None:
    assert repeated_steps(parse(source), TOOLS) == []


def test_no_library_example_or_visprog_program_has_a_repeated_step() -> None:
    sources = [e.program for e in load_library(form="lines")]
    sources += [program for program, _ in PROGRAMS.values()]
    assert len(sources) > 100
    for source in sources:
        try:
            program = parse(source)
        except VisChainError:  # a malformed VisProg program kept to test its refusal
            continue
        assert repeated_steps(program, TOOLS) == [], source
