"""Cross-program batching: concurrent calls to the same batched tool share one batch.

Every program in the process hands its ready calls for a batched tool to that tool's
queue. The first caller to arrive leads: it waits up to ``max_wait_ms`` (or until
``max_batch`` calls are queued), runs one ``run_batch`` over everything queued, and hands
each caller its own results. A failing call fails only its caller; a batch that raises
fails the calls in it. Tools that do not batch bypass the queue.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .base import Tool, ToolContext

DEFAULT_MAX_WAIT_MS = 5.0


@dataclass
class _Request:
    calls: Sequence[dict[str, Any]]
    ctx: ToolContext
    done: threading.Event = field(default_factory=threading.Event)
    results: list[Any] | None = None
    batch_size: int = 0


class _Queue:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.pending: list[_Request] = []
        self.leading = False
        self.batches = 0

    def run(self, tool: Tool, request: _Request, max_batch: int, max_wait: float) -> list[Any]:
        with self.cond:
            self.pending.append(request)
            self.cond.notify_all()
        while True:
            with self.cond:
                while not request.done.is_set() and self.leading:
                    self.cond.wait(timeout=0.05)
                if request.done.is_set():
                    return request.results or []
                self.leading = True
            try:
                self._lead(tool, max_batch, max_wait)
            finally:
                with self.cond:
                    self.leading = False
                    self.cond.notify_all()

    def _lead(self, tool: Tool, max_batch: int, max_wait: float) -> None:
        deadline = time.monotonic() + max_wait
        with self.cond:
            while sum(len(r.calls) for r in self.pending) < max_batch:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(timeout=left)
            batch: list[_Request] = []
            size = 0
            for r in list(self.pending):
                if batch and size + len(r.calls) > max_batch:
                    break
                batch.append(r)
                size += len(r.calls)
            for r in batch:
                self.pending.remove(r)
            self.batches += 1
        calls = [c for r in batch for c in r.calls]
        first = batch[0].ctx
        deadlines = [r.ctx.deadline for r in batch]
        ctx = ToolContext(
            models=first.models,
            options=first.options,
            limits=first.limits,
            deadline=None if None in deadlines else max(d for d in deadlines if d is not None),
            services=first.services,
        )
        try:
            results = list(tool.run_batch(ctx, calls))
            if len(results) != len(calls):
                n, k = len(results), len(calls)
                raise RuntimeError(f"{tool.name}.run_batch returned {n} results for {k} calls")
        except Exception as exc:
            results = [exc] * len(calls)
        start = 0
        for r in batch:
            r.results = results[start : start + len(r.calls)]
            start += len(r.calls)
            r.ctx.meta.update(ctx.meta)
            r.batch_size = len(calls)
            r.done.set()


class Batcher:
    """One queue per batched tool; shared by every program in the process."""

    def __init__(self) -> None:
        self._queues: dict[str, _Queue] = {}
        self._lock = threading.Lock()

    def queue(self, tool: Tool) -> _Queue:
        with self._lock:
            return self._queues.setdefault(tool.spec.name, _Queue())

    def run(self, tool: Tool, ctx: ToolContext, calls: Sequence[dict[str, Any]]) -> list[Any]:
        """``tool.run_batch(ctx, calls)``, coalesced with concurrent callers' calls."""
        max_batch = int(ctx.option(tool.name, "max_batch", tool.max_batch))
        max_wait = float(ctx.option(tool.name, "max_wait_ms", DEFAULT_MAX_WAIT_MS)) / 1000.0
        if tool.max_batch <= 1 or max_batch <= 1 or max_wait <= 0:
            return list(tool.run_batch(ctx, calls))
        request = _Request(list(calls), ctx)
        results = self.queue(tool).run(tool, request, max_batch, max_wait)
        ctx.note(coalesced=request.batch_size)
        return results

    def batches(self, tool_name: str) -> int:
        """How many batches a tool has run through its queue (for tests and benchmarks)."""
        with self._lock:
            q = self._queues.get(tool_name)
        return 0 if q is None else q.batches


_DEFAULT = Batcher()


def default_batcher() -> Batcher:
    return _DEFAULT
