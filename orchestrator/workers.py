"""Worker threads whose jobs can be abandoned when they overrun their time limit.

Python cannot kill a thread, so a job that overruns is *abandoned*: its worker is retired
(it exits after the job), a replacement takes its place, the job's result is dropped, and an
asynchronous ``JobAbandoned`` exception is raised inside it so pure-Python loops stop at once.
Native calls (a model's forward pass) finish their current call first; their results are
ignored. Workers are daemon threads, so an abandoned job never blocks interpreter exit.
"""

from __future__ import annotations

import ctypes
import itertools
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("vischain.executor")


class JobAbandoned(BaseException):
    """Raised asynchronously inside a job that overran its time limit."""


@dataclass(eq=False)
class Job:
    fn: Callable[[], None]
    id: int = field(default_factory=itertools.count().__next__)
    worker: _Worker | None = None
    abandoned: bool = False


class _Worker(threading.Thread):
    def __init__(self, pool: WorkerPool, index: int) -> None:
        super().__init__(name=f"{pool.name}-{index}", daemon=True)
        self.pool = pool
        self.state = threading.Lock()
        self.current: Job | None = None
        self.retired = False

    def run(self) -> None:
        try:
            while not self.retired:
                job = self.pool._jobs.get()
                if job is None:
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
        except JobAbandoned:
            pass
        finally:
            self.pool._worker_exited(self)


class WorkerPool:
    """A fixed number of live workers; abandoned ones are replaced."""

    def __init__(self, max_workers: int = 4, name: str = "vischain-worker") -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.max_workers = max_workers
        self.name = name
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._workers: set[_Worker] = set()
        self._counter = itertools.count()
        self._closed = False

    def submit(self, fn: Callable[[], None]) -> Job:
        if self._closed:
            raise RuntimeError("worker pool is shut down")
        job = Job(fn)
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
            if worker.current is job:
                worker.retired = True
                _raise_in_thread(worker, JobAbandoned)
        with self._lock:
            self._workers.discard(worker)
        self._ensure_workers()

    def _ensure_workers(self) -> None:
        with self._lock:
            while len(self._workers) < self.max_workers:
                w = _Worker(self, next(self._counter))
                self._workers.add(w)
                w.start()

    def _worker_exited(self, worker: _Worker) -> None:
        with self._lock:
            self._workers.discard(worker)

    @property
    def live_workers(self) -> int:
        with self._lock:
            return len(self._workers)

    def shutdown(self) -> None:
        self._closed = True
        with self._lock:
            n = len(self._workers)
        for _ in range(n):
            self._jobs.put(None)


def _raise_in_thread(thread: threading.Thread, exc_type: type[BaseException]) -> None:
    if thread.ident is None:
        return
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread.ident), ctypes.py_object(exc_type)
    )
