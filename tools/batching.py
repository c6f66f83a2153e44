"""Cross-program batching: concurrent calls to the same batched tool share one batch.

Every program in the process hands its ready calls for a batched tool to that tool's
queue (a :class:`~tools.gather.Gatherer`: the first caller leads and runs one
``run_batch`` over up to ``max_batch`` queued calls; ``tools: {Name: {wait: fixed}}``
always waits ``max_wait_ms`` for company). A failing call fails only its caller; after a
batch of several calls raises, each call runs alone, so one bad input (a question too long
for the model) fails only its own call, not another program's. The model steps inside
``run_batch`` batch again across tools (:mod:`tools.backends.coalesce`): Select and Classify
share CLIP's batches.

A batch runs under its leader's cancellation: when the leader's step is cancelled (its
time limit fired) the batch stops at its next ``ctx.check()``, the leader's calls get a
``cancelled`` error and the other members run in the next batch under a new leader, at
once (a leader stuck in native code blocks nobody).

:func:`run_calls` applies the out-of-memory policy to one ``run_batch``: on a (CUDA) out of
memory error it halves the batch, then moves to the CPU, then gives a typed error, as
configured per tool (``tools: {Name: {on_oom: [smaller_batch, cpu]}}``), noting each
retreat in the context's ``meta`` (so the trace shows it). Tools that do not batch bypass
the queue.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from typing import Any

from sandbox import ErrorCode, LimitExceeded

from .base import Tool, ToolContext
from .errors import ModelError, ToolError
from .gather import Entry, Gatherer, GatherStats, slices
from .video import expand_frames, gather_frames
from .waiting import DEFAULT_MAX_WAIT_MS

log = logging.getLogger("vischain.tools")

DEFAULT_ON_OOM = ("smaller_batch", "cpu")


def _cancelled(name: str, entry: Entry) -> list[LimitExceeded] | None:
    """A cancelled caller's results (None while its step may still run)."""
    if not entry.owner.cancel.is_set():
        return None
    return [_cancellation(name)] * len(entry.items)


def _cancellation(name: str) -> LimitExceeded:
    return LimitExceeded(f"{name}: the call was cancelled", code=ErrorCode.CANCELLED)


def _run_batch(tool: Tool, leader: Entry, batch: list[Entry]) -> list[list[Any]]:
    """One ``run_calls`` over the batch's calls under the leader's cancellation and the
    latest deadline; each caller's slice of the results. A failing batch fails every call
    in it; it raises only when the leader was cancelled (its members run again)."""
    calls = [c for e in batch for c in e.items]
    deadlines = [e.owner.deadline for e in batch]
    ctx = replace(
        leader.owner,
        deadline=None if None in deadlines else max(d for d in deadlines if d is not None),
        meta={},
    )
    try:
        results = run_calls(tool, ctx, calls)
    except Exception as exc:
        if leader.owner.cancel.is_set():
            raise
        if len(calls) == 1 or isinstance(exc, ResultCountError):
            results = [exc] * len(calls)
        else:  # one bad input must not fail the others' calls: each runs alone
            results = []
            for e in batch:
                own = replace(e.owner, meta={})
                results += _calls_alone(tool, own, e.items)
                e.owner.meta.update(own.meta)
    for e in batch:
        e.owner.meta.update(ctx.meta)
    return slices(results, batch)


def _calls_alone(tool: Tool, ctx: ToolContext, calls: Sequence[dict[str, Any]]) -> list[Any]:
    """Each call in a ``run_batch`` of its own, its exception its result: after a batch of
    them raised, so that one bad input (a question too long for the model) fails only its
    own call. Calls left when ``ctx`` is cancelled get a ``cancelled`` error."""
    results: list[Any] = []
    for call in calls:
        if ctx.cancel.is_set():
            results.append(_cancellation(tool.name))
            continue
        try:
            results += run_calls(tool, ctx, [call])
        except Exception as exc:
            results.append(exc)
    return results


def is_out_of_memory(exc: BaseException) -> bool:
    """A device out-of-memory error (CUDA's, or a backend's that says so)."""
    if type(exc).__name__ == "OutOfMemoryError":
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


class ResultCountError(ToolError):
    """``run_batch`` returned another number of results than it was given calls: the tool
    is at fault, not one of the inputs, so its calls are not run again one by one."""


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
        raise ResultCountError(f"{tool.name}.run_batch returned {n} results for {k} calls")
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
        self._queues: dict[str, Gatherer] = {}
        self._lock = threading.Lock()

    def queue(self, tool: Tool) -> Gatherer:
        with self._lock:
            queue = self._queues.get(tool.spec.name)
            if queue is None:
                queue = Gatherer(partial(_cancelled, tool.name))
                self._queues[tool.spec.name] = queue
            return queue

    def run(self, tool: Tool, ctx: ToolContext, calls: Sequence[dict[str, Any]]) -> list[Any]:
        """``tool.run_batch(ctx, calls)``, coalesced with concurrent callers' calls."""
        max_batch = int(ctx.option(tool.name, "max_batch", tool.max_batch))
        max_wait = float(ctx.option(tool.name, "max_wait_ms", DEFAULT_MAX_WAIT_MS)) / 1000.0
        if tool.max_batch <= 1 or max_batch <= 1 or max_wait <= 0:
            try:
                return run_calls(tool, ctx, calls)
            except Exception as exc:
                if len(calls) == 1 or ctx.cancel.is_set() or isinstance(exc, ResultCountError):
                    raise
                return _calls_alone(tool, ctx, calls)
        fixed = ctx.option(tool.name, "wait", "adaptive") == "fixed"
        entry = Entry(list(calls), ctx)
        results = self.queue(tool).join(
            entry, partial(_run_batch, tool), max_batch=max_batch, max_wait=max_wait, fixed=fixed
        )
        ctx.note(coalesced=entry.batch_size)
        return results

    def batches(self, tool_name: str) -> int:
        """How many batches a tool has run through its queue (for tests and benchmarks)."""
        return self.stats(tool_name).batches

    def stats(self, tool_name: str) -> GatherStats:
        """A copy of a tool's queue statistics (zeros before its first call)."""
        with self._lock:
            q = self._queues.get(tool_name)
        return GatherStats() if q is None else replace(q.stats)


_DEFAULT = Batcher()


def default_batcher() -> Batcher:
    return _DEFAULT
