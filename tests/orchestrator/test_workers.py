"""The watchdog's reusable slot: each body interrupted at its own deadline, none after; the
worker pool lending a worker for each one parked in a batch queue."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from orchestrator.workers import DeadlineExceeded, Watchdog, WorkerPool
from tools.waiting import parked

HANG_GUARD = 30.0  # seconds a body loops before the test gives up (the limit never fired)


def _spin(seconds: float) -> str:
    """Loop in Python for ``seconds`` (interrupted earlier by the watchdog, if it fires)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return "finished"


def test_a_slot_runs_many_bodies_and_interrupts_the_one_that_overruns() -> None:
    wd = Watchdog()
    with wd.slot() as slot:
        for i in range(300):
            with slot.until(time.monotonic() + 5):
                assert i >= 0
        with pytest.raises(DeadlineExceeded), slot.until(time.monotonic() + 0.2):
            _spin(HANG_GUARD)
        with slot.until(time.monotonic() + 5):  # the next body is not interrupted
            assert _spin(0.05) == "finished"
    assert _spin(0.3) == "finished"  # nothing fires once the slot is given back


def test_a_deadline_earlier_than_the_last_one_wakes_the_watchdog() -> None:
    wd = Watchdog()
    with wd.slot() as slot:
        with slot.until(time.monotonic() + 600):  # the watchdog now sleeps ten minutes
            pass
        with pytest.raises(DeadlineExceeded), slot.until(time.monotonic() + 0.2):
            _spin(HANG_GUARD)


def test_a_deadline_after_one_that_passed_while_idle_still_fires() -> None:
    wd = Watchdog()
    other = wd.guard(time.monotonic() + 600)  # another thread's far deadline: a late look
    with other, wd.slot() as slot:
        with slot.until(time.monotonic() + 0.1):
            pass
        assert _spin(0.3) == "finished"  # its deadline passes while no body runs
        with pytest.raises(DeadlineExceeded), slot.until(time.monotonic() + 0.2):
            _spin(HANG_GUARD)


def test_no_deadline_means_no_guard() -> None:
    wd = Watchdog()
    with wd.slot() as slot, slot.until(None):
        assert _spin(0.05) == "finished"
    assert not wd._slots


def test_an_idle_slot_does_not_stop_the_watchdog_guarding_others() -> None:
    """A slot registered before any body runs, while the watchdog serves another guard."""
    wd = Watchdog()
    with wd.slot() as slot:
        with pytest.raises(DeadlineExceeded), wd.guard(time.monotonic() + 0.2):
            _spin(HANG_GUARD)
        first = wd._thread
        with pytest.raises(DeadlineExceeded), wd.guard(time.monotonic() + 0.2):
            _spin(HANG_GUARD)
        assert wd._thread is first and first is not None and first.is_alive()  # never died
        with pytest.raises(DeadlineExceeded), slot.until(time.monotonic() + 0.2):
            _spin(HANG_GUARD)


def test_short_runs_back_to_back_do_not_wake_the_watchdog() -> None:
    """A run shorter than the watchdog's reaction gives its slot back before the watchdog
    looks, so the watchdog often looks while no deadline is pending. The next run's
    deadline (minutes ahead) must not wake it then: each wake-up is a hand-off of the
    interpreter lock. Counted, not timed: after an idle look, fifty runs wake it never."""
    wd = Watchdog()
    wd._start()
    while wd.looks < 1:  # it looked and found no deadline
        time.sleep(0.001)
    for _ in range(50):
        with wd.slot() as slot:
            for _ in range(3):
                with slot.until(time.monotonic() + 300):
                    pass
    assert wd.wakes == 0
    with wd.slot() as slot, pytest.raises(DeadlineExceeded), slot.until(time.monotonic() + 0.2):
        _spin(HANG_GUARD)  # an earlier deadline still wakes it, and fires
    assert wd.wakes == 1


def _parked_jobs(pool: WorkerPool, n: int) -> tuple[list[int], threading.Event]:
    """Submit ``n`` jobs that each wait parked until released; the live threads seen."""
    running: list[int] = []
    release = threading.Event()
    lock = threading.Lock()

    def job() -> None:
        with parked():
            with lock:
                running.append(threading.get_ident())
            release.wait(timeout=HANG_GUARD)

    for _ in range(n):
        pool.submit(job)
    return running, release


def _settle(check: Callable[[], bool]) -> bool:
    end = time.monotonic() + HANG_GUARD
    while not check() and time.monotonic() < end:
        time.sleep(0.01)
    return check()


def test_a_parked_worker_lends_its_place_up_to_max_parked() -> None:
    pool = WorkerPool(2, max_parked=3)
    running, release = _parked_jobs(pool, 8)
    assert _settle(lambda: len(running) == 5)  # 2 workers + 3 lent while they wait
    time.sleep(0.2)
    assert len(running) == 5 and pool.parked == 5
    release.set()
    assert _settle(lambda: len(running) == 8)  # the rest ran once the first ones returned
    done = threading.Event()
    for _ in range(8):  # jobs after the waits: the lent workers retire as they finish one
        pool.submit(done.set)
    assert _settle(lambda: pool.parked == 0 and pool.live_workers == 2)
    pool.shutdown()


def test_a_worker_that_is_not_parked_lends_nothing() -> None:
    pool = WorkerPool(2)
    gate, started = threading.Event(), []

    def busy() -> None:
        started.append(1)
        gate.wait(timeout=HANG_GUARD)

    for _ in range(4):
        pool.submit(busy)
    assert _settle(lambda: len(started) == 2)
    time.sleep(0.2)
    assert len(started) == 2 and pool.live_workers == 2
    gate.set()
    assert _settle(lambda: len(started) == 4)
    pool.shutdown()


def test_workers_lent_while_others_waited_retire_when_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("orchestrator.workers.IDLE_LOOK_S", 0.05)
    pool = WorkerPool(2, max_parked=4)
    running, release = _parked_jobs(pool, 6)
    assert _settle(lambda: len(running) == 6)
    assert pool.live_workers == 6
    release.set()  # nothing else is submitted: the four lent workers retire idle
    assert _settle(lambda: pool.live_workers == 2)
    pool.shutdown()
