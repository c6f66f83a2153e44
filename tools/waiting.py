"""How long a batch's leader waits for company: not at all when calls are rare.

A leader that always waited ``max_wait`` would make every lone call that much slower.
:class:`AdaptiveWait` watches the gaps between arrivals (an exponentially weighted mean):
when they are longer than ``max_wait`` — one program calling now and then — the leader
runs at once; when they are shorter — many programs calling together — it waits for more
calls, but only while they keep coming (a quiet spell of twice the usual gap ends the
wait), never past ``max_wait``, and not at all once ``max_batch`` items are queued. Calls
that arrive while a batch is in flight queue anyway and make the next batch; that is
where most batches fill under load, with no timer at all.

``until(..., fixed=True)`` is the plain policy: always wait ``max_wait`` (unless the batch
is full).

A caller's own arrivals say nothing about company: a program calling a model six times one
after another arrives often, but nobody can join it. :class:`Callers` counts the process's
callers in flight (the executor opens a :class:`Ticket` for each group of steps it hands
to its workers, held until that group's work ends); a leader whose thread holds every
open ticket is alone (``until(..., alone=True)``) and goes at once, however often calls
arrived. Callers the executor does not run (a backend called from the user's own threads)
hold no ticket and keep the adaptive policy; callers announced with ``Gatherer.expect``
are waited for either way.

A thread waiting in a queue — a member while another caller's batch runs, a leader while it
waits for company — does no work, but a pool of worker threads would count it as busy: with
4 workers, 16 programs at once could never make a batch of more than 4, and a leader waiting
for company could hold the very workers its company needs. :func:`parked` marks such a wait;
a pool that lends threads (the executor's, :meth:`orchestrator.workers.WorkerPool`) registers
a hook for its workers with :func:`park_with` and runs another worker meanwhile. Threads
without a hook (a user's own) wait as before.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

DEFAULT_MAX_WAIT_MS = 5.0  # the longest a batch leader waits for company, by default
SMOOTHING = 0.3  # weight of the newest gap in the mean
QUIET_GAPS = 2.0  # a wait ends after this many mean gaps without an arrival


@dataclass
class AdaptiveWait:
    """The arrival history of one queue and the wait it implies (thread-safe)."""

    gap: float | None = None  # mean seconds between arrivals (None: fewer than two yet)
    last: float | None = None  # when the latest call arrived (time.monotonic())
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def arrived(self, now: float | None = None) -> None:
        """Note one arrival."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if self.last is not None:
                step = max(0.0, now - self.last)
                old = step if self.gap is None else self.gap
                self.gap = (1 - SMOOTHING) * old + SMOOTHING * step
            self.last = now

    def frequent(self, max_wait: float) -> bool:
        """Whether calls arrive often enough that waiting up to ``max_wait`` should help."""
        with self._lock:
            return self.gap is not None and self.gap < max_wait

    def until(
        self,
        started: float,
        max_wait: float,
        now: float | None = None,
        *,
        fixed: bool = False,
        alone: bool = False,
    ) -> float:
        """Seconds a leader that began waiting at ``started`` should still wait (0: go);
        ``alone``: no other caller is in flight (see :class:`Callers`), so none is waited
        for unless ``fixed``. Call it again after every arrival: the quiet-spell limit
        moves with them."""
        now = time.monotonic() if now is None else now
        end = started + max_wait
        if not fixed:
            if alone:
                return 0.0
            with self._lock:
                if self.gap is None or self.gap >= max_wait:
                    return 0.0
                last = self.last if self.last is not None else started
                end = min(end, max(last, started) + QUIET_GAPS * max(self.gap, 1e-4))
        return max(0.0, end - now)


class Ticket:
    """One caller in flight, from :meth:`Callers.ticket` until :meth:`close` (idempotent).
    ``with ticket:`` marks the body's thread as running this caller's work, then closes it."""

    __slots__ = ("callers", "closed")

    def __init__(self, callers: Callers) -> None:
        self.callers = callers
        self.closed = False

    def close(self) -> None:
        callers = self.callers
        with callers._lock:
            if not self.closed:
                self.closed = True
                callers.open -= 1

    def __enter__(self) -> Ticket:
        self.callers._held().append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.callers._held().remove(self)
        self.close()


class Callers:
    """The callers in flight in the process that may call a batched tool or model soon
    (thread-safe). Only the open tickets count; a thread's own are those it runs inside
    ``with ticket:``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()
        self.open = 0  # tickets given and not closed

    def ticket(self) -> Ticket:
        """A new open ticket (close it, or run its work inside ``with ticket:``)."""
        with self._lock:
            self.open += 1
        return Ticket(self)

    def _held(self) -> list[Ticket]:
        held = getattr(self._local, "held", None)
        if held is None:
            held = self._local.held = []
        return held

    def alone(self) -> bool:
        """Whether this thread runs a caller's work and every open ticket is its own: no
        other caller in flight could join a batch it leads."""
        mine = sum(not t.closed for t in getattr(self._local, "held", ()))
        return mine > 0 and self.open <= mine


CALLERS = Callers()  # the process's: the executor opens one ticket per group of steps


_parking = threading.local()


def park_with(hook: Callable[[], AbstractContextManager[None]] | None) -> None:
    """Register, for the calling thread, what :func:`parked` enters while it waits
    (None: nothing)."""
    _parking.hook = hook


@contextlib.contextmanager
def parked() -> Iterator[None]:
    """Mark the calling thread as waiting for another thread's work (see the module
    docstring); a no-op for threads that registered no hook."""
    hook = getattr(_parking, "hook", None)
    if hook is None:
        yield
        return
    with hook():
        yield
