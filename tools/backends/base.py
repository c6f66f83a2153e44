"""What every model backend provides to the pool.

A backend class knows how to find its weights without the network (:meth:`locate`), how
big it will be (:meth:`estimate_bytes`), and how to load itself onto a device
(:meth:`load`); an instance is a loaded model with batched methods for the tools.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import threading
from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import torch

from ..cache import ByteLRU
from ..devices import module_bytes
from ..errors import ModelError
from ..settings import ModelSettings, ModelSpec
from ..types import detached
from ..waiting import DEFAULT_MAX_WAIT_MS
from .coalesce import Lanes
from .threads import ModelThread


@dataclass(frozen=True)
class Placement:
    """Where a model goes: a device name and the dtype for its weights."""

    device: str
    dtype: torch.dtype


@dataclass(frozen=True)
class Located:
    """Whether a model's weights are on this machine, where, and what to do if not."""

    present: bool
    where: str = ""
    hint: str = ""


class Backend:
    """A loaded model. Subclasses set ``family`` and implement the classmethods."""

    family: ClassVar[str] = ""
    offline_capable: ClassVar[bool] = False  # weights ship with a package we depend on
    # Methods that work item by item over their first N arguments (equal-length sequences),
    # so calls from many clients can be concatenated into one (see tools.deployments).
    batch_methods: ClassVar[Mapping[str, int]] = {}
    # Methods returning a tuple whose element ``index`` is a stateful object of class ``cls``
    # (served remotely by replaying the call; see tools.remote): name -> (index, cls).
    remote_sessions: ClassVar[Mapping[str, tuple[int, type]]] = {}
    # Forwards run on a thread of the model's own (tools.backends.threads); the pool sets
    # it per instance from ``models.model_threads`` (by default: on for GPU models only).
    threaded: bool = True
    _thread_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, spec: ModelSpec, placement: Placement) -> None:
        self.spec = spec
        self.placement = placement
        self.cache: ByteLRU | None = None  # the pool's per-image feature cache, set on load
        self.stats: Counter[str] = Counter()  # e.g. stats["image_encoder"] forward passes

    def cached(self, key: Hashable, compute: Callable[[], Any]) -> tuple[Any, bool]:
        """``compute()`` through the shared feature cache (keyed with this model's identity);
        returns (value, was_cached). The caller gets its own copy of what is mutable in the
        value (lists, dicts, Object extras: see ``tools.types.detached``), so no run can change
        what the cache hands the next one; tensors and arrays are shared."""
        if self.cache is None:
            return compute(), False
        value, hit = self.cache.get_or_compute((self.spec.key(), key), compute)
        return detached(value), hit

    @property
    def device(self) -> str:
        return self.placement.device

    @property
    def dtype(self) -> torch.dtype:
        return self.placement.dtype

    def cached_many(
        self, keys: Sequence[Hashable], compute: Callable[[list[int]], list[Any]]
    ) -> list[Any]:
        """Values for ``keys`` through the feature cache; ``compute(indices)`` runs once, on
        the positions of every miss (duplicates computed once), so they share one batch."""
        results: list[Any] = [None] * len(keys)
        todo: list[int] = []
        for i, key in enumerate(keys):
            value = self.cache.get((self.spec.key(), key)) if self.cache is not None else None
            if value is None:
                todo.append(i)
            else:
                results[i] = value
        if todo:
            unique: dict[Hashable, int] = {}
            for i in todo:
                unique.setdefault(keys[i], i)
            firsts = list(unique.values())
            for i, value in zip(firsts, compute(firsts), strict=True):
                results[i] = value
                if self.cache is not None:
                    self.cache.put((self.spec.key(), keys[i]), value)
            for i in todo:
                results[i] = results[unique[keys[i]]]
        if self.cache is None:
            return results
        return [detached(v) for v in results]  # each caller's own copy, as in cached()

    # --- class-level: finding and loading ---------------------------------------------------

    @classmethod
    def locate(cls, spec: ModelSpec, settings: ModelSettings) -> Located:
        raise NotImplementedError

    @classmethod
    def load(cls, spec: ModelSpec, placement: Placement, settings: ModelSettings) -> Backend:
        raise NotImplementedError

    @classmethod
    def located(cls, spec: ModelSpec, settings: ModelSettings, missing: str) -> Located:
        """:meth:`locate`, raising :class:`ModelError` ("``missing``: what to do") when the
        weights are not here (for ``load``)."""
        found = cls.locate(spec, settings)
        if not found.present:
            raise ModelError(f"{missing}: {found.hint}")
        return found

    @classmethod
    def estimate_bytes(cls, spec: ModelSpec, settings: ModelSettings) -> int | None:
        """Memory the loaded model will take, if it can be told before loading."""
        return None

    @classmethod
    def tiny_spec(cls, directory: Path) -> ModelSpec:
        """Write a tiny random-weight model of this family into ``directory``, in the same
        on-disk format as the real weights, and return a spec that loads it through the
        real loader. For tests and benchmarks only; never a default."""
        raise NotImplementedError(f"{cls.family} has no tiny test model")

    # --- instance-level -------------------------------------------------------------------

    def model_thread(self) -> ModelThread | None:
        """The thread this model's forwards run on (started on first use); None when
        ``threaded`` is off."""
        if not self.threaded:
            return None
        owner = getattr(self, "_model_thread", None)
        if owner is None:
            with Backend._thread_lock:
                owner = getattr(self, "_model_thread", None)
                if owner is None:
                    owner = ModelThread(f"vischain-model-{self.family or type(self).__name__}")
                    self._model_thread = owner
        return owner

    @property
    def lanes(self) -> Lanes:
        """This model's batching lanes (:mod:`tools.backends.coalesce`): concurrent calls of
        one step share a batch. The spec's options ``coalesce`` (default true) and
        ``max_wait_ms`` (default 5) configure them."""
        lanes = getattr(self, "_lanes", None)
        if lanes is None:
            with Backend._thread_lock:
                lanes = getattr(self, "_lanes", None)
                if lanes is None:
                    options = self.spec.options if self.spec is not None else {}
                    lanes = Lanes(
                        max_wait_ms=float(options.get("max_wait_ms", DEFAULT_MAX_WAIT_MS)),
                        enabled=bool(options.get("coalesce", True)),
                    )
                    self._lanes = lanes
        return lanes

    def stop_model_thread(self) -> None:
        """End the model's thread after its queued calls (the pool does this on eviction)."""
        owner = getattr(self, "_model_thread", None)
        if owner is not None:
            owner.stop()

    def modules(self) -> list[Any]:
        """The torch modules that hold this model's weights (for memory accounting)."""
        return []

    def memory_bytes(self) -> int:
        return sum(module_bytes(m) for m in self.modules())

    def unload(self) -> None:
        """Release resources beyond memory (servers, files); the pool drops the reference."""

    def describe(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "model": self.spec.label(),
            "device": self.device,
            "dtype": str(self.dtype).replace("torch.", ""),
            "memory_mb": round(self.memory_bytes() / 2**20, 1),
        }


def token_budgets(max_new_tokens: int | Sequence[int], n: int) -> list[int]:
    """One generation budget per row from one for all or one per row (each at least 1)."""
    if isinstance(max_new_tokens, int):
        budgets = [max_new_tokens] * n
    else:
        budgets = [int(b) for b in max_new_tokens]
        if len(budgets) != n:
            raise ValueError(f"{len(budgets)} token budgets for {n} prompts")
    if any(b < 1 for b in budgets):
        raise ValueError("max_new_tokens must be at least 1")
    return budgets


# --- helpers for locating Hugging Face and file weights -------------------------------------


def is_loopback(url: str) -> bool:
    """Whether ``url`` points at this machine (its clients then ignore proxy settings)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def package_dir(module: str) -> Path | None:
    """Where an installed package lives, found without importing it."""
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    return Path(next(iter(found.submodule_search_locations)))


def hf_locate(
    model: str, *, revision: str | None = None, files: tuple[str, ...] = ("config.json",)
) -> Located:
    """A model id or local directory, found without the network (HF cache or a path)."""
    path = Path(model).expanduser()
    if path.exists():
        missing = [f for f in files if not (path / f).exists()] if path.is_dir() else []
        if missing:
            return Located(False, str(path), f"{path} lacks {', '.join(missing)}")
        return Located(True, str(path))
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers always brings it
        return Located(False, hint="huggingface_hub is not installed")
    for f in files:
        try:
            found = try_to_load_from_cache(model, f, revision=revision)
        except ValueError:  # not a repo id either (HFValidationError): a path that is missing
            return Located(False, str(path), f"{model}: no such directory or Hugging Face id")
        if not isinstance(found, str):
            return Located(
                False,
                hint=f"'{model}' is not in the Hugging Face cache; download it where a hub is "
                f"reachable (huggingface-cli download {model}) or give a local directory",
            )
    return Located(True, f"hf-cache:{model}")


def file_locate(path: str | None, what: str) -> Located:
    if not path:
        return Located(False, hint=f"set the path of the {what}")
    p = Path(os.path.expandvars(path)).expanduser()
    if p.is_file():
        return Located(True, str(p))
    return Located(False, str(p), f"{what} not found at {p}")


def dir_bytes(
    path: str | Path, suffixes: tuple[str, ...] = (".safetensors", ".bin", ".pt", ".pth")
) -> int:
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.suffix in suffixes)
    return 0
