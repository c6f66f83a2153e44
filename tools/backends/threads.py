"""One thread per loaded model: every forward of a model runs on the thread that owns it.

GPU libraries keep per-thread state that is expensive to build: cuDNN caches its attention
execution plans per thread and per shape (measured on an H100: the same six-question LLaVA
call takes 0.12 s on a thread that ran it before and 1.5-2.2 s on a fresh one). The
executor's worker threads and the batching queue's leaders are whichever threads arrive,
so without this every call could pay that again. A backend's methods marked
:func:`on_model_thread` are handed to its :class:`ModelThread` (started on first use) and the
caller waits for the result; a call made on the model's own thread (one backend method
calling another) runs directly, so nothing deadlocks. Exceptions come back to the caller
unchanged. Calls to one model run one at a time in arrival order, which is what a single
device does anyway; different models run in parallel.
"""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


class ModelThread:
    """A daemon thread that runs the calls handed to it, one at a time, in order."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._queue: queue.SimpleQueue[tuple[Callable[[], Any], Future] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()
        self.calls = 0

    @property
    def ident(self) -> int | None:
        return self._thread.ident

    def owns_current_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def run(self, fn: Callable[[], R]) -> R:
        """``fn()`` on this thread (directly, when already on it); its result or exception."""
        if self.owns_current_thread():
            return fn()
        return self.submit(fn).result()

    def submit(self, fn: Callable[[], R]) -> Future[R]:
        """Queue ``fn()`` and return its future at once (run in place when called from
        this thread itself, which could otherwise wait on itself)."""
        future: Future[R] = Future()
        if self.owns_current_thread():
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)
            return future
        if not self._thread.is_alive():
            raise RuntimeError(f"model thread {self.name} has stopped")
        self._queue.put((fn, future))
        return future

    def stop(self) -> None:
        """Finish the queued calls, then end the thread (idempotent)."""
        self._queue.put(None)

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fn, future = item
            if not future.set_running_or_notify_cancel():
                continue
            self.calls += 1
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the caller, never lost
                future.set_exception(exc)


def on_model_thread(method: Callable[P, R]) -> Callable[P, R]:
    """Run a backend method on its model's own thread (``self.model_thread()``)."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        owner = args[0].model_thread()  # type: ignore[attr-defined]
        if owner is None:
            return method(*args, **kwargs)
        return owner.run(lambda: method(*args, **kwargs))

    return wrapper
