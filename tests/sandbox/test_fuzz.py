"""Property-based fuzzing of both parsers, the checkers and both evaluators: any text gives
a program or a typed error, and checking and running it end in a value or a typed error
under the budget. Fixed seed and a small number of examples, so the suite stays quick and
repeatable; ``bench/fuzz.py`` runs the same properties for longer, with fresh seeds."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox import Budget, PythonProgram, VisChainError, compile_expression, parse
from tests.support.fuzz import (
    LIMITS,
    VALUES,
    expressions,
    holds_for,
    line_programs,
    no_lazy,
    python_programs,
    run_python_program,
)

SUITE = settings(
    max_examples=80,
    deadline=None,  # the sandbox's own budget bounds time; no wall-clock assertions here
    derandomize=True,  # a fixed seed: the same examples on every run
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@SUITE
@given(line_programs())
def test_line_programs_parse_check_and_evaluate_or_fail_typed(text: str) -> None:
    holds_for(text)


@SUITE
@given(python_programs())
def test_python_programs_parse_check_and_run_or_fail_typed(text: str) -> None:
    holds_for(text)


@SUITE
@given(st.text(max_size=300), st.sampled_from(["lines", "python", "auto"]))
def test_any_text_parses_or_fails_typed_in_every_form(text: str, form: str) -> None:
    try:
        parse(text, form=form, limits=LIMITS)
    except VisChainError as exc:
        assert exc.message


@SUITE
@given(expressions(), st.booleans())
def test_expressions_evaluate_or_fail_typed(text: str, answers: bool) -> None:
    try:
        compiled = compile_expression(text, visprog=answers)
    except VisChainError:
        return
    try:
        value = compiled.evaluate(VALUES, budget=Budget(LIMITS), answers=answers)
    except VisChainError:
        return
    assert no_lazy(value)


@SUITE
@given(expressions())
def test_expressions_over_lazy_values_in_python_run_or_fail_typed(text: str) -> None:
    source = (
        "def execute_command(image):\n"
        "    xs = [later('red'), later(2), [later('blue')]]\n"
        "    A = later('yes')\n"
        f"    return {text}\n"
    )
    try:
        program = parse(source, form="python", limits=LIMITS)
    except VisChainError:
        return
    assert isinstance(program, PythonProgram)
    run_python_program(program)


@pytest.mark.parametrize(
    "text",
    [
        "A=Eval('xor ' + '(' * 1500)",
        "def execute_command(image):\n    return " + "[" * 180 + "]" * 180 + "\n",
        # a statement's own TypeError (unhashable key) escaped as a raw exception
        "def execute_command(image):\n    d = {}\n    d[lambda: 1] = 0\n",
        "def execute_command(image):\n    a, b = 1\n",
    ],
)
def test_findings_stay_fixed(text: str) -> None:
    """Inputs bench/fuzz.py found, kept as regression tests."""
    holds_for(text)
