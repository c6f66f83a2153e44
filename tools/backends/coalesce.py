"""Batching by model: concurrent calls of one model step, from any tool of any program, run
as one batch.

A backend routes the device step of a batched method through a :class:`Lane` (one per
model and step, e.g. CLIP's image encoder or a VLM's ``generate``), so Select and Classify
fill one CLIP batch, and Vqa, captions and pointing one VLM batch, whichever programs
called them. For each call:

1. The caller prepares its own rows on its own thread first (CPU work such as cropping,
   resizing and tokenising), so the next batch is being prepared while the current one
   runs on the device; :meth:`Lanes.after` tells the lane meanwhile that they are coming,
   so two callers reaching an idle model together share a batch.
2. It queues its rows in the lane's :class:`~tools.gather.Gatherer`: the first caller
   leads (waiting for company only when calls arrive often; a lone program waits not at
   all), runs the step once on up to ``max_batch`` queued rows (a call is never split) —
   on the model's own thread when it has one — and hands every caller its own slice.
3. Calls that arrive while a batch is in flight make the next batch.

Rows with equal keys (e.g. the same picture asked for twice) run once. A batch that
raises is retried call by call, so one bad input fails only the call that brought it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from ..gather import Entry, Gatherer, GatherStats, slices
from ..waiting import DEFAULT_MAX_WAIT_MS


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
        self._queue = Gatherer()
        self.stats = self._queue.stats

    def __call__(self, rows: Sequence[Any], *, expected: bool = False) -> Any:
        """The step's output for ``rows``, run in a batch with whatever else is queued
        (``expected``: announced by :meth:`after`)."""
        entry = Entry(list(rows))
        if not entry.items:
            self._queue.expect(-expected)
            return self._run([])
        result = self._queue.join(
            entry, self._run_batch, max_batch=self.max_batch, max_wait=self.max_wait,
            fixed=self.fixed_wait, expected=expected,
        )  # fmt: skip
        if isinstance(result, BaseException):
            raise result
        return result

    def after(self, prepare: Callable[[], Sequence[Any]]) -> Any:
        """``self(prepare())``, the lane knowing while ``prepare`` runs (on this thread) that
        these rows are coming: a leader that finds the model idle waits for them (up to
        ``max_wait``) instead of running alone."""
        self._queue.expect(1)
        try:
            rows = prepare()
        except BaseException:
            self._queue.expect(-1)
            raise
        return self(rows, expected=True)

    def waiting(self) -> int:
        """How many calls are queued for the next batch."""
        return len(self._queue.pending)

    def _run_batch(self, leader: Entry, batch: list[Entry]) -> list[Any]:
        """Each call's slice of one run over the batch's rows; when that raises, each
        call's own run (or the exception it raised)."""
        try:
            outputs = self._outputs([r for e in batch for r in e.items])
        except Exception as exc:
            if len(batch) == 1:
                return [exc]
            results: list[Any] = []
            for e in batch:  # one bad input must not fail the other calls: each runs alone
                try:
                    results.append(self._outputs(e.items))
                except Exception as own:
                    results.append(own)
            return results
        return slices(outputs, batch)

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

    def after(
        self,
        name: str,
        run: Callable[[list[Any]], Sequence[Any]],
        prepare: Callable[[], Sequence[Any]],
        *,
        max_batch: int = 64,
        key: Callable[[Any], Hashable] | None = None,
    ) -> Any:
        """``run`` over the rows ``prepare()`` makes on this thread, in the lane ``name``'s
        batch (:meth:`Lane.after`); ``run(prepare())`` when batching across calls is off."""
        lane = self.get(name, run, max_batch=max_batch, key=key)
        return lane.after(prepare) if isinstance(lane, Lane) else lane(prepare())

    def stats(self) -> dict[str, GatherStats]:
        with self._lock:
            return {name: lane.stats for name, lane in self._lanes.items()}
