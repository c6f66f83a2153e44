"""Fault injection: a model backend that raises, hangs, returns the wrong type or count, or
runs out of (CUDA) memory. Each fault becomes the configured policy or a typed error on its
own step, is recorded in the trace, and independent steps still finish."""

from __future__ import annotations

import time
from typing import Any

import pytest

from orchestrator.executor import ExecOptions, Executor
from orchestrator.trace import Trace
from orchestrator.workers import WorkerPool
from sandbox import ErrorCode, check, parse
from tests.support.faults import RELEASE, Double, FlakyBackend, flaky_settings
from tools import Registry, ToolContext
from tools.backends import BACKENDS
from tools.batching import Batcher
from tools.builtin.logic import eval_, result
from tools.errors import ModelError, ToolDegraded, ToolError, ToolOutputError
from tools.pool import ModelPool


@pytest.fixture(autouse=True)
def flaky_family(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(BACKENDS, "flaky", FlakyBackend)


def setup(
    options: dict[str, Any] | None = None, step_limit: float = 30.0, **backend: Any
) -> tuple[Executor, Registry, ModelPool]:
    pool = ModelPool(flaky_settings(**backend))
    reg = Registry([Double(), eval_, result])
    tool_options = {"Double": {"max_wait_ms": 0, **(options or {})}}
    ex = Executor(
        reg,
        context=lambda: ToolContext(models=pool, options=tool_options),
        options=ExecOptions(step_time_limit=step_limit, program_time_limit=60.0),
        pool=WorkerPool(4),
        batcher=Batcher(),
    )
    return ex, reg, pool


def run(ex: Executor, reg: Registry, text: str) -> tuple[Any, Trace]:
    bound = check(parse(text), reg, inputs=[])
    trace = Trace(program=text)
    return ex.run(bound, {}, trace), trace


EIGHT = "\n".join(f"D{i}=Double(x={i})" for i in range(8))
INDEPENDENT = "\nE=Eval(expr='40 + 2')"


def flaky(pool: ModelPool) -> FlakyBackend:
    return pool.get("flaky")


@pytest.mark.parametrize(
    ("mode", "error_type", "says"),
    [
        ("raise", ToolError, "the backend crashed"),
        ("wrong-type", ToolOutputError, "declared to return Number"),
        ("wrong-count", ToolError, "returned 7 results for 8 calls"),
    ],
)
def test_a_faulty_backend_fails_its_steps_with_a_typed_error(
    mode: str, error_type: type, says: str
) -> None:
    ex, reg, _ = setup()
    text = "\n".join(f"D{i}=Double(x={i}, mode='{mode}')" for i in range(8)) + INDEPENDENT
    out, trace = run(ex, reg, text)
    assert out.status["E"] == "ok" and out.values["E"] == 42  # independent work finished
    for i in range(8):
        error = out.errors[f"D{i}"]
        assert isinstance(error, error_type) and says in str(error)
        assert error.step == f"D{i}" and error.line == i + 1
        assert trace.step(f"D{i}").status == "error"


def test_a_hanging_backend_times_out_and_the_tool_is_degraded_until_it_returns() -> None:
    RELEASE.clear()
    ex, reg, _ = setup(step_limit=0.3)
    try:
        out, _ = run(ex, reg, "D0=Double(x=1, mode='hang')" + INDEPENDENT)
        assert out.errors["D0"].code == ErrorCode.TIME_LIMIT
        assert out.values["E"] == 42
        out, _ = run(ex, reg, "D0=Double(x=1)" + INDEPENDENT)  # refused at once, not queued
        assert isinstance(out.errors["D0"], ToolDegraded) and "Double" in str(out.errors["D0"])
        assert out.values["E"] == 42
    finally:
        RELEASE.set()
    _wait_until(lambda: ex.pool.stuck("Double") == 0)
    out, _ = run(ex, reg, "D0=Double(x=1)")
    assert out.values["D0"] == 2  # recovered once the stuck call returned
    RELEASE.clear()


def test_out_of_memory_halves_the_batch_and_records_it() -> None:
    ex, reg, pool = setup(capacity=2)
    out, trace = run(ex, reg, EIGHT + INDEPENDENT)
    assert [out.values[f"D{i}"] for i in range(8)] == [2 * i for i in range(8)]
    sizes = [n for device, n in flaky(pool).batches]
    assert sizes == [8, 4, 2, 2, 4, 2, 2]  # halved until batches fit
    retreats = trace.step("D0").meta["out_of_memory"]
    assert {"batch": 8, "then": "batches of 4"} in retreats
    assert "fallback_device" not in trace.step("D0").meta


def test_out_of_memory_at_batch_size_one_moves_to_the_cpu() -> None:
    ex, reg, pool = setup(capacity=0)
    out, trace = run(ex, reg, "D0=Double(x=1)\nD1=Double(x=5)" + INDEPENDENT)
    assert out.values["D0"] == 2 and out.values["D1"] == 10
    assert trace.step("D0").meta["fallback_device"] == "cpu"
    devices = [d for d, _ in pool.on_device("cpu").get("flaky").batches]
    assert devices and set(devices) == {"cpu"}


def test_out_of_memory_everywhere_is_a_typed_error() -> None:
    ex, reg, _ = setup(capacity=0, cpu_capacity=0)
    out, trace = run(ex, reg, "D0=Double(x=1)\nD1=Double(x=5)" + INDEPENDENT)
    for name in ("D0", "D1"):
        error = out.errors[name]
        assert isinstance(error, ModelError) and "ran out of device memory" in str(error)
    assert out.values["E"] == 42
    assert trace.step("D0").meta["out_of_memory"][-1]["then"] == "error"


def test_the_out_of_memory_policy_is_configured_per_tool() -> None:
    ex, reg, pool = setup({"on_oom": []}, capacity=2)
    out, _ = run(ex, reg, EIGHT)
    assert all(isinstance(out.errors[f"D{i}"], ModelError) for i in range(8))
    assert [n for _, n in flaky(pool).batches] == [8]  # no retries


def _wait_until(condition: Any, seconds: float = 30.0) -> None:
    end = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("condition never became true")
        time.sleep(0.01)


def test_when_a_batch_leader_times_out_the_other_programs_calls_still_get_results() -> None:
    """Two programs share one batch; the leading program's step limit fires while the
    backend hangs. The other program's call is run again (no IndexError, no hang)."""
    import threading

    RELEASE.clear()
    pool = ModelPool(flaky_settings())
    reg = Registry([Double(), eval_, result])
    batcher = Batcher()
    options = {"Double": {"max_wait_ms": 300, "wait": "fixed"}}

    def executor(limit: float) -> Executor:
        return Executor(
            reg,
            context=lambda: ToolContext(models=pool, options=options),
            options=ExecOptions(step_time_limit=limit, program_time_limit=60.0),
            pool=WorkerPool(2),
            batcher=batcher,
        )

    leading, joining = executor(0.5), executor(30.0)
    first: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: first.update(out=run(leading, reg, "D=Double(x=1, mode='hang')")[0])
    )
    try:
        thread.start()
        while not batcher.queue(reg.get("Double")).pending:
            time.sleep(0.001)
        out, _ = run(joining, reg, "D=Double(x=21)" + INDEPENDENT)
        thread.join(timeout=60)
        assert first["out"].errors["D"].code == ErrorCode.TIME_LIMIT
        assert out.values["D"] == 42 and out.values["E"] == 42
        assert [n for _, n in flaky(pool).batches] == [2, 1]  # shared, then run again
    finally:
        RELEASE.set()
    RELEASE.clear()
