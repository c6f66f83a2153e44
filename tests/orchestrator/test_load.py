"""Load: hundreds of concurrent runs on one orchestrator. No deadlock, no exception, no
crossed result; thread count and memory stay bounded throughout (asserted on counts,
never on time)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from orchestrator import Config, Orchestrator
from tools import Registry, ToolContext, tool
from tools.builtin.logic import eval_, result
from tools.types import Image


@tool
def measure(image: Image) -> int:
    """width * 1000 + height of the image (so the answer tells which image it saw).

    Args:
        image: any image
    """
    return image.width * 1000 + image.height


@measure.batch
def _measure_batch(ctx: ToolContext, calls: list[dict[str, Any]]) -> list[Any]:
    return [c["image"].width * 1000 + c["image"].height for c in calls]


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextmanager
def sampled() -> Iterator[dict[str, int]]:
    """Peak thread count and resident memory while the body runs."""
    peak = {"threads": threading.active_count(), "rss": _rss()}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.005):
            peak["threads"] = max(peak["threads"], threading.active_count())
            peak["rss"] = max(peak["rss"], _rss())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        stop.set()
        sampler.join()


@pytest.fixture
def orch(tmp_path: Path) -> Iterator[Orchestrator]:
    made = Orchestrator(
        Config(models={"profile": "offline", "cache_dir": tmp_path}, plugins=False),
        registry=Registry([measure, eval_, result]),
    )
    yield made
    made.close()


PROGRAM = "M=Measure(image=IMAGE)\nA=Eval('{M} + 1')\nRESULT=A"


def _image(i: int) -> np.ndarray:
    return np.full((10 + i % 37, 10 + i // 37, 3), i % 251, dtype=np.uint8)  # (h, w)


def test_two_hundred_concurrent_executes_neither_cross_nor_deadlock(orch: Orchestrator) -> None:
    n = 200
    results: list[Any] = [None] * n
    orch.execute(PROGRAM, image=_image(0))  # warm up: imports and caches
    base = threading.active_count()
    base_rss = _rss()
    start = threading.Barrier(n)

    def go(i: int) -> None:
        start.wait()
        results[i] = orch.execute(PROGRAM, image=_image(i))

    with sampled() as peak:
        threads = [threading.Thread(target=go, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for i, r in enumerate(results):
        h, w = 10 + i % 37, 10 + i // 37
        assert r.ok, r.error
        assert r.output == w * 1000 + h + 1  # its own image's answer, never another's
    pool = orch.workers
    assert peak["threads"] <= base + n + pool.max_workers + pool.max_parked + pool.max_stuck + 2
    assert peak["rss"] - base_rss < 512 * 2**20
    assert orch.executor.batcher.batches("Measure") < n  # calls from programs coalesced


def test_map_over_500_items_with_failures_bounded(orch: Orchestrator, tmp_path: Path) -> None:
    n = 500
    items = [
        "M=Measure(image=IMAGE)\nA=Eval('{M} / 0')" if i % 10 == 0 else PROGRAM for i in range(n)
    ]
    images = [_image(i) for i in range(n)]
    orch.map(items[:2], images[:2], concurrency=2, progress=False)  # warm up
    base = threading.active_count()
    base_rss = _rss()
    with sampled() as peak:
        results = orch.map(items, images, concurrency=64, mode="execute", progress=False)
    assert len(results) == n
    for i, r in enumerate(results):
        h, w = 10 + i % 37, 10 + i // 37
        if i % 10 == 0:
            assert not r.ok and r.error.code == "eval-error" and r.error.step == "A"
        else:
            assert r.ok and r.output == w * 1000 + h + 1
    pool = orch.workers
    assert peak["threads"] <= base + 64 + pool.max_workers + pool.max_parked + pool.max_stuck + 2
    assert peak["rss"] - base_rss < 512 * 2**20
