"""The adaptive wait: no waiting for rare calls, bounded waiting while calls keep coming."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import pytest

from tools.waiting import QUIET_GAPS, AdaptiveWait, Callers, park_with, parked


def test_no_history_and_rare_calls_mean_no_wait() -> None:
    wait = AdaptiveWait()
    assert wait.until(0.0, 0.005, now=0.0) == 0.0  # nothing known: a lone call goes at once
    wait.arrived(0.0)
    wait.arrived(1.0)  # a second apart: rare
    assert not wait.frequent(0.005)
    assert wait.until(1.0, 0.005, now=1.0) == 0.0


def test_frequent_calls_wait_at_most_max_wait() -> None:
    wait = AdaptiveWait()
    for k in range(5):
        wait.arrived(k * 0.001)  # a call every millisecond
    assert wait.frequent(0.005)
    left = wait.until(0.004, 0.005, now=0.004)
    assert 0.0 < left <= 0.005
    assert left == pytest.approx(QUIET_GAPS * wait.gap)  # the quiet-spell limit comes first
    assert wait.until(0.004, 0.005, now=0.004 + 0.005) == 0.0  # past max_wait: go


def test_each_arrival_extends_the_wait_up_to_max_wait() -> None:
    wait = AdaptiveWait()
    for k in range(5):
        wait.arrived(k * 0.001)
    started = 0.004
    quiet_end = started + QUIET_GAPS * wait.gap
    wait.arrived(quiet_end - 0.0001)  # another call just before the quiet spell ended
    assert wait.until(started, 0.005, now=quiet_end) > 0.0
    assert wait.until(started, 0.005, now=started + 0.005) == 0.0


def test_fixed_wait_always_waits_max_wait() -> None:
    wait = AdaptiveWait()
    assert wait.until(10.0, 0.05, now=10.0, fixed=True) == pytest.approx(0.05)
    assert wait.until(10.0, 0.05, now=10.02, fixed=True) == pytest.approx(0.03)


def test_a_leader_alone_goes_at_once_unless_the_wait_is_fixed() -> None:
    wait = AdaptiveWait()
    for k in range(5):
        wait.arrived(k * 0.001)  # frequent: a leader with company would wait
    assert wait.until(0.004, 0.005, now=0.004) > 0.0
    assert wait.until(0.004, 0.005, now=0.004, alone=True) == 0.0
    assert wait.until(0.004, 0.005, now=0.004, fixed=True, alone=True) == pytest.approx(0.005)


def test_a_thread_is_alone_only_while_it_holds_every_open_ticket() -> None:
    callers = Callers()
    assert not callers.alone()  # runs no caller's work: nothing known about company
    mine = callers.ticket()
    with mine:
        assert callers.alone()
        other = callers.ticket()  # another group handed off, not started yet
        assert not callers.alone()
        other.close()
        other.close()  # closing twice counts once
        assert callers.alone() and callers.open == 1
        mine.close()  # given up (abandoned) while its body still runs
        assert not callers.alone()
    assert callers.open == 0


def test_tickets_of_other_threads_are_not_this_threads() -> None:
    callers = Callers()
    seen: list[bool] = []
    ticket = callers.ticket()

    def work() -> None:
        with ticket:
            seen.append(callers.alone())

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen == [True] and callers.open == 0
    with callers.ticket():
        other = callers.ticket()
        thread = threading.Thread(target=lambda: seen.append(callers.alone()))
        thread.start()
        thread.join()
        other.close()
    assert seen == [True, False]


def test_parked_enters_the_threads_own_hook_only() -> None:
    entered: list[str] = []

    @contextlib.contextmanager
    def hook() -> Iterator[None]:
        entered.append("in")
        yield
        entered.append("out")

    with parked():  # no hook registered on this thread: nothing happens
        pass
    park_with(hook)
    try:
        with parked():
            assert entered == ["in"]
        assert entered == ["in", "out"]
    finally:
        park_with(None)
    with parked():
        pass
    assert entered == ["in", "out"]
