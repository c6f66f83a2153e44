"""The executor: DAG scheduling, real parallelism, batching, failures and time limits."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from orchestrator.errors import RunErrorCode
from orchestrator.executor import ExecOptions, Executor
from orchestrator.trace import Trace
from orchestrator.workers import WorkerPool
from sandbox import ErrorCode, check, parse
from tools import Registry, Tool, ToolContext, tool
from tools.builtin.logic import count, eval_, result
from tools.errors import ToolErrorCode


@tool
def wait(seconds: float, tag: str = "") -> str:
    """Sleep, then return the tag.

    Args:
        seconds: how long
        tag: what to return
    """
    time.sleep(seconds)
    return tag


@tool
def fail(message: str) -> str:
    """Always fails.

    Args:
        message: the error text
    """
    raise RuntimeError(message)


@tool
def spin(x: int) -> int:
    """Loops forever in Python (a hostile plug-in).

    Args:
        x: ignored
    """
    while True:
        x += 1


@tool
def join(a: str, b: str) -> str:
    """Concatenate.

    Args:
        a: first
        b: second
    """
    return a + b


class Upper(Tool):
    """Upper-cases many texts in one batch call."""

    name = "Upper"
    max_batch = 64

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.lock = threading.Lock()

    def run(self, ctx: ToolContext, text: str) -> str:
        """Args:
        text: the text
        """
        return self.one(ctx, text=text)

    def run_batch(self, ctx: ToolContext, calls: list[dict[str, Any]]) -> list[Any]:
        with self.lock:
            self.batches.append(len(calls))
        return [c["text"].upper() if c["text"] != "bad" else ValueError("bad input") for c in calls]


def make(step_limit: float | None = 30.0, program_limit: float | None = 60.0, workers: int = 4):
    upper = Upper()
    reg = Registry([wait, fail, spin, join, upper, count, eval_, result])
    ex = Executor(
        reg,
        options=ExecOptions(step_time_limit=step_limit, program_time_limit=program_limit),
        pool=WorkerPool(workers),
    )
    return ex, reg, upper


def run(ex: Executor, reg: Registry, text: str) -> tuple[Any, Trace]:
    bound = check(parse(text), reg, inputs=[])
    trace = Trace(program=text)
    return ex.run(bound, {}, trace), trace


def test_independent_steps_really_overlap() -> None:
    ex, reg, _ = make()
    start = time.perf_counter()
    outcome, trace = run(
        ex, reg, "A=Wait(seconds=0.4, tag='a')\nB=Wait(seconds=0.4, tag='b')\nC=Join(a=A, b=B)"
    )
    elapsed = time.perf_counter() - start
    assert outcome.values["C"] == "ab"
    assert elapsed < 0.75, elapsed  # sequential would take 0.8 s
    a, b = trace.step("A"), trace.step("B")
    assert a.start < b.end and b.start < a.end  # their run times overlap


def test_dependencies_are_respected() -> None:
    ex, reg, _ = make()
    outcome, trace = run(
        ex, reg, "A=Wait(seconds=0.1, tag='x')\nB=Join(a=A, b='y')\nC=Join(a=B, b=A)"
    )
    assert outcome.values["C"] == "xyx"
    assert trace.step("B").start >= trace.step("A").end


def test_ready_calls_to_a_batched_tool_are_grouped() -> None:
    ex, reg, upper = make()
    lines = [f"T{i}=Upper(text='w{i}')" for i in range(6)]
    outcome, trace = run(ex, reg, "\n".join(lines))
    assert upper.batches == [6]
    assert outcome.values["T3"] == "W3"
    assert {trace.step(f"T{i}").batch_size for i in range(6)} == {6}


def test_one_bad_call_in_a_batch_fails_only_itself() -> None:
    ex, reg, _ = make()
    outcome, _ = run(
        ex, reg, "A=Upper(text='ok')\nB=Upper(text='bad')\nC=Join(a=A, b='!')\nD=Join(a=B, b='!')"
    )
    assert outcome.status == {"A": "ok", "B": "error", "C": "ok", "D": "skipped"}
    assert outcome.values["C"] == "OK!"
    assert outcome.errors["B"].line == 2 and outcome.errors["B"].step == "B"
    assert outcome.errors["D"].code == RunErrorCode.SKIPPED


def test_a_failing_step_keeps_finished_work_and_skips_dependents() -> None:
    ex, reg, _ = make()
    outcome, trace = run(
        ex,
        reg,
        "A=Wait(seconds=0.01, tag='a')\nB=Fail(message='boom')\nC=Join(a=A, b=B)\nD=Join(a=A, b='d')",
    )
    assert outcome.status["A"] == "ok" and outcome.status["D"] == "ok"
    assert outcome.status["B"] == "error" and outcome.status["C"] == "skipped"
    err = outcome.errors["B"]
    assert err.code == ToolErrorCode.TOOL_ERROR and "boom" in err.message and err.line == 2
    assert trace.step("C").error["code"] == "skipped"


def test_step_time_limit_is_enforced_and_python_loops_are_stopped() -> None:
    ex, reg, _ = make(step_limit=0.3)
    start = time.perf_counter()
    outcome, _ = run(ex, reg, "A=Spin(x=1)\nB=Wait(seconds=0.05, tag='b')\nC=Join(a=B, b='c')")
    assert time.perf_counter() - start < 1.5
    assert outcome.errors["A"].code == ErrorCode.TIME_LIMIT
    assert outcome.values["C"] == "bc"
    # the abandoned worker was interrupted and replaced: the pool still runs new work
    outcome2, _ = run(ex, reg, "X=Wait(seconds=0.01, tag='x')")
    assert outcome2.values["X"] == "x"
    assert ex.pool.live_workers == ex.pool.max_workers


def test_program_time_limit() -> None:
    ex, reg, _ = make(step_limit=None, program_limit=0.3)
    start = time.perf_counter()
    outcome, _ = run(ex, reg, "A=Wait(seconds=5, tag='a')\nB=Join(a=A, b='b')")
    assert time.perf_counter() - start < 1.5
    assert outcome.errors["A"].code == ErrorCode.TIME_LIMIT
    assert "program" in outcome.errors["A"].message
    assert outcome.status["B"] == "skipped"


def test_eval_runs_inline_with_its_limits() -> None:
    ex, reg, _ = make()
    outcome, _trace = run(
        ex, reg, "A=Eval('2 ** 10')\nB=Eval('{A} > 1000 and len([1, 2]) == 2')\nRESULT=B"
    )
    assert outcome.values["RESULT"] is True
    outcome, _ = run(ex, reg, "A=Eval('9 ** 9 ** 9')")
    assert outcome.errors["A"].code == ErrorCode.SIZE_LIMIT and outcome.errors["A"].line == 1


def test_many_steps_with_little_overhead() -> None:
    ex, reg, _ = make()
    lines = ["A0=Eval('1')"] + [f"A{i}=Eval('{{A{i - 1}}} + 1')" for i in range(1, 500)]
    start = time.perf_counter()
    outcome, _ = run(ex, reg, "\n".join(lines))
    assert outcome.values["A499"] == 500
    assert time.perf_counter() - start < 5.0


@pytest.mark.parametrize("workers", [1, 3])
def test_results_do_not_depend_on_worker_count(workers: int) -> None:
    ex, reg, _ = make(workers=workers)
    outcome, _ = run(
        ex, reg, "A=Wait(seconds=0.01, tag='a')\nB=Wait(seconds=0.01, tag='b')\nC=Join(a=B, b=A)"
    )
    assert outcome.values["C"] == "ba"
