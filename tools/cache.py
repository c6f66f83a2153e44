"""A thread-safe LRU cache bounded in bytes, for per-image features (CLIP embeddings, SAM
image embeddings, VLM vision features) keyed by content hash."""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


def nbytes(value: Any) -> int:
    """Approximate memory of a cached value (tensors and arrays counted exactly)."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, dict):
        return sum(nbytes(v) for v in value.values()) + 64
    if isinstance(value, (list, tuple)):
        return sum(nbytes(v) for v in value) + 64
    own = getattr(value, "nbytes", None)
    if isinstance(own, int):
        return own
    items = getattr(value, "items", None)
    if isinstance(items, tuple):  # ObjectList / PointList: their masks
        return sum(nbytes(getattr(i, "mask", None)) for i in items) + 64 * len(items) + 64
    return sys.getsizeof(value)


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    bytes: int = 0
    entries: int = 0


class ByteLRU:
    """Least-recently-used eviction once the cached values exceed ``max_bytes``."""

    def __init__(self, max_bytes: int, name: str = "cache") -> None:
        self.max_bytes = max_bytes
        self.name = name
        self._data: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._pending: dict[Hashable, threading.Lock] = {}
        self.stats = CacheStats()

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            item = self._data.get(key)
            if item is None:
                self.stats.misses += 1
                return None
            self._data.move_to_end(key)
            self.stats.hits += 1
            return item[0]

    def put(self, key: Hashable, value: Any, size: int | None = None) -> None:
        size = nbytes(value) if size is None else size
        with self._lock:
            if key in self._data:
                self.stats.bytes -= self._data.pop(key)[1]
            if size > self.max_bytes:
                self._sync()
                return  # larger than the whole cache: do not keep it
            self._data[key] = (value, size)
            self.stats.bytes += size
            while self.stats.bytes > self.max_bytes and self._data:
                _, (_, evicted) = self._data.popitem(last=False)
                self.stats.bytes -= evicted
                self.stats.evictions += 1
            self._sync()

    def get_or_compute(self, key: Hashable, compute: Callable[[], Any]) -> tuple[Any, bool]:
        """The cached value, or ``compute()`` stored; concurrent callers for one key compute
        it once. Returns (value, was_cached)."""
        value = self.get(key)
        if value is not None:
            return value, True
        with self._lock:
            lock = self._pending.setdefault(key, threading.Lock())
        with lock:
            with self._lock:
                item = self._data.get(key)
            if item is not None:
                with self._lock:
                    self.stats.hits += 1
                    self.stats.misses -= 1
                return item[0], True
            value = compute()
            self.put(key, value)
        with self._lock:
            self._pending.pop(key, None)
        return value, False

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._data

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.stats.bytes = 0
            self._sync()

    def _sync(self) -> None:
        self.stats.entries = len(self._data)
