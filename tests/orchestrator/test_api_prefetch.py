"""A checked program's models start loading before its steps ask for them, and a model that
cannot load fails only the steps that need it, with a typed error naming role and step."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from orchestrator import Config, Orchestrator
from tests.support.backends import GatedBackend
from tools.base import ToolContext, tool
from tools.builtin import eval_, result
from tools.errors import ModelLoadError
from tools.registry import Registry


@tool(name="WaitForLoad")
def wait_for_load(x: int) -> int:
    """Wait until a model load has begun (a minute at most); 1 if it had, else 0.

    Args:
        x: anything
    """
    return int(GatedBackend.started["here"].wait(timeout=60))


@tool(name="UseModel", requires=("m",))
def use_model(ctx: ToolContext, x: int) -> str:
    """The name of the model serving role 'm'.

    Args:
        x: anything
    """
    return ctx.model("m").spec.model


def orchestrator(tmp_path: Path, model: str) -> Orchestrator:
    roles = {"m": [{"family": "test_gated", "model": model}]}
    config = Config(
        models={"roles": roles, "cache_dir": tmp_path, "progress": False}, plugins=False
    )
    return Orchestrator(config, registry=Registry([wait_for_load, use_model, eval_, result]))


@pytest.fixture(autouse=True)
def watch_loads() -> None:
    GatedBackend.gates.clear()
    GatedBackend.started.clear()
    GatedBackend.started["here"] = threading.Event()


def test_the_model_loads_while_the_first_steps_run(tmp_path: Path) -> None:
    orch = orchestrator(tmp_path, "here")
    try:
        result = orch.execute("A=WaitForLoad(x=1)\nB=UseModel(x=A)\nRESULT=B")
        assert result.ok, result.error
        assert result.values["A"] == 1  # the load had begun before step B asked for it
        assert result.output == "here"
    finally:
        orch.close()


def test_a_failed_load_fails_only_its_steps_naming_role_and_step(tmp_path: Path) -> None:
    orch = orchestrator(tmp_path, "fails")
    try:
        result = orch.execute("A=Eval('1 + 1')\nB=UseModel(x=A)\nC=Eval('{A} * 3')\nRESULT=C")
        error = result.step_errors["B"]
        assert isinstance(error, ModelLoadError) and error.role == "m"
        assert "step B" in str(error) and "'m' model" in str(error)
        assert "corrupt checkpoint" in str(error)
        assert result.values["A"] == 2 and result.values["C"] == 6  # no work lost
    finally:
        orch.close()
