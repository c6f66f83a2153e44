"""Error codes: each layer owns its own, and no stable text is defined twice."""

from __future__ import annotations

from orchestrator.errors import RunErrorCode
from orchestrator.executor import StepSkipped
from orchestrator.planner import PlanningError
from sandbox import ErrorCode, VisChainError
from tools.errors import NoBackendError, ToolError, ToolErrorCode


def test_each_layer_owns_distinct_codes() -> None:
    layers = [set(ErrorCode), set(ToolErrorCode), set(RunErrorCode)]
    texts = [str(code) for layer in layers for code in layer]
    assert len(texts) == len(set(texts))
    assert "no-backend" not in {str(c) for c in ErrorCode}  # the sandbox keeps only its own


def test_errors_carry_their_layers_codes_as_stable_text() -> None:
    assert NoBackendError("x").code is ToolErrorCode.NO_BACKEND
    assert ToolError("x").to_dict()["code"] == "tool-error"
    assert PlanningError("x").code is RunErrorCode.PLANNING
    assert str(StepSkipped("x", step="B")) == "[skipped] (step B) x"
    assert VisChainError("x").code is ErrorCode.ERROR
    assert VisChainError("x", code=ToolErrorCode.BAD_INPUT).code == "bad-input"
