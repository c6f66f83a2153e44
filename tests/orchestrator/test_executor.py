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
from tests.support.faults import RELEASE, stuck
from tools import Registry, Tool, ToolContext, tool
from tools.batching import Batcher
from tools.builtin.logic import count, eval_, result
from tools.errors import ToolDegraded, ToolErrorCode, ToolOutputError
from tools.types import Image
from tools.waiting import CALLERS


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
    outcome, trace = run(
        ex, reg, "A=Wait(seconds=0.4, tag='a')\nB=Wait(seconds=0.4, tag='b')\nC=Join(a=A, b=B)"
    )
    assert outcome.values["C"] == "ab"
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
    outcome, _ = run(ex, reg, "A=Spin(x=1)\nB=Wait(seconds=0.05, tag='b')\nC=Join(a=B, b='c')")
    assert outcome.errors["A"].code == ErrorCode.TIME_LIMIT
    assert outcome.values["C"] == "bc"
    # the abandoned worker was interrupted and replaced: the pool still runs new work
    outcome2, _ = run(ex, reg, "X=Wait(seconds=0.01, tag='x')")
    assert outcome2.values["X"] == "x"
    assert ex.pool.live_workers == ex.pool.max_workers


def test_program_time_limit() -> None:
    ex, reg, _ = make(step_limit=None, program_limit=0.3)
    outcome, _ = run(ex, reg, "A=Wait(seconds=5, tag='a')\nB=Join(a=A, b='b')")
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


def test_a_500_step_chain_runs_in_order() -> None:
    ex, reg, _ = make()  # its overhead per step is measured by bench/overhead.py
    lines = ["A0=Eval('1')"] + [f"A{i}=Eval('{{A{i - 1}}} + 1')" for i in range(1, 500)]
    outcome, trace = run(ex, reg, "\n".join(lines))
    assert outcome.values["A499"] == 500
    starts = [trace.step(f"A{i}").start for i in range(500)]
    assert all(s is not None for s in starts) and starts == sorted(starts)


def test_each_expression_is_compiled_once_per_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """The checker's compiled expression travels with the step: the executor does not parse
    it again, even when the compiled-expression cache has no room for it."""
    from sandbox import expressions

    compiled: list[str] = []
    real = expressions._compile

    def spy(source: str, visprog: bool) -> Any:
        compiled.append(source)
        return real(source, visprog)

    monkeypatch.setattr(expressions, "_compile", spy)
    monkeypatch.setattr(expressions, "_compile_cached", spy)  # as if the cache were full
    ex, reg, _ = make()
    lines = ["Q0=Eval('7')"] + [f"Q{i}=Eval('{{Q{i - 1}}} * 3 - {i}')" for i in range(1, 6)]
    outcome, _ = run(ex, reg, "\n".join(lines))
    value = 7
    for i in range(1, 6):
        value = value * 3 - i
    assert outcome.values["Q5"] == value
    assert sorted(compiled) == sorted(line.split("'")[1] for line in lines)


@pytest.mark.parametrize("workers", [1, 3])
def test_results_do_not_depend_on_worker_count(workers: int) -> None:
    ex, reg, _ = make(workers=workers)
    outcome, _ = run(
        ex, reg, "A=Wait(seconds=0.01, tag='a')\nB=Wait(seconds=0.01, tag='b')\nC=Join(a=B, b=A)"
    )
    assert outcome.values["C"] == "ba"


# --- bounded threads, degraded tools, inline limits, output types ---------------------------


def test_time_outs_never_hold_more_than_a_fixed_number_of_threads() -> None:
    """Wave after wave of calls stuck in native code: the pool holds at most max_workers +
    max_stuck threads, the stuck tool is refused at once, and other tools keep running."""
    RELEASE.clear()
    upper = Upper()
    reg = Registry([stuck, wait, join, upper, result])
    pool = WorkerPool(4)
    ex = Executor(reg, options=ExecOptions(step_time_limit=0.2), pool=pool)
    before = threading.active_count()
    try:
        for _ in range(30):
            text = "\n".join(f"S{i}=Stuck(x={i})" for i in range(10))
            outcome, _ = run(ex, reg, text + "\nW=Wait(seconds=0, tag='w')\nT=Upper(text='t')")
            assert outcome.values["W"] == "w" and outcome.values["T"] == "T"
            assert {e.code for e in outcome.errors.values()} <= {
                ErrorCode.TIME_LIMIT,
                ToolErrorCode.DEGRADED,
            }
            assert pool.threads <= pool.max_workers + pool.max_stuck
            assert threading.active_count() <= before + pool.max_workers + pool.max_stuck + 1
        outcome, _ = run(ex, reg, "S=Stuck(x=1)")
        assert isinstance(outcome.errors["S"], ToolDegraded)
        assert "Stuck is degraded" in str(outcome.errors["S"])
    finally:
        RELEASE.set()
    deadline = time.monotonic() + 30
    while pool.stuck("Stuck") and time.monotonic() < deadline:
        time.sleep(0.01)
    outcome, _ = run(ex, reg, "S=Stuck(x=7)")
    assert outcome.values["S"] == 7  # recovered when its calls returned
    RELEASE.clear()


@tool(inline=True)
def busy_inline(seconds: float) -> str:
    """An inline plug-in that loops in Python for a while.

    Args:
        seconds: how long
    """
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return "done"


def test_inline_tools_run_under_the_step_limit() -> None:
    reg = Registry([busy_inline, eval_])
    ex = Executor(reg, options=ExecOptions(step_time_limit=0.3), pool=WorkerPool(2))
    outcome, _ = run(ex, reg, "A=BusyInline(seconds=8)\nB=Eval('1 + 1')")
    assert outcome.errors["A"].code == ErrorCode.TIME_LIMIT
    assert "BusyInline" in outcome.errors["A"].message and outcome.errors["A"].line == 1
    assert outcome.values["B"] == 2
    outcome, _ = run(ex, reg, "A=BusyInline(seconds=0)")  # and nothing is left pending
    assert outcome.values["A"] == "done"


class Box42(Tool):
    """Declared to return an Image; returns whatever it was told to."""

    name = "Box42"

    def run(self, what: str) -> Image:
        """Args:
        what: '42', 'none', 'deep' or 'bad-str'
        """
        values: dict[str, Any] = {"42": 42, "none": None, "deep": _deep(5000)}
        return values[what]  # type: ignore[return-value]


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text for you")

    __repr__ = __str__


@tool
def anything(what: str) -> Any:
    """Returns odd values.

    Args:
        what: 'deep' or 'unprintable'
    """
    return _deep(5000) if what == "deep" else Unprintable()


def _deep(n: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(n):
        value = [value]
    return value


@pytest.mark.parametrize("what", ["42", "none"])
def test_a_plugin_output_of_the_wrong_type_fails_its_step(what: str) -> None:
    reg = Registry([Box42(), eval_])
    ex = Executor(reg, pool=WorkerPool(2))
    outcome, trace = run(ex, reg, f"A=Box42(what='{what}')\nB=Eval('2')")
    error = outcome.errors["A"]
    assert isinstance(error, ToolOutputError) and error.code == ErrorCode.WRONG_TYPE
    assert "Box42" in error.message and "declared to return Image" in error.message
    assert trace.step("A").status == "error" and outcome.values["B"] == 2


def test_odd_plugin_values_become_precise_typed_errors() -> None:
    reg = Registry([anything])
    ex = Executor(reg, pool=WorkerPool(2))
    outcome, _ = run(ex, reg, "A=Anything(what='deep')\nB=Anything(what='unprintable')")
    deep, odd = outcome.errors["A"], outcome.errors["B"]
    assert deep.code == ErrorCode.DEPTH_LIMIT and "nested more than 100 deep" in deep.message
    assert isinstance(odd, ToolOutputError) and "Unprintable" in odd.message
    assert "no text for you" in odd.message


def test_a_plugin_exception_whose_message_fails_is_still_reported() -> None:
    @tool
    def rude(x: int) -> int:
        """Raises an exception that cannot be printed.

        Args:
            x: ignored
        """
        raise BadMessage()

    reg = Registry([rude])
    outcome, _ = run(Executor(reg, pool=WorkerPool(1)), reg, "A=Rude(x=1)")
    assert outcome.errors["A"].code == ToolErrorCode.TOOL_ERROR
    assert "Rude failed: BadMessage" in outcome.errors["A"].message


class BadMessage(Exception):
    def __str__(self) -> str:
        raise ValueError("nope")


def test_when_stuck_calls_hold_every_worker_other_tools_fail_at_once() -> None:
    RELEASE.clear()
    reg = Registry([stuck, wait])
    pool = WorkerPool(1, max_stuck=0)
    ex = Executor(reg, options=ExecOptions(step_time_limit=0.2), pool=pool)
    try:
        outcome, _ = run(ex, reg, "S=Stuck(x=1)")
        assert outcome.errors["S"].code == ErrorCode.TIME_LIMIT
        outcome, _ = run(ex, reg, "W=Wait(seconds=0, tag='w')")  # refused, not left waiting
        error = outcome.errors["W"]
        assert isinstance(error, ToolDegraded) and "every worker is held" in error.message
        assert "Stuck" in error.message
    finally:
        RELEASE.set()
    deadline = time.monotonic() + 30
    while pool.exhausted() and time.monotonic() < deadline:
        time.sleep(0.01)
    outcome, _ = run(ex, reg, "W=Wait(seconds=0, tag='w')")
    assert outcome.values["W"] == "w"
    RELEASE.clear()


def test_steps_submitted_after_the_pool_shut_down_fail_with_a_typed_error() -> None:
    ex, reg, _ = make()
    ex.pool.shutdown()
    outcome, _ = run(ex, reg, "A=Wait(seconds=0, tag='a')\nB=Eval('1 + 1')")
    assert outcome.errors["A"].code == ErrorCode.CANCELLED
    assert "shut down" in outcome.errors["A"].message and outcome.values["B"] == 2


def test_the_step_limit_still_stops_an_inline_step_after_many_fast_ones() -> None:
    """Inline steps share one watchdog slot per run: the 201st step still gets its limit."""
    reg = Registry([busy_inline, eval_])
    ex = Executor(reg, options=ExecOptions(step_time_limit=0.3), pool=WorkerPool(2))
    fast = "\n".join(f"A{i}=Eval('{i} + 1')" for i in range(200))
    outcome, _ = run(ex, reg, f"{fast}\nB=BusyInline(seconds=30)\nC=Eval('{{A199}} + 1')")
    assert outcome.errors["B"].code == ErrorCode.TIME_LIMIT and outcome.errors["B"].line == 201
    assert outcome.values["A199"] == 200 and outcome.values["C"] == 201
    assert set(outcome.errors) == {"B"}


ALONE: list[tuple[str, bool]] = []
NOTED = threading.Event()


@tool
def alone(tag: str) -> str:
    """Note whether this call was the only caller in flight (tools.waiting.CALLERS).

    Args:
        tag: what to return
    """
    ALONE.append((tag, CALLERS.alone()))
    NOTED.set()
    return tag


@tool
def after_noted(tag: str) -> str:
    """Return the tag once an Alone call has noted what it saw (a caller in flight till then).

    Args:
        tag: what to return
    """
    NOTED.wait(timeout=60)
    return tag


def test_each_group_is_a_caller_in_flight_while_it_runs() -> None:
    """A chain's calls each run alone (a batching leader need not wait for company); two
    groups made ready together are both in flight before either starts; none is left
    open after the run."""
    reg = Registry([alone, after_noted, join])
    ex = Executor(reg, pool=WorkerPool(4))
    ALONE.clear()
    text = "A=Alone(tag='a')\nB=Alone(tag=A)\nC=Join(a=B, b='c')\nD=Alone(tag=C)"
    outcome = ex.run(check(parse(text), reg, inputs=[]), {}, Trace(program=text))
    assert outcome.values["D"] == "ac" and ALONE == [("a", True), ("a", True), ("ac", True)]
    ALONE.clear()
    NOTED.clear()
    text = "A=Alone(tag='a')\nB=AfterNoted(tag='b')\nC=Alone(tag=B)"
    ex.run(check(parse(text), reg, inputs=[]), {}, Trace(program=text))
    assert ALONE[0] == ("a", False) and ALONE[1] == ("b", True)
    assert CALLERS.open == 0


def test_programs_waiting_in_a_batch_queue_do_not_cap_the_batch_at_the_worker_count() -> None:
    """Eight programs at once on two workers: the callers parked in Upper's queue (the
    leader waiting for company, the members for the leader's batch) lend their workers, so
    all eight calls make one batch; with the parked callers holding both workers, no batch
    could hold more than two."""
    upper = Upper()
    upper.max_batch = 8  # the leader goes once all eight are queued
    reg = Registry([upper])
    wait_long = {"Upper": {"wait": "fixed", "max_wait_ms": 20_000}}
    pool = WorkerPool(2)
    ex = Executor(reg, context=lambda: ToolContext(options=wait_long), pool=pool, batcher=Batcher())
    outcomes: list[Any] = [None] * 8

    def one(i: int) -> None:
        text = f"A=Upper(text='p{i}')"
        outcomes[i] = ex.run(check(parse(text), reg, inputs=[]), {}, Trace(program=text))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [o.values["A"] for o in outcomes] == [f"P{i}" for i in range(8)]
    assert upper.batches == [8]
    assert pool.parked == 0  # every lent worker was given back
