"""Process isolation per tool (``tools: {Name: {isolate: process}}``): a call that hangs in
native code is killed at its time limit, the tool works again at once, and nothing else
waits for it."""

from __future__ import annotations

import os
from typing import Any

from orchestrator.executor import ExecOptions, Executor
from orchestrator.trace import Trace
from orchestrator.workers import WorkerPool
from sandbox import ErrorCode, check, parse
from tests.support.faults import exits, sleepy
from tools import Registry, ToolContext
from tools.builtin.logic import eval_
from tools.errors import ToolErrorCode

ISOLATED = {"Sleepy": {"isolate": "process"}}
# The step limit for calls that should finish: a fresh child (spawn, importing torch) takes
# 14 s to start on a loaded 2-core machine, and its start counts against the step's limit.
ROOMY = 300.0


def run(ex: Executor, reg: Registry, text: str) -> tuple[Any, Trace]:
    bound = check(parse(text), reg, inputs=[])
    trace = Trace(program=text)
    return ex.run(bound, {}, trace), trace


def test_a_hang_in_an_isolated_tool_is_killed_and_the_tool_recovers() -> None:
    reg = Registry([sleepy, eval_])
    ex = Executor(
        reg,
        context=lambda: ToolContext(options=ISOLATED),
        options=ExecOptions(step_time_limit=ROOMY),
        pool=WorkerPool(2),
    )
    try:
        out, trace = run(ex, reg, "P=Sleepy(seconds=0)\nE=Eval('1 + 1')")
        child = out.values["P"]
        assert child != os.getpid() and trace.step("P").meta["isolated"] == "process"
        ex.options = ExecOptions(step_time_limit=0.5)
        out, _ = run(ex, reg, "H=Sleepy(seconds=3600)\nE=Eval('1 + 1')")
        assert out.errors["H"].code == ErrorCode.TIME_LIMIT and out.values["E"] == 2
        ex.options = ExecOptions(step_time_limit=ROOMY)
        out, _ = run(ex, reg, "P=Sleepy(seconds=0)")  # not degraded: the hang was killed
        assert out.status["P"] == "ok" and out.values["P"] not in (child, os.getpid())
        assert ex.pool.stuck("Sleepy") == 0
    finally:
        ex.close()


def test_tools_defined_inside_functions_cannot_be_isolated() -> None:
    from tools import tool

    @tool
    def local(x: int) -> int:
        """A tool no child process can import.

        Args:
            x: any number
        """
        return x

    reg = Registry([local])
    ex = Executor(
        reg,
        context=lambda: ToolContext(options={"Local": {"isolate": "process"}}),
        pool=WorkerPool(1),
    )
    out, _ = run(ex, reg, "L=Local(x=1)")
    assert out.errors["L"].code == ToolErrorCode.TOOL_ERROR
    assert "cannot run in its own process" in str(out.errors["L"])


def test_a_crash_in_an_isolated_tool_fails_only_its_step() -> None:
    reg = Registry([exits, eval_])
    ex = Executor(
        reg,
        context=lambda: ToolContext(options={"Exits": {"isolate": "process"}}),
        pool=WorkerPool(2),
    )
    try:
        out, _ = run(ex, reg, "X=Exits(code=3)\nE=Eval('1 + 1')")
        assert out.values["E"] == 2
        assert out.errors["X"].code == ToolErrorCode.TOOL_ERROR
        assert "Exits's process died (exit code 3)" in str(out.errors["X"])
        out, _ = run(ex, reg, "X=Exits(code=0)")  # a fresh process serves the next call
        assert out.status["X"] == "ok" and out.values["X"] != os.getpid()
    finally:
        ex.close()
