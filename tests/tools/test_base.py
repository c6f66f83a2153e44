"""The tool definition: one function or class gives signature, validator and docs."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Annotated, Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage

from sandbox import ErrorCode, LimitExceeded
from tools.base import BatchTool, FunctionTool, ToolContext, parse_docstring, tool
from tools.errors import NoBackendError, ToolInputError
from tools.types import ObjectList


@tool(aliases=("Twice",), examples=["N=Double(x=2)"])
def double(x: int, label: Annotated[str, "a name for the result"] = "n") -> str:
    """Double a number.

    Args:
        x: the number
    """
    return f"{label}={2 * x}"


class Scale(BatchTool):
    """Multiply numbers, many at once."""

    name = "Scale"
    max_batch = 8

    def __init__(self) -> None:
        self.batches: list[int] = []

    def signature(self, x: float, factor: float = 2.0) -> float:
        """Args:
        x: the number
        factor: the multiplier
        """

    def run_batch(self, ctx: ToolContext, calls: list[dict[str, Any]]) -> list[Any]:
        self.batches.append(len(calls))
        return [c["x"] * c["factor"] if c["x"] >= 0 else ValueError("negative") for c in calls]


def test_function_tool_spec() -> None:
    spec = double.spec
    assert spec.name == "Double" and spec.aliases == ("Twice",)
    assert spec.description == "Double a number."
    assert [(p.name, p.type, p.required) for p in spec.params] == [
        ("x", "Number", True),
        ("label", "Text", False),
    ]
    assert spec.params[0].description == "the number"
    assert spec.params[1].description == "a name for the result"
    assert spec.output == "Text"
    assert spec.usage() == "Double(x: Number, label: Text='n') -> Text"


def test_validation_coerces_and_refuses() -> None:
    assert double(3) == "n=6"
    assert double(x="4", label=5) == "5=8"
    with pytest.raises(ToolInputError, match="x"):
        double(x=2.5)
    with pytest.raises(ToolInputError):
        double(x=ObjectList())
    with pytest.raises(ToolInputError):
        double.prepare({"x": 1, "nope": 2})


def test_class_tool_and_batches() -> None:
    scale = Scale()
    assert scale.spec.usage() == "Scale(x: Number, factor: Number=2.0) -> Number"
    assert scale.spec.params[0].description == "the number"
    assert scale.spec.description == "Multiply numbers, many at once."
    assert scale(3) == 6.0 and scale.batches == [1]  # one call runs as a batch of one
    results = scale.run_batch(
        ToolContext(), [{"x": 1.0, "factor": 3.0}, {"x": -1.0, "factor": 1.0}]
    )
    assert results[0] == 3.0 and isinstance(results[1], ValueError)
    with pytest.raises(ValueError):
        scale(-1)


def test_a_batch_tool_declares_its_signature_once() -> None:
    with pytest.raises(TypeError, match="needs run_batch"):

        class NoBatch(BatchTool):
            def signature(self, x: float) -> float:
                """Args:
                x: the number
                """

    with pytest.raises(TypeError, match="not both"):

        class Both(BatchTool):
            def signature(self, x: float) -> float:
                """Args:
                x: the number
                """

            def run(self, ctx: ToolContext, x: float) -> float:
                return x

            def run_batch(self, ctx: ToolContext, calls: list[dict[str, Any]]) -> list[Any]:
                return [c["x"] for c in calls]


def test_context_limits_and_missing_models() -> None:
    ctx = ToolContext(deadline=time.monotonic() - 1)
    with pytest.raises(LimitExceeded) as info:
        ctx.check()
    assert info.value.code == ErrorCode.TIME_LIMIT
    with pytest.raises(NoBackendError):
        ToolContext().model("clip")


def test_tool_definitions_must_be_typed() -> None:
    with pytest.raises(TypeError, match="annotation"):

        @tool
        def untyped(x) -> int:  # type: ignore[no-untyped-def]
            """No types."""
            return x

    with pytest.raises(TypeError, match="return type"):

        @tool
        def no_return(x: int):  # type: ignore[no-untyped-def]
            """No return type."""
            return x


def test_docstring_parsing() -> None:
    summary, args = parse_docstring(
        """Count things.
        Across lines.

        Args:
            object: what to count
                and more
            other (int): second
        Returns:
            the count
        """
    )
    assert summary == "Count things. Across lines."
    assert args == {"object": "what to count and more", "other": "second"}


def test_a_derived_context_shares_the_run_but_not_deadline_or_meta() -> None:
    base = ToolContext(options={"Loc": {"k": 1}}, deadline=5.0)
    base.note(model="m")
    ctx = base.derive(deadline=9.0)
    assert ctx.deadline == 9.0 and base.deadline == 5.0
    assert ctx.meta == {} and base.meta == {"model": "m"}
    ctx.note(device="cpu")
    assert base.meta == {"model": "m"}
    assert ctx.options is base.options and ctx.limits is base.limits
    base.cancel.set()  # the run's cancellation reaches every derived context
    with pytest.raises(LimitExceeded):
        ctx.check()


# --- prepare's fast path: the same result as conversion and pydantic, for any call -----------


@tool
def mixed(
    a: int | None,
    b: Annotated[float, "a ratio"],
    c: str | ObjectList,
    d: Any,
    e: bool = False,
) -> int:
    """A tool whose parameters cover every kind of annotation the fast path reads.

    Args:
        a: optional number
        b: ratio
        c: text or objects
        d: anything
    """
    return 0


@tool
def either(n: int | float, tags: list[str]) -> int:
    """Parameters the fast path leaves to pydantic (two plain types; a list).

    Args:
        n: a number
        tags: words
    """
    return 0


class _Text(str):
    pass


class _Number(int):
    pass


def _argument_values() -> list[Any]:
    from sandbox import compile_expression
    from tools.types import Box, Image, Object, Point, PointList
    from tools.video import FrameResults, Video

    image = Image(PILImage.new("RGB", (5, 4)))
    box = Box(0, 0, 2, 2)
    obj = Object(box, label="cat", score=0.5)
    return [
        None, 0, 1, -3, 2**80, True, False, 0.0, 2.5, float("nan"), float("inf"), "", "3",
        "yes", "cat", _Text("x"), _Number(4), np.int64(3), np.float32(1.5), np.bool_(True),
        [], ["a", "b"], ("a",), [1, 2], [0, 0, 2, 2], {"k": 1}, image, box, obj,
        ObjectList((obj,)), ObjectList(()), Point(1, 2), PointList(()),
        Video([image, image], fps=1.0), FrameResults([image, image]), FrameResults([1, 2]),
        compile_expression("{A} + 1").bind({"A": 2}), object(),
    ]  # fmt: skip


_VALUES = _argument_values()


def _outcome(t: Any, method: str, args: dict[str, Any]) -> tuple[str, Any]:
    try:
        return "ok", getattr(t, method)(dict(args))
    except ToolInputError as exc:
        return "error", str(exc)


def _same_outcome(t: Any, args: dict[str, Any]) -> None:
    fast, slow = _outcome(t, "prepare", args), _outcome(t, "validated", args)
    assert fast[0] == slow[0], (t.name, args, fast, slow)
    if fast[0] == "error":
        assert fast[1] == slow[1]
        return
    assert list(fast[1]) == list(slow[1])
    for name, value in fast[1].items():
        expected = slow[1][name]
        assert type(value) is type(expected), (t.name, name, value, expected)
        assert value is expected or value == expected or (value != value and expected != expected)


def _tools() -> list[Any]:
    from tools.builtin import builtin_tools

    return [*builtin_tools(), mixed, either, double, Scale()]


def test_prepare_agrees_with_pydantic_for_every_value_in_every_parameter() -> None:
    """Every parameter in declared order (the fast path's case): each value in each
    parameter, the others holding a value the fast path passes."""
    for t in _tools():
        kinds = t._unchanged or ()
        passing = {
            name: next(v for v in _VALUES if exact is None or type(v) in exact)
            for name, exact in kinds
        }
        for p in t.spec.params:
            for value in _VALUES:
                args = {q.name: passing.get(q.name, value) for q in t.spec.params}
                args[p.name] = value
                _same_outcome(t, args)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_prepare_returns_what_conversion_and_pydantic_return(data: st.DataObject) -> None:
    t = data.draw(st.sampled_from(_tools()))
    names = [p.name for p in t.spec.params]
    keys = data.draw(
        st.one_of(
            st.just(names),  # every parameter in declared order: the fast path's case
            st.permutations(names),
            st.lists(st.sampled_from([*names, "box", "nope"]), unique=True, max_size=5),
        )
    )
    _same_outcome(t, {k: data.draw(st.sampled_from(_VALUES)) for k in keys})


def test_prepare_skips_pydantic_only_where_it_returns_the_values_as_they_are(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sandbox import compile_expression
    from tools.builtin.logic import eval_

    bound = compile_expression("1 + 1").bind({})
    calls: list[dict[str, Any]] = []
    for t in (eval_, mixed, either):
        monkeypatch.setattr(t, "validated", lambda args, t=t: calls.append(args) or {})
    assert eval_.prepare({"expr": bound}) == {"expr": bound}
    args = {"a": None, "b": 0.5, "c": "x", "d": object(), "e": True}
    assert mixed.prepare(args) == args
    assert calls == []
    for slow in (
        {"a": True, "b": 0.5, "c": "x", "d": 1, "e": True},  # bool for int: pydantic's call
        {"a": 1, "b": 1, "c": "x", "d": 1, "e": True},  # int for float: converted
        {"b": 0.5, "a": 1, "c": "x", "d": 1, "e": True},  # another order
        {"a": 1, "b": 0.5, "c": "x", "d": 1},  # a default to fill in
        {"a": 1, "b": 0.5, "c": _Text("x"), "d": 1, "e": False},  # a subclass
    ):
        mixed.prepare(slow)
    either.prepare({"n": 1, "tags": ["a"]})
    assert len(calls) == 6


def test_prepare_runs_a_model_someone_else_made() -> None:
    from pydantic import BaseModel, ConfigDict, field_validator

    class Positive(BaseModel):
        model_config = ConfigDict(extra="forbid")
        x: int
        label: str = "n"

        @field_validator("x")
        @classmethod
        def positive(cls, v: int) -> int:
            if v < 0:
                raise ValueError("must be positive")
            return v

    custom = FunctionTool(double.fn, replace(double.spec, input_model=Positive), False)
    assert custom.prepare({"x": 2, "label": "a"}) == {"x": 2, "label": "a"}
    with pytest.raises(ToolInputError, match="must be positive"):
        custom.prepare({"x": -2, "label": "a"})
