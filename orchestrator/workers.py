"""Worker threads whose jobs can be abandoned when they overrun their time limit, in a
bounded number of threads.

Python cannot kill a thread, so a job that overruns is *abandoned*: its result is dropped,
an asynchronous ``JobAbandoned`` exception is raised inside it so pure-Python loops stop at
once, and its worker is retired (it exits when the job returns). Native calls (a model's
forward pass, a blocking wait) finish their current call first. While a retired worker is
still running it is *stuck*; a replacement takes its place only while fewer than
``max_stuck`` workers are stuck, so the pool never holds more than ``max_workers +
max_stuck`` threads, however many jobs time out. Each job carries a tag (the tool it runs):
:meth:`WorkerPool.stuck` says how many abandoned jobs with that tag are still running, so
the executor can refuse new calls to a stuck tool until its call returns.

A worker waiting in a batch queue for another thread's batch (or for company) is *parked*
(:func:`tools.waiting.parked`): it does no work, so the pool lends another worker for as
long as it waits, up to ``max_parked`` at once. Without that, ``max_workers`` would cap how
many programs can join one batch (16 programs at once, 4 workers: batches of 4). A worker
beyond the pool's current size (``max_workers`` plus the parked ones) retires when it
finishes its job, when it has been idle for ``IDLE_LOOK_S``, or hands the job it just took
back to the queue.

:class:`Watchdog` puts a deadline on code that runs in the caller's own thread (inline
tools): past the deadline it raises ``DeadlineExceeded`` inside that thread. Its thread
sleeps until the earliest deadline it knows of (at most ``IDLE_LOOK_S`` when it knows
none) and is woken only for an earlier one, so short runs back to back never wake it.

Workers are daemon threads, so an abandoned job never blocks interpreter exit.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from sandbox import ErrorCode, VisChainError
from tools.waiting import park_with

log = logging.getLogger("vischain.executor")


class JobAbandoned(BaseException):
    """Raised asynchronously inside a job that overran its time limit."""


class PoolClosed(VisChainError, RuntimeError):
    """Work was submitted after the pool was shut down."""

    code = ErrorCode.CANCELLED


class DeadlineExceeded(BaseException):
    """Raised asynchronously inside code guarded by a :class:`Watchdog` past its deadline."""


@dataclass(eq=False)
class Job:
    fn: Callable[[], None]
    tag: str | None = None
    id: int = field(default_factory=itertools.count().__next__)
    worker: _Worker | None = None
    abandoned: bool = False
    finished: bool = False


class _Worker(threading.Thread):
    def __init__(self, pool: WorkerPool, index: int) -> None:
        super().__init__(name=f"{pool.name}-{index}", daemon=True)
        self.pool = pool
        self.state = threading.Lock()
        self.current: Job | None = None
        self.retired = False

    def run(self) -> None:
        park_with(self.pool._park)
        try:
            while not self.retired:
                try:
                    job = self.pool._jobs.get(timeout=IDLE_LOOK_S)
                except queue.Empty:  # idle: a worker lent while others were parked retires
                    if self.pool._surplus(self):
                        return
                    continue
                if job is None:
                    return
                if self.pool._surplus(self):  # the pool shrank while this one was idle
                    self.pool._jobs.put(job)
                    return
                with self.state:
                    if job.abandoned:
                        continue
                    self.current = job
                    job.worker = self
                try:
                    job.fn()
                except JobAbandoned:
                    pass
                except BaseException:  # a job reports its own errors; never kill the worker
                    log.exception("worker job %s crashed", job.id)
                finally:
                    with self.state:
                        self.current = None
                        job.finished = True
                if self.pool._surplus(self):
                    return
        except JobAbandoned:
            pass
        finally:
            self.pool._worker_exited(self)


DEFAULT_MAX_PARKED = 64  # workers lent at once for workers parked in batch queues


class WorkerPool:
    """``max_workers`` live workers, plus one for each worker parked in a batch queue (at
    most ``max_parked`` more); at most ``max_stuck`` more that were abandoned while running
    and have not returned yet (default: as many as ``max_workers``)."""

    def __init__(
        self,
        max_workers: int = 4,
        name: str = "vischain-worker",
        *,
        max_stuck: int | None = None,
        max_parked: int = DEFAULT_MAX_PARKED,
    ) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.max_workers = max_workers
        self.max_stuck = max_workers if max_stuck is None else max(0, max_stuck)
        self.max_parked = max(0, max_parked)
        self.parked = 0  # workers waiting in a batch queue now
        self.name = name
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._workers: set[_Worker] = set()  # live: take jobs from the queue
        self._stuck: dict[_Worker, Job] = {}  # retired while running an abandoned job
        self._counter = itertools.count()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def submit(self, fn: Callable[[], None], *, tag: str | None = None) -> Job:
        if self._closed:
            raise PoolClosed("the worker pool is shut down (the orchestrator was closed)")
        job = Job(fn, tag)
        self._ensure_workers()
        self._jobs.put(job)
        return job

    def abandon(self, job: Job) -> None:
        """Give up on ``job``: drop it if queued, else retire its worker and interrupt it."""
        job.abandoned = True
        worker = job.worker
        if worker is None:
            return
        with worker.state:
            running = worker.current is job
            if running:
                worker.retired = True
                _raise_in_thread(worker, JobAbandoned)
        with self._lock:
            self._workers.discard(worker)
            if running and worker.is_alive():
                self._stuck[worker] = job
        self._ensure_workers()

    def stuck(self, tag: str) -> int:
        """How many abandoned jobs tagged ``tag`` are still running."""
        with self._lock:
            return sum(1 for j in self._stuck.values() if j.tag == tag and not j.finished)

    def stuck_tags(self) -> Counter[str]:
        with self._lock:
            return Counter(j.tag for j in self._stuck.values() if j.tag and not j.finished)

    def exhausted(self) -> bool:
        """Whether every thread the pool may hold is stuck in an abandoned call (nothing
        submitted now would run until one of them returns)."""
        self._ensure_workers()
        with self._lock:
            return not self._workers and bool(self._stuck)

    def _size(self) -> int:
        """How many live workers the pool should have now (under the lock)."""
        room = self.max_workers + self.max_stuck - len(self._stuck)
        return min(self.max_workers, room) + min(self.parked, self.max_parked)

    def _ensure_workers(self) -> None:
        if self._closed:
            return
        with self._lock:
            while len(self._workers) < self._size():
                w = _Worker(self, next(self._counter))
                self._workers.add(w)
                w.start()

    def _surplus(self, worker: _Worker) -> bool:
        """Retire ``worker`` if the pool has more live workers than it should; whether it
        did."""
        with self._lock:
            if worker in self._workers and len(self._workers) > self._size():
                self._workers.discard(worker)
                return True
            return False

    @contextlib.contextmanager
    def _park(self) -> Iterator[None]:
        """A worker waits for another thread's work: lend one more meanwhile."""
        with self._lock:
            self.parked += 1
        try:
            self._ensure_workers()
            yield
        finally:
            with self._lock:
                self.parked -= 1

    def _worker_exited(self, worker: _Worker) -> None:
        with self._lock:
            self._workers.discard(worker)
            was_stuck = self._stuck.pop(worker, None) is not None
        if was_stuck:
            self._ensure_workers()

    @property
    def live_workers(self) -> int:
        with self._lock:
            return len(self._workers)

    @property
    def threads(self) -> int:
        """Every thread the pool holds: live workers (lent ones too) and stuck ones."""
        with self._lock:
            return len(self._workers) + len(self._stuck)

    def shutdown(self) -> None:
        self._closed = True
        with self._lock:
            n = len(self._workers)
        for _ in range(n):
            self._jobs.put(None)


_NEVER = float("inf")
IDLE_LOOK_S = 30.0  # with no deadline pending, the watchdog still looks this often


class Watchdog:
    """One thread that interrupts guarded code in other threads at their deadlines."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # taken directly where no waiting is involved
        self._cond = threading.Condition(self._lock)
        self._armed: dict[int, tuple[float, threading.Thread]] = {}  # token -> deadline
        self._fired: set[int] = set()
        self._tokens = itertools.count()
        self._thread: threading.Thread | None = None
        self._wake = float("inf")  # when the watchdog thread next looks (monotonic)
        self._slots: set[Slot] = set()  # reusable guards, each held by one thread
        self.looks = 0  # times the watchdog thread looked at the deadlines
        self.wakes = 0  # times a guarded thread woke it for an earlier deadline

    @contextlib.contextmanager
    def slot(self) -> Iterator[Slot]:
        """A guard the calling thread reuses for many bodies (an executor run's inline
        steps): registered once here, then each ``with slot.until(deadline):`` costs a few
        attribute writes instead of arming and disarming (see :class:`Slot`)."""
        slot = Slot(self, threading.current_thread())
        with self._lock:
            self._slots.add(slot)
        try:
            yield slot
        finally:
            with self._lock:
                self._slots.discard(slot)

    def guard(self, deadline: float | None) -> contextlib.AbstractContextManager[None]:
        """Run the body; past ``deadline`` (``time.monotonic()``) raise ``DeadlineExceeded``
        in it. Code blocked in a native call is interrupted when that call returns."""
        return contextlib.nullcontext() if deadline is None else _Guard(self, deadline)

    def _arm(self, deadline: float) -> int:
        token = next(self._tokens)
        with self._lock:
            self._armed[token] = (deadline, threading.current_thread())
            if deadline < self._wake:  # only then does the watchdog need to wake earlier
                self._wake = deadline
                self.wakes += 1
                self._start()
                self._cond.notify()
        return token

    def _disarm(self, token: int) -> None:
        with self._lock:
            self._armed.pop(token, None)
            fired = token in self._fired
            self._fired.discard(token)
        if fired:  # delivered already, or still pending: then withdraw it
            _clear_in_thread(threading.current_thread())

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._loop, name="vischain-watchdog", daemon=True
            )
            self._thread.start()

    def _loop(self) -> None:
        with self._cond:
            while True:
                self.looks += 1
                now = time.monotonic()
                for token, (deadline, thread) in list(self._armed.items()):
                    if deadline <= now and token not in self._fired:
                        self._fired.add(token)
                        _raise_in_thread(thread, DeadlineExceeded)
                pending = [d for t, (d, _) in self._armed.items() if t not in self._fired]
                for slot in self._slots:
                    if slot.fired:
                        continue
                    if slot.active and slot.deadline <= now:
                        slot.fired = True
                        _raise_in_thread(slot.thread, DeadlineExceeded)
                    elif now < slot.deadline < _NEVER:  # active, or may be again before then
                        pending.append(slot.deadline)
                # Idle, it still looks every IDLE_LOOK_S: a later deadline (the next run's
                # first step, seconds or minutes ahead) then needs no wake-up. Waking it
                # costs the guarded thread a hand-off of the interpreter lock, a whole
                # scheduling quantum when the other cores are busy.
                self._wake = min(pending, default=now + IDLE_LOOK_S)
                self._cond.wait(timeout=max(self._wake - now, 0.001))


class _Guard:
    """One guarded body (a class, not a generator: it is entered for every inline step)."""

    __slots__ = ("deadline", "token", "watchdog")

    def __init__(self, watchdog: Watchdog, deadline: float) -> None:
        self.watchdog = watchdog
        self.deadline = deadline
        self.token = -1

    def __enter__(self) -> None:
        self.token = self.watchdog._arm(self.deadline)

    def __exit__(self, *exc: object) -> None:
        self.watchdog._disarm(self.token)


class Slot:
    """A watchdog guard that one thread reuses: ``with slot.until(deadline):`` runs the body
    under ``deadline`` like :meth:`Watchdog.guard`.

    Entering writes the deadline and marks the slot active; the watchdog reads both under
    its lock. A deadline no earlier than the slot's last one and no earlier than the
    watchdog's next look needs no lock (the watchdog, waking no later than that deadline,
    sees the new one and sleeps on); an earlier one wakes the watchdog. Leaving takes the
    lock, so the watchdog cannot fire between the body's end and the slot going inactive,
    and withdraws an interruption fired but not yet delivered."""

    __slots__ = ("active", "deadline", "fired", "thread", "watchdog")

    def __init__(self, watchdog: Watchdog, thread: threading.Thread) -> None:
        self.watchdog = watchdog
        self.thread = thread
        self.deadline = -_NEVER  # none yet: the first body wakes the watchdog
        self.active = False
        self.fired = False

    def until(self, deadline: float | None) -> Slot | contextlib.nullcontext[None]:
        if deadline is None:
            return contextlib.nullcontext()
        watchdog = self.watchdog
        if deadline < self.deadline or deadline < watchdog._wake:
            with watchdog._lock:
                self.deadline = deadline
                self.active = True
                watchdog._wake = min(watchdog._wake, deadline)
                watchdog.wakes += 1
                watchdog._start()
                watchdog._cond.notify()
        else:
            self.deadline = deadline
            self.active = True
        return self

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        with self.watchdog._lock:
            self.active = False
            fired, self.fired = self.fired, False
        if fired:  # delivered already, or still pending: then withdraw it
            _clear_in_thread(self.thread)


_WATCHDOG = Watchdog()


def watchdog() -> Watchdog:
    """The process-wide watchdog."""
    return _WATCHDOG


def _raise_in_thread(thread: threading.Thread, exc_type: type[BaseException]) -> None:
    if thread.ident is None:
        return
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread.ident), ctypes.py_object(exc_type)
    )


def _clear_in_thread(thread: threading.Thread) -> None:
    if thread.ident is None:
        return
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), None)
