"""Gathering: concurrent callers' items run as shared batches, one caller leading.

Both batching layers use :class:`Gatherer`: the per-tool queue (:mod:`tools.batching`,
tool calls) and the per-model lanes (:mod:`tools.backends.coalesce`, prepared rows).
A caller queues an :class:`Entry` and waits while another caller leads. With nobody
leading it leads: it waits for company as :class:`~tools.waiting.AdaptiveWait` says (a lone
call to an idle queue never waits), takes queued entries first come first served up to
``max_batch`` items (never splitting one), runs the layer's ``run(leader, batch)`` (one
result per entry; what a failed batch means is the layer's business) and hands each entry
its own; it leads again until its own entry is done. Entries arriving meanwhile make the
next batch. A ``run`` that raises is the leader's thread leaving: the exception goes on
there and the other members go back to the front of the queue for the next leader.

``cancelled(entry)`` (optional) is an entry's result once its caller is cancelled, else
None: a cancelled leader is given up as soon as a waiting caller notices (they look every
``POLL_S``), its members queue again and a new leader runs them at once (a leader stuck in
native code blocks nobody); a caller cancelled while queued leaves the next batch with
that result.

Callers announced by :meth:`Gatherer.expect` (still preparing their items) make a leader
wait for them, up to ``max_wait``, however rare calls are; a lone call still never waits,
nor does a leader with no other caller in flight (:class:`~tools.waiting.Callers`: a
program calling a model again and again on its own pays no wait for company that cannot
come).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from itertools import accumulate, pairwise
from typing import Any

from .waiting import CALLERS, AdaptiveWait, Callers, parked

POLL_S = 0.05  # how often waiting callers look for a cancelled leader


@dataclass(eq=False)
class Entry:
    """One caller's items in a queue, and (once ``done``) its result."""

    items: list[Any]
    owner: Any = None  # the layer's per-caller state (a ToolContext for tool calls)
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    batch_size: int = 0  # items in the batch that produced ``result``


@dataclass
class GatherStats:
    batches: int = 0  # batches run
    calls: int = 0  # entries served
    largest: int = 0  # most entries in one batch
    waits: int = 0  # batches whose leader waited for company first


Run = Callable[[Entry, list[Entry]], list[Any]]


class Gatherer:
    """One queue of callers' entries (thread-safe)."""

    def __init__(
        self, cancelled: Callable[[Entry], Any] | None = None, callers: Callers = CALLERS
    ) -> None:
        """``cancelled``: see the module docstring; ``callers``: who is in flight (the
        process's :data:`~tools.waiting.CALLERS` by default)."""
        self.callers = callers
        self.cond = threading.Condition()
        self.pending: list[Entry] = []
        self.leader: Entry | None = None  # whose thread runs (or gathers) the current batch
        self.inflight: list[Entry] = []  # the current batch
        self.wait = AdaptiveWait()  # the arrivals' history: how long a leader waits
        self.coming = 0  # callers preparing entries they said they will queue (expect)
        self.stats = GatherStats()
        self._cancelled = cancelled or (lambda entry: None)
        self._poll = POLL_S if cancelled is not None else None

    def expect(self, n: int) -> None:
        """``n`` more callers (fewer, when negative) are preparing entries to queue here."""
        with self.cond:
            self.coming += n
            self.cond.notify_all()

    def join(
        self,
        entry: Entry,
        run: Run,
        *,
        max_batch: int,
        max_wait: float,
        fixed: bool = False,
        expected: bool = False,
    ) -> Any:
        """Queue ``entry`` (``expected``: announced by :meth:`expect`), lead batches while
        nobody else does, and return its result."""
        with self.cond:
            self.coming -= expected
            self.wait.arrived()
            self.pending.append(entry)
            self.cond.notify_all()
        try:
            while True:
                with self.cond, ExitStack() as parking:
                    waiting = False
                    while not entry.done.is_set() and self._led():
                        if not waiting:  # parked from the first wait on (waiting.parked)
                            parking.enter_context(parked())
                            waiting = True
                        self.cond.wait(self._poll)
                    if entry.done.is_set():
                        return entry.result
                    self.leader = entry
                try:
                    self._lead(entry, run, max_batch, max_wait, fixed)
                finally:
                    with self.cond:
                        if self.leader is entry:
                            self.leader, self.inflight = None, []
                        self.cond.notify_all()
        finally:
            with self.cond:
                if entry in self.pending:  # left while queued
                    self.pending.remove(entry)

    def _led(self) -> bool:
        """Whether a live leader holds the queue; a cancelled one is given up (under cond)."""
        leader = self.leader
        if leader is None:
            return False
        if self._cancelled(leader) is None:
            return True
        self._give_up(leader, self.inflight, None)
        self.leader, self.inflight = None, []
        return False

    def _give_up(self, leader: Entry, batch: list[Entry], exc: BaseException | None) -> None:
        """The leader's entry and cancelled members get their results; the batch's other
        members queue again at the front (under cond)."""
        again = [e for e in batch if e is not leader and self._cancelled(e) is None]
        for e in batch:
            if e not in again:
                gone = self._cancelled(e)
                self._settle(e, exc if gone is None else gone, len(batch))
        self.pending[:0] = [e for e in again if not e.done.is_set() and e not in self.pending]

    def _lead(self, leader: Entry, run: Run, max_batch: int, max_wait: float, fixed: bool) -> None:
        """Wait as the policy says, take one batch off the queue and run it."""
        started = time.monotonic()
        waited = False
        with self.cond, ExitStack() as parking:
            while sum(len(e.items) for e in self.pending) < max_batch:
                fixed_now = fixed or self.coming > 0
                alone = not fixed_now and self.callers.alone()
                left = self.wait.until(started, max_wait, fixed=fixed_now, alone=alone)
                if left <= 0 or self._cancelled(leader) is not None:
                    break
                if not waited:  # waiting for company: parked (its company may need a worker)
                    parking.enter_context(parked())
                waited = True
                self.cond.wait(timeout=left)
            if self.leader is not leader:  # given up while waiting: another leads now
                return
            batch: list[Entry] = []
            size = 0
            for e in list(self.pending):
                if batch and size + len(e.items) > max_batch:
                    break
                self.pending.remove(e)
                if (gone := self._cancelled(e)) is not None:
                    self._settle(e, gone, 0)
                    continue
                batch.append(e)
                size += len(e.items)
            if not batch:
                return
            self.inflight = batch
            stats = self.stats
            stats.batches, stats.calls = stats.batches + 1, stats.calls + len(batch)
            stats.waits += waited
            stats.largest = max(stats.largest, len(batch))
        try:
            results = run(leader, batch)
        except BaseException as exc:
            with self.cond:
                if self.leader is leader:  # else it was given up already
                    self._give_up(leader, batch, exc)
            raise
        with self.cond:
            for e, result in zip(batch, results, strict=True):
                self._settle(e, result, size)
                if e in self.pending:  # queued again when the batch was given up
                    self.pending.remove(e)

    @staticmethod
    def _settle(entry: Entry, result: Any, batch_size: int) -> None:
        """Hand an entry its result; the first answer wins (under cond)."""
        if not entry.done.is_set():
            entry.result, entry.batch_size = result, batch_size
            entry.done.set()


def slices(flat: Any, batch: list[Entry]) -> list[Any]:
    """Each entry's slice of ``flat``, one output per item of the batch, in order."""
    bounds = accumulate((len(e.items) for e in batch), initial=0)
    return [flat[a:b] for a, b in pairwise(bounds)]
