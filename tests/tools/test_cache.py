"""The byte-bounded LRU used for per-image features."""

from __future__ import annotations

import threading
import time

import numpy as np
import torch

from tools.cache import ByteLRU, nbytes


def test_evicts_least_recently_used_by_bytes() -> None:
    cache = ByteLRU(max_bytes=3000)
    for k in "abc":
        cache.put(k, np.zeros(1000, np.uint8))
    assert cache.get("a") is not None  # a becomes most recent
    cache.put("d", np.zeros(1000, np.uint8))
    assert "b" not in cache and "a" in cache and "d" in cache
    assert cache.stats.bytes <= 3000 and cache.stats.evictions == 1


def test_oversized_values_are_not_kept() -> None:
    cache = ByteLRU(max_bytes=10)
    cache.put("big", np.zeros(100, np.uint8))
    assert "big" not in cache and len(cache) == 0


def test_sizes() -> None:
    assert nbytes(torch.zeros(10, dtype=torch.float32)) == 40
    assert nbytes({"a": np.zeros(8, np.float64)}) >= 64


def test_concurrent_callers_compute_once() -> None:
    cache = ByteLRU(max_bytes=10_000)
    calls = []

    def compute() -> int:
        calls.append(1)
        time.sleep(0.05)
        return 42

    results = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get_or_compute("k", compute)))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert sorted(r[1] for r in results) == [False, True, True, True]
    assert cache.stats.hits == 3
