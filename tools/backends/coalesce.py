"""Batching by model: concurrent calls of one model step, from any tool of any program, run
as one batch.

A backend routes the device step of a batched method through a :class:`Lane` (one per
model and step, e.g. CLIP's image encoder or a VLM's ``generate``), so Select and Classify
fill one CLIP batch, and Vqa, captions and pointing one VLM batch, whichever programs
called them. For each call:

1. The caller prepares its own rows on its own thread first (CPU work such as cropping,
   resizing and tokenising), so the next batch is being prepared while the current one
   runs on the device.
2. It queues its rows. With no batch in flight it leads: it waits for company only when
   calls arrive often (:class:`tools.waiting.AdaptiveWait`; a lone program waits not at
   all), then takes the queued rows, first come first served, up to ``max_batch`` (a call
   is never split), runs the step once on all of them — on the model's own thread when it
   has one — and hands every caller its own slice. It leads again until its own rows are
   done.
3. Calls that arrive while a batch is in flight wait for it to end; the next batch takes
   all of them.

Rows with equal keys (e.g. the same picture asked for twice) run once. A batch that
raises is retried call by call, so one bad input fails only the call that brought it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..waiting import DEFAULT_MAX_WAIT_MS, AdaptiveWait


@dataclass(eq=False)
class _Ask:
    rows: list[Any]
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None  # this call's slice of the batch's output, or the exception it gets


@dataclass
class LaneStats:
    batches: int = 0  # times the step ran
    rows: int = 0  # rows it ran on (after removing duplicates)
    calls: int = 0  # calls served
    largest: int = 0  # most calls in one batch


class Lane:
    """One model step shared by every caller in the process (thread-safe).

    ``run(rows)`` returns one output row per input row (a list, tensor or array); a caller
    gets ``output[start:end]`` for its own rows, of the same type. ``key(row)`` (optional)
    names rows that are the same input."""

    def __init__(
        self,
        name: str,
        run: Callable[[list[Any]], Sequence[Any]],
        *,
        max_batch: int = 64,
        max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
        fixed_wait: bool = False,
        key: Callable[[Any], Hashable] | None = None,
    ) -> None:
        self.name = name
        self._run = run
        self.max_batch = max(1, int(max_batch))
        self.max_wait = max(0.0, float(max_wait_ms)) / 1000.0
        self.key = key
        self.fixed_wait = fixed_wait
        self.wait = AdaptiveWait()
        self.stats = LaneStats()
        self._cond = threading.Condition()
        self._pending: list[_Ask] = []
        self._busy = False  # a leader holds the lane (waiting for company or running)

    def __call__(self, rows: Sequence[Any]) -> Any:
        """The step's output for ``rows``, run in a batch with whatever else is queued."""
        ask = _Ask(list(rows))
        if not ask.rows:
            return self._run([])
        with self._cond:
            self.wait.arrived()
            self._pending.append(ask)
            self._cond.notify_all()
            while not ask.done.is_set() and self._busy:
                self._cond.wait()
            lead = not ask.done.is_set()
            if lead:
                self._busy = True
        if lead:
            try:
                while not ask.done.is_set():
                    self._lead_one()
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
        if isinstance(ask.result, BaseException):
            raise ask.result
        return ask.result

    def _lead_one(self) -> None:
        """Wait (as the policy says), take one batch off the queue and run it."""
        with self._cond:
            started = time.monotonic()
            while self._queued() < self.max_batch:
                left = self.wait.until(started, self.max_wait, fixed=self.fixed_wait)
                if left <= 0:
                    break
                self._cond.wait(timeout=left)
            batch: list[_Ask] = []
            size = 0
            for ask in list(self._pending):
                if batch and size + len(ask.rows) > self.max_batch:
                    break
                self._pending.remove(ask)
                batch.append(ask)
                size += len(ask.rows)
        if batch:
            self._run_batch(batch)

    def _queued(self) -> int:
        return sum(len(a.rows) for a in self._pending)

    def waiting(self) -> int:
        """How many calls are queued for the next batch."""
        with self._cond:
            return len(self._pending)

    def _run_batch(self, batch: list[_Ask]) -> None:
        try:
            outputs = self._outputs([r for a in batch for r in a.rows])
            start = 0
            for ask in batch:
                ask.result = outputs[start : start + len(ask.rows)]
                start += len(ask.rows)
        except Exception as exc:
            if len(batch) == 1:
                batch[0].result = exc
            else:  # one bad input must not fail the other calls: each runs alone
                for ask in batch:
                    try:
                        ask.result = self._outputs(ask.rows)
                    except Exception as own:
                        ask.result = own
        except BaseException as exc:  # the leader is being torn down: nobody waits forever
            for ask in batch:
                ask.result = exc
            raise
        finally:
            with self._cond:
                self.stats.batches += 1
                self.stats.calls += len(batch)
                self.stats.largest = max(self.stats.largest, len(batch))
            for ask in batch:
                ask.done.set()

    def _outputs(self, rows: list[Any]) -> Any:
        """``run`` over the distinct rows, expanded back to one output per row."""
        if self.key is None:
            unique, where = rows, None
        else:
            first: dict[Hashable, int] = {}
            where = [first.setdefault(self.key(r), len(first)) for r in rows]
            picked = {i: r for r, i in zip(rows, where, strict=True)}
            unique = [picked[i] for i in range(len(first))]
        out = self._run(unique)
        if len(out) != len(unique):
            raise ValueError(f"{self.name} returned {len(out)} rows for {len(unique)} inputs")
        with self._cond:
            self.stats.rows += len(unique)
        if where is None or len(unique) == len(rows):
            return out
        return _take(out, where)


def _take(out: Any, index: list[int]) -> Any:
    """Rows ``index`` of ``out`` (a tensor or array by fancy indexing, else a list)."""
    if hasattr(out, "shape"):
        try:
            import torch

            if isinstance(out, torch.Tensor):
                return out[torch.tensor(index, dtype=torch.long)]
        except ImportError:  # pragma: no cover - torch is a dependency
            pass
        return out[index]
    return [out[i] for i in index]


class Lanes:
    """A backend's lanes, made on first use (thread-safe)."""

    def __init__(self, *, max_wait_ms: float = DEFAULT_MAX_WAIT_MS, enabled: bool = True) -> None:
        self.max_wait_ms = max_wait_ms
        self.enabled = enabled
        self._lanes: dict[str, Lane] = {}
        self._lock = threading.Lock()

    def get(
        self,
        name: str,
        run: Callable[[list[Any]], Sequence[Any]],
        *,
        max_batch: int = 64,
        key: Callable[[Any], Hashable] | None = None,
    ) -> Callable[[Sequence[Any]], Any]:
        """The lane ``name`` (made with ``run``, ``max_batch`` and ``key`` the first time);
        ``run`` itself when batching across calls is off."""
        if not self.enabled:
            return lambda rows: run(list(rows))
        with self._lock:
            lane = self._lanes.get(name)
            if lane is None:
                lane = Lane(name, run, max_batch=max_batch, max_wait_ms=self.max_wait_ms, key=key)
                self._lanes[name] = lane
            return lane

    def stats(self) -> dict[str, LaneStats]:
        with self._lock:
            return {name: lane.stats for name, lane in self._lanes.items()}
