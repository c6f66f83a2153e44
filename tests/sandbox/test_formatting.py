"""The programs' ``str.format``: positional and keyword fields with format specs work as in
Python; attribute and index access, nested fields, huge widths and precisions, and values
too large to render are refused with typed errors."""

from __future__ import annotations

import pytest

from sandbox import Budget, EvalError, ForbiddenError, LimitExceeded, Limits
from sandbox.formatting import MAX_PRECISION, safe_format
from sandbox.python import PythonInterpreter, parse_python


def fmt(template: str, *args: object, limits: Limits | None = None, **kwargs: object) -> str:
    return safe_format(Budget(limits or Limits()), template, args, kwargs)


@pytest.mark.parametrize(
    ("template", "args", "kwargs"),
    [
        ("What do {} write?", ("postmen",), {}),
        ("{0} and {1} and {0}", ("a", "b"), {}),
        ("{name} is {age:>5d} years", (), {"name": "Ann", "age": 7}),
        ("{:.2f}|{:+08.3f}|{:,}|{:_x}|{:%}", (3.14159, -2.5, 1234567, 255, 0.25), {}),
        ("{!r} {!s} {!a}", ("é", 1, "é"), {}),
        ("{:*^11}", ("mid",), {}),
        ("{{literal}} {}", (1,), {}),
        ("{} {}", ([1, 2], {"k": "v"}), {}),
        ("{:10.3}", ("truncated text",), {}),
        ("", (), {}),
    ],
)
def test_format_matches_python(template: str, args: tuple, kwargs: dict) -> None:
    assert fmt(template, *args, **kwargs) == template.format(*args, **kwargs)


@pytest.mark.parametrize(
    "template",
    [
        "{0.__class__}",
        "{0.__class__.__mro__[1].__subclasses__}",
        "{x.__globals__}",
        "{0[0]}",
        "{x[key]}",
        "{0.real}",
        "{name.upper}",
    ],
)
def test_attribute_and_index_access_in_fields_is_forbidden(template: str) -> None:
    with pytest.raises(ForbiddenError):
        fmt(template, "a", x={"key": 1}, name="n")


@pytest.mark.parametrize(
    "template",
    ["{:{}}", "{:{width}}", "{0:{1}.{2}f}"],
)
def test_nested_fields_in_specs_are_forbidden(template: str) -> None:
    with pytest.raises(ForbiddenError):
        fmt(template, 1.0, 5, 2, width=5)


@pytest.mark.parametrize(
    "template",
    ["{:999999999}", "{:>1000000000000}", "{:0999999999d}", "{:.9999999999f}"],
)
def test_huge_widths_and_precisions_are_refused_before_building(template: str) -> None:
    with pytest.raises(LimitExceeded):
        fmt(template, 1)


def test_precision_above_the_bound_is_refused() -> None:
    assert len(fmt(f"{{:.{MAX_PRECISION}f}}", 1.0)) == MAX_PRECISION + 2
    with pytest.raises(LimitExceeded):
        fmt(f"{{:.{MAX_PRECISION + 1}f}}", 1.0)


def test_total_length_is_bounded_by_the_string_limit() -> None:
    limits = Limits(max_str_len=1_000)
    with pytest.raises(LimitExceeded):
        fmt("{}" * 30, *(["x" * 40] * 30), limits=limits)
    with pytest.raises(LimitExceeded):
        fmt("{}", [["x" * 300] * 10], limits=limits)


@pytest.mark.parametrize(
    ("template", "args", "kwargs"),
    [
        ("{} {}", ("only one",), {}),
        ("{2}", ("a",), {}),
        ("{missing}", (), {}),
        ("{} {0}", ("a",), {}),
        ("{", (), {}),
        ("}", (), {}),
        ("{:d}", ("text",), {}),
        ("{:q}", (1,), {}),
        ("{!x}", (1,), {}),
        ("{:>5}", ([1],), {}),
        ("{-1}", ("a",), {}),
        ("{:d}", (10**5000,), {}),
    ],
)
def test_bad_format_strings_are_typed_errors(template: str, args: tuple, kwargs: dict) -> None:
    with pytest.raises((EvalError, ForbiddenError)):
        fmt(template, *args, **kwargs)


def test_programs_call_format_with_positional_and_keyword_fields() -> None:
    program = parse_python(
        """def execute_command(image):
    who = "postmen"
    return "What do {} write? {n:>3}|{x:.1f}".format(who, n=5, x=2.25)
"""
    )
    result = PythonInterpreter(Budget(Limits())).run(program, {"image": None})
    assert result == "What do postmen write?   5|2.2"


def test_programs_cannot_reach_attributes_through_format() -> None:
    program = parse_python(
        """def execute_command(image):
    return "{0.__class__.__init__.__globals__}".format(image)
"""
    )
    with pytest.raises(ForbiddenError) as info:
        PythonInterpreter(Budget(Limits())).run(program, {"image": "x"})
    assert info.value.line == 2
