"""The tool definition: one function or class gives signature, validator and docs."""

from __future__ import annotations

import time
from typing import Annotated, Any

import pytest

from sandbox import ErrorCode, LimitExceeded
from tools.base import BatchTool, ToolContext, parse_docstring, tool
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
