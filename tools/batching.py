"""Cross-program batching: concurrent calls to the same batched tool share one batch.

Every program in the process hands its ready calls for a batched tool to that tool's
queue. The first caller to arrive leads: it waits for company as the queue's
:class:`~tools.waiting.AdaptiveWait` says — not at all when calls are rare (a lone program
pays no latency), up to ``max_wait_ms`` while they keep coming, never once ``max_batch``
calls are queued (``tools: {Name: {wait: fixed}}`` always waits ``max_wait_ms``) — runs
one ``run_batch`` over everything queued, and hands each caller its own results. Calls
that arrive while a batch runs make the next one. A failing call fails only its caller; a
batch that raises fails the calls in it. The model steps inside ``run_batch`` batch again
across tools (:mod:`tools.backends.coalesce`): Select and Classify share CLIP's batches.

Every member of a batch gets its own result or a typed error, whatever happens to the
leader: the batch runs under the leader's cancellation, so when the leader's step is
cancelled (its time limit fired) the batch stops at its next ``ctx.check()``, the leader's
calls get a ``cancelled`` error, the other members go back to the front of the queue and
run in the next batch under a new leader — at once, so a leader stuck in native code
never blocks them or later calls. A caller that is cancelled while queued leaves the
queue.

:func:`run_calls` applies the out-of-memory policy to one ``run_batch``: on a (CUDA) out of
memory error it halves the batch, then moves to the CPU, then gives a typed error, as
configured per tool (``tools: {Name: {on_oom: [smaller_batch, cpu]}}``), noting each
retreat in the context's ``meta`` (so the trace shows it). Tools that do not batch bypass
the queue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sandbox import ErrorCode, LimitExceeded

from .base import Tool, ToolContext
from .errors import ModelError, ToolError
from .video import expand_frames, gather_frames
from .waiting import DEFAULT_MAX_WAIT_MS, AdaptiveWait

log = logging.getLogger("vischain.tools")

DEFAULT_ON_OOM = ("smaller_batch", "cpu")


@dataclass(eq=False)
class _Request:
    calls: Sequence[dict[str, Any]]
    ctx: ToolContext
    done: threading.Event = field(default_factory=threading.Event)
    results: list[Any] | None = None
    batch_size: int = 0

    def finish(self, results: list[Any], batch_size: int) -> None:
        """Hand the caller its results (the first answer wins)."""
        if not self.done.is_set():
            self.results = results
            self.batch_size = batch_size
            self.done.set()


class _Queue:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.pending: list[_Request] = []
        self.leader: _Request | None = None  # whose thread runs the current batch
        self.inflight: list[_Request] = []  # the current batch
        self.batches = 0
        self.wait = AdaptiveWait()  # the arrivals' history: how long a leader waits

    def run(
        self, tool: Tool, request: _Request, max_batch: int, max_wait: float, *, fixed: bool
    ) -> list[Any]:
        with self.cond:
            self.wait.arrived()
            self.pending.append(request)
            self.cond.notify_all()
        try:
            while True:
                with self.cond:
                    while not request.done.is_set() and self._busy(tool):
                        self.cond.wait(timeout=0.05)
                    if request.done.is_set():
                        return request.results or []
                    self.leader = request
                try:
                    self._lead(tool, request, max_batch, max_wait, fixed)
                finally:
                    with self.cond:
                        if self.leader is request:
                            self.leader, self.inflight = None, []
                        self.cond.notify_all()
        finally:
            with self.cond:
                if request in self.pending:  # cancelled while queued
                    self.pending.remove(request)

    def _busy(self, tool: Tool) -> bool:
        """Whether a live leader runs a batch. A cancelled leader's batch is given up: the
        leader's own calls get a ``cancelled`` error, the other members go back to the
        front of the queue, and the queue is free for a new leader (call under ``cond``)."""
        leader = self.leader
        if leader is None:
            return False
        if not leader.ctx.cancel.is_set():
            return True
        self._give_up(tool, leader, self.inflight)
        self.leader, self.inflight = None, []
        return False

    def _give_up(self, tool: Tool, leader: _Request, batch: list[_Request]) -> None:
        """The cancelled leader's calls fail; its batch's other members queue again, to run
        in the next batch (call under ``cond``)."""
        again = [r for r in batch if r is not leader and not r.ctx.cancel.is_set()]
        for r in batch:
            if r not in again:
                r.finish([_cancelled(tool)] * len(r.calls), len(batch))
        self.pending[:0] = [r for r in again if not r.done.is_set() and r not in self.pending]

    def _lead(
        self, tool: Tool, leader: _Request, max_batch: int, max_wait: float, fixed: bool
    ) -> None:
        started = time.monotonic()
        with self.cond:
            while sum(len(r.calls) for r in self.pending) < max_batch:
                left = self.wait.until(started, max_wait, fixed=fixed)
                if left <= 0 or leader.ctx.cancel.is_set():
                    break
                self.cond.wait(timeout=left)
            if self.leader is not leader:  # cancelled while waiting: another leads now
                return
            batch: list[_Request] = []
            size = 0
            for r in list(self.pending):
                if batch and size + len(r.calls) > max_batch:
                    break
                self.pending.remove(r)
                if r.ctx.cancel.is_set():
                    r.finish([_cancelled(tool)] * len(r.calls), 0)
                    continue
                batch.append(r)
                size += len(r.calls)
            if not batch:
                return
            self.inflight = batch
            self.batches += 1
        calls = [c for r in batch for c in r.calls]
        deadlines = [r.ctx.deadline for r in batch]
        ctx = replace(  # the batch runs under the leader's cancellation
            leader.ctx,
            deadline=None if None in deadlines else max(d for d in deadlines if d is not None),
            meta={},
        )
        try:
            results = run_calls(tool, ctx, calls)
        except BaseException as exc:
            with self.cond:
                if leader.ctx.cancel.is_set() or not isinstance(exc, Exception):
                    self._give_up(tool, leader, batch)  # the leader was cancelled or abandoned
                else:  # the batch itself failed: so does every call in it
                    for r in batch:
                        r.finish([exc] * len(r.calls), len(calls))
            raise
        with self.cond:
            start = 0
            for r in batch:
                r.ctx.meta.update(ctx.meta)
                r.finish(results[start : start + len(r.calls)], len(calls))
                if r in self.pending:  # queued again when the batch was given up
                    self.pending.remove(r)
                start += len(r.calls)


def _cancelled(tool: Tool) -> LimitExceeded:
    return LimitExceeded(f"{tool.name}: the call was cancelled", code=ErrorCode.CANCELLED)


def is_out_of_memory(exc: BaseException) -> bool:
    """A device out-of-memory error (CUDA's, or a backend's that says so)."""
    if type(exc).__name__ == "OutOfMemoryError":
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def run_calls(tool: Tool, ctx: ToolContext, calls: Sequence[dict[str, Any]]) -> list[Any]:
    """``tool.run_batch(ctx, calls)``, checked for one result per call, under the tool's
    out-of-memory policy; every other exception passes through."""
    calls, spans = expand_frames(calls, tool.image_params)  # a video: one call per frame
    results = _run_calls(tool, ctx, calls)
    return gather_frames(results, spans) if any(video for *_, video in spans) else results


def _run_calls(tool: Tool, ctx: ToolContext, calls: Sequence[dict[str, Any]]) -> list[Any]:
    policy = tuple(ctx.option(tool.name, "on_oom", DEFAULT_ON_OOM) or ())
    try:
        results = list(tool.run_batch(ctx, calls))
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        return _retreat(tool, ctx, calls, policy, exc)
    if len(results) != len(calls):
        n, k = len(results), len(calls)
        raise ToolError(f"{tool.name}.run_batch returned {n} results for {k} calls")
    failed = [i for i, r in enumerate(results) if isinstance(r, Exception) and is_out_of_memory(r)]
    if failed:  # calls that ran out of memory one by one
        again = _retreat(tool, ctx, [calls[i] for i in failed], policy, results[failed[0]])
        for i, r in zip(failed, again, strict=True):
            results[i] = r
    return results


def _retreat(
    tool: Tool, ctx: ToolContext, calls: Sequence[dict[str, Any]], policy: tuple, exc: Exception
) -> list[Any]:
    steps = ctx.meta.setdefault("out_of_memory", [])
    if "smaller_batch" in policy and len(calls) > 1:
        half = (len(calls) + 1) // 2
        steps.append({"batch": len(calls), "then": f"batches of {half}"})
        log.warning("%s ran out of memory on %d calls; retrying in halves", tool.name, len(calls))
        return run_calls(tool, ctx, calls[:half]) + run_calls(tool, ctx, calls[half:])
    on_device = getattr(ctx.models, "on_device", None)
    on_cpu = getattr(ctx.models, "device", None) == "cpu"  # already a CPU view
    if "cpu" in policy and on_device is not None and not on_cpu:
        steps.append({"batch": len(calls), "then": "cpu"})
        ctx.note(fallback_device="cpu")
        log.warning("%s ran out of memory; retrying on the CPU", tool.name)
        return run_calls(tool, replace(ctx, models=on_device("cpu")), calls)
    steps.append({"batch": len(calls), "then": "error"})
    error = ModelError(
        f"{tool.name} ran out of device memory (policy {list(policy) or 'none'} exhausted): "
        f"{type(exc).__name__}: {exc}"
    )
    error.__cause__ = exc
    return [error] * len(calls)


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
            return run_calls(tool, ctx, calls)
        fixed = ctx.option(tool.name, "wait", "adaptive") == "fixed"
        request = _Request(list(calls), ctx)
        results = self.queue(tool).run(tool, request, max_batch, max_wait, fixed=fixed)
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
