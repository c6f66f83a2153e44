from __future__ import annotations

import gc
import threading
import time
from pathlib import Path

import pytest

from orchestrator import Config, Orchestrator, heap
from tools import Registry, tool
from tools.builtin.logic import eval_


def test_the_heap_is_frozen_once_per_process_when_configured(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(heap, "_frozen", False)
    monkeypatch.setattr(heap.gc, "collect", lambda *a: calls.append("collect") or 0)
    monkeypatch.setattr(heap.gc, "freeze", lambda: calls.append("freeze"))

    def build(freeze: bool) -> Orchestrator:
        cfg = Config(
            models={"profile": "offline", "cache_dir": tmp_path},
            plugins=False,
            executor={"gc_freeze": freeze},
        )
        return Orchestrator(cfg, registry=Registry([eval_]))

    build(False).close()
    assert calls == []
    build(True).close()
    assert calls == ["collect", "freeze"]  # garbage collected first, then the rest frozen
    build(True).close()
    assert calls == ["collect", "freeze"]


def test_frozen_heap_leaves_runs_correct(offline: Orchestrator) -> None:
    assert gc.get_freeze_count() > 0  # the fixture's orchestrator froze the import-time heap
    result = offline.execute("A=Eval('2 + 3')\nB=Eval('{A} * {A}')")
    assert result.ok and result.output == 25


# --- the collector paused while a scheduler runs steps ------------------------------------

HANG_GUARD = 30.0  # seconds a tool waits for the collector before giving up


@tool(inline=True)
def collecting() -> bool:
    """Whether the cyclic collector runs (an inline step: in the scheduler's thread)."""
    return gc.isenabled()


@tool
def collecting_while_waited_for() -> bool:
    """Whether the collector runs again once the scheduler waits for this call (a worker)."""
    end = time.monotonic() + HANG_GUARD
    while not gc.isenabled() and time.monotonic() < end:
        time.sleep(0.001)
    return gc.isenabled()


def _orchestrator(tmp_path: Path, pause: bool) -> Orchestrator:
    cfg = Config(
        models={"profile": "offline", "cache_dir": tmp_path},
        plugins=False,
        executor={"gc_freeze": False, "gc_pause": pause},
    )
    return Orchestrator(cfg, registry=Registry([eval_, collecting, collecting_while_waited_for]))


def test_the_collector_pauses_for_inline_steps_and_runs_while_workers_work(tmp_path) -> None:
    orch = _orchestrator(tmp_path, pause=True)
    try:
        assert gc.isenabled()
        result = orch.execute("A=Collecting()\nB=CollectingWhileWaitedFor()\nC=Collecting()")
        assert result.ok, result.error
        assert result.values["A"] is False and result.values["C"] is False  # paused
        assert result.values["B"] is True  # the scheduler waited: the collector ran
        assert gc.isenabled()  # and runs again after the run
        failed = orch.execute("A=Collecting()\nB=Eval('1 / 0')")
        assert failed.error is not None and gc.isenabled()  # after a failed run too
        gc.disable()  # a caller who turned it off keeps it off
        try:
            assert orch.execute("A=Collecting()").ok
            assert not gc.isenabled()
        finally:
            gc.enable()
    finally:
        orch.close()


EVENTS: list[str] = []


@tool(inline=True)
def marked() -> bool:
    """Note that the run reached this step."""
    EVENTS.append("step")
    return True


def _note_pass(phase: str, info: dict) -> None:
    if phase == "start":
        EVENTS.append(f"gc{info['generation']}")


def test_a_long_program_runs_without_a_collector_pass(tmp_path) -> None:
    """Parsing, checking, building the records and running 2,000 inline steps is one pause:
    no pass walks the run's objects while it works (the gaps between pauses and the
    building of the records ran dozens, full ones among them). Counted: the passes that
    start before the program's last step."""
    cfg = Config(models={"profile": "offline", "cache_dir": tmp_path}, plugins=False,
                 executor={"gc_freeze": False, "gc_pause": True})  # fmt: skip
    orch = Orchestrator(cfg, registry=Registry([eval_, marked]))
    text = "\n".join(f"A{i}=Eval('{i} + 1')" for i in range(2_000)) + "\nM=Marked()"
    EVENTS.clear()
    gc.collect()
    gc.callbacks.append(_note_pass)
    try:
        result = orch.execute(text)
    finally:
        gc.callbacks.remove(_note_pass)
        orch.close()
    assert result.ok and result.values["A1999"] == 2000
    assert EVENTS.index("step") == 0, EVENTS[:10]  # no pass before the last step ran


def test_a_python_programs_own_code_runs_with_the_collector_on(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the orchestrator's work is paused: the interpreter of a Python program (which
    may loop for minutes making cyclic garbage) runs with the collector on."""
    from orchestrator import forms

    seen: list[bool] = []

    def run_python(*args, **kwargs):
        seen.append(gc.isenabled())
        return 1, {}, {}

    monkeypatch.setattr(forms, "run_python", run_python)
    orch = _orchestrator(tmp_path, pause=True)
    try:
        result = orch.execute("def execute_command():\n    return 1\n", form="python")
    finally:
        orch.close()
    assert seen == [True] and result.output == 1


def test_the_pause_is_configured(tmp_path) -> None:
    orch = _orchestrator(tmp_path, pause=False)
    try:
        assert orch.execute("A=Collecting()").values["A"] is True
    finally:
        orch.close()


def test_pauses_from_two_threads_nest() -> None:
    assert gc.isenabled()
    first, second = heap.collector_paused(), heap.collector_paused()
    first.__enter__()
    entered = threading.Event()
    release = threading.Event()

    def other() -> None:
        with second:
            entered.set()
            release.wait(HANG_GUARD)

    thread = threading.Thread(target=other)
    thread.start()
    try:
        entered.wait(HANG_GUARD)
        with heap.collector_running():
            assert not gc.isenabled()  # lifting one's own pause lifts only that one
        first.__exit__(None, None, None)
        assert not gc.isenabled()  # the other thread's pause still holds
    finally:
        release.set()
        thread.join()
    assert gc.isenabled()


def test_running_lifts_every_pause_the_thread_holds() -> None:
    """An outer pause (a whole execute) and an inner one (the executor's): waiting for
    workers lifts both, and both hold again afterwards."""
    assert gc.isenabled()
    with heap.collector_paused(), heap.collector_paused():
        assert not gc.isenabled()
        with heap.collector_running():
            assert gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    with heap.collector_running():  # no pause held: nothing to lift, nothing broken
        assert gc.isenabled()
    assert gc.isenabled()


@pytest.fixture
def clocked(monkeypatch: pytest.MonkeyPatch) -> tuple[list[float], list[int]]:
    """The pause's clock (set by hand) and the generations collected, none really run."""
    clock = [100.0]
    passes: list[int] = []
    monkeypatch.setattr(heap, "_overdue_passes", 0)
    monkeypatch.setattr(heap.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(heap.gc, "collect", lambda generation=2: passes.append(generation) or 0)
    return clock, passes


def test_overlapping_pauses_still_let_a_young_pass_run_now_and_then(clocked) -> None:
    clock, passes = clocked
    with heap.collector_paused():
        with heap.collector_paused():  # another program's pause, within the limit
            pass
        assert passes == []
        clock[0] += heap.MAX_PAUSE_SECONDS + 0.5
        with heap.collector_paused():  # the collector has been off too long: one pass
            pass
        with heap.collector_paused():  # and the clock starts again
            pass
        assert passes == [1]
    assert gc.isenabled()


def test_overdue_passes_include_a_full_one_as_the_collectors_schedule_would(
    clocked, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock, passes = clocked
    monkeypatch.setattr(heap.gc, "get_threshold", lambda: (700, 10, 3))
    with heap.collector_paused():  # a service never without a pause
        for _ in range(7):
            clock[0] += heap.MAX_PAUSE_SECONDS + 0.5
            with heap.collector_paused():
                pass
    assert passes == [1, 1, 2, 1, 1, 2, 1]
    assert gc.isenabled()
