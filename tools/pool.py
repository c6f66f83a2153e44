"""The model pool: one per process; every tool that names a model shares one loaded copy.

Tools ask for a *role*; the pool resolves it through the profile to a :class:`ModelSpec`,
loads that model on first use (once, even when many threads ask at the same time), places
it on the device with the most free memory within its budget, and evicts the least recently
used models of that device when a new one would not fit. It also owns the per-image
feature cache (bounded in bytes) that backends use for CLIP features and SAM embeddings.

Loading is off the request path: every load runs on the pool's loader thread (one, so
loads do not fight over memory and disk). A request for a model being loaded waits on that
load's future; requests for loaded models go on meanwhile. :meth:`prefetch` starts the loads
a program will need as soon as it is checked (the orchestrator does so), so they overlap
the steps that run first. A failed load raises :class:`ModelLoadError` naming the role in
each caller that needed it (the executor adds the step); nothing else is lost, and the next
request tries again.

With ``settings.serve`` set, nothing is loaded here: each role resolves to the Ray Serve
deployment that serves it (:mod:`tools.remote`), and the pool hands out stand-ins with the
same methods.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from .backends import Backend, Placement, backend_class
from .backends.threads import ModelThread
from .cache import ByteLRU
from .devices import DeviceInfo, configure_attention, dtype_for, dtype_size, list_devices
from .errors import ModelError, ModelLoadError, NoBackendError
from .profiles import roles_for
from .progress import task
from .settings import ModelSettings, ModelSpec

if TYPE_CHECKING:
    from .remote import RemoteModels

log = logging.getLogger("vischain.models")


@dataclass
class _Entry:
    backend: Backend
    bytes: int
    loaded_at: float
    seconds: float
    roles: set[str] = field(default_factory=set)


class ModelPool:
    """Loads, shares, places and evicts models; thread-safe."""

    def __init__(self, settings: ModelSettings | None = None) -> None:
        self.settings = settings or ModelSettings()
        self.features = ByteLRU(self.settings.cache_mb * 2**20, "features")
        self.load_counts: Counter[str] = Counter()
        self._lock = threading.RLock()
        self._loading: dict[str, Future[Backend]] = {}  # loads queued or running, by key
        self._loader: ModelThread | None = None  # started on the first load
        self._loaded: OrderedDict[str, _Entry] = OrderedDict()  # LRU order: oldest first
        self._provided: dict[str, Backend] = {}
        self._resolved: dict[str, tuple[ModelSpec | None, str | None]] = {}
        self.remote: RemoteModels | None = None
        if self.settings.serve is not None:  # the deployments hold the models, not this pool
            from .remote import RemoteModels

            self.remote = RemoteModels(self.settings.serve)
        self._roles = roles_for(self.settings) if self.remote is None else {}

    # --- roles ---------------------------------------------------------------------------

    def provide(self, role: str, backend: Backend) -> None:
        """Serve ``role`` with an object the caller built (e.g. a model already in memory)."""
        with self._lock:
            self._provided[role] = backend
            self._resolved.pop(role, None)

    @contextmanager
    def providing(self, role: str, backend: Backend) -> Iterator[Backend]:
        """Serve ``role`` with ``backend`` inside the ``with`` block only; afterwards
        whatever served it before (a provided object or the configured model) serves it
        again — even when the block raised."""
        with self._lock:
            before = self._provided.get(role)
            self.provide(role, backend)
        try:
            yield backend
        finally:
            with self._lock:
                if before is None:
                    self._provided.pop(role, None)
                else:
                    self._provided[role] = before
                self._resolved.pop(role, None)

    def roles(self) -> list[str]:
        served = self.remote.roles() if self.remote is not None else []
        return sorted(set(self._roles) | set(self._provided) | set(served))

    def candidates(self, role: str) -> list[ModelSpec]:
        return list(self._roles.get(role, []))

    def resolve(self, role: str) -> tuple[ModelSpec | None, str | None]:
        """The spec that serves ``role`` (first candidate whose weights are present), or
        None and the reason none is."""
        with self._lock:
            if role in self._provided:
                return self._provided[role].spec, None
            if role in self._resolved:
                return self._resolved[role]
        if self.remote is not None:
            chosen = self.remote.resolve(role, self.settings.candidates(role))
            with self._lock:
                self._resolved[role] = chosen
            return chosen
        reasons = []
        chosen: tuple[ModelSpec | None, str | None] = (None, None)
        for spec in self._roles.get(role, []):
            try:
                located = backend_class(spec.family).locate(spec, self.settings)
            except Exception as exc:  # a broken optional dependency makes only this one missing
                reasons.append(f"{spec.label()}: {type(exc).__name__}: {exc}")
                continue
            if located.present:
                chosen = (spec, None)
                break
            reasons.append(f"{spec.label()}: {located.hint or 'weights not found'}")
        if chosen[0] is None:
            chosen = (None, "; ".join(reasons) or f"no model is configured for role '{role}'")
        with self._lock:
            self._resolved[role] = chosen
        return chosen

    def unavailable(self, role: str) -> str | None:
        return self.resolve(role)[1]

    def on_device(self, device: str) -> DevicePool:
        """This pool's roles served by copies of their models on ``device`` (the
        out-of-memory fallback moves a tool's calls to the CPU this way)."""
        return DevicePool(self, device)

    def get(self, role: str) -> Any:
        with self._lock:
            if role in self._provided:
                return self._provided[role]
        spec, reason = self.resolve(role)
        if spec is None:
            raise NoBackendError(f"no '{role}' model available: {reason}")
        if self.remote is not None:
            return self.remote.backend(role, spec)
        backend = self._load_for(role, spec)
        with self._lock:
            if spec.key() in self._loaded:
                self._loaded[spec.key()].roles.add(role)
        return backend

    # --- loading ---------------------------------------------------------------------------

    def load(self, spec: ModelSpec, *, device: str | None = None) -> Backend:
        """The loaded model for ``spec``, loading it once on first use (on ``device`` when
        given: a copy of its own beside the one placed automatically). The load runs on the
        loader thread; this waits for it."""
        return self.loading(spec, device=device).result()

    def loading(self, spec: ModelSpec, *, device: str | None = None) -> Future[Backend]:
        """A future of the loaded model for ``spec``: done at once when it is loaded, else
        the load queued or running on the loader thread (one per model, however many ask)."""
        key = spec.key()
        if device is not None:
            spec = spec.model_copy(update={"device": device})
            key = f"{key}@{device}"
        with self._lock:
            entry = self._loaded.get(key)
            if entry is not None:
                self._loaded.move_to_end(key)
                done: Future[Backend] = Future()
                done.set_result(entry.backend)
                return done
            future = self._loading.get(key)
            if future is not None:
                return future
            if self._loader is None:
                self._loader = ModelThread("vischain-loader")
            future = self._loader.submit(lambda: self._load_once(spec, key))
            self._loading[key] = future
        return future

    def _load_once(self, spec: ModelSpec, key: str) -> Backend:
        try:
            with self._lock:
                entry = self._loaded.get(key)
            return entry.backend if entry is not None else self._load(spec, key)
        finally:
            with self._lock:
                self._loading.pop(key, None)  # a failed load is tried again on the next request

    def _load_for(self, role: str, spec: ModelSpec) -> Backend:
        """:meth:`load` for ``role``, a failure raised as this caller's own typed error."""
        try:
            return self.load(spec)
        except NoBackendError:
            raise
        except Exception as exc:
            error = ModelLoadError(
                f"the '{role}' model ({spec.label()}) could not be loaded: "
                f"{exc.message if isinstance(exc, ModelError) else f'{type(exc).__name__}: {exc}'}",
                role=role,
            )
            raise error from exc

    def prefetch(self, roles: Iterable[str]) -> dict[str, Future[Backend]]:
        """Start loading the models of ``roles`` on the loader thread and return at once
        (roles already loaded, provided, served remotely or without a model are skipped).
        A failed load surfaces when a step asks for its role."""
        started: dict[str, Future[Backend]] = {}
        if self.remote is not None:
            return started
        for role in dict.fromkeys(roles):
            with self._lock:
                if role in self._provided:
                    continue
            spec, _ = self.resolve(role)
            if spec is None or self.is_loaded(spec):
                continue
            started[role] = self.loading(spec)
        return started

    def _load(self, spec: ModelSpec, key: str) -> Backend:
        cls = backend_class(spec.family)
        estimate = cls.estimate_bytes(spec, self.settings) or 0
        placement = self._place(spec, estimate)
        log.info("loading %s on %s (%s)…", spec.label(), placement.device, placement.dtype)
        configure_attention(placement.device, cudnn=self.settings.cudnn_attention)
        t0 = time.perf_counter()
        try:
            with task(
                f"loading {spec.label()} on {placement.device}", enabled=self.settings.progress
            ):
                backend = cls.load(spec, placement, self.settings)
        except NoBackendError:
            raise
        except Exception as exc:
            raise ModelError(f"could not load {spec.label()}: {type(exc).__name__}: {exc}") from exc
        seconds = time.perf_counter() - t0
        backend.cache = self.features
        threads = self.settings.model_threads
        backend.threaded = threads if threads is not None else backend.device != "cpu"
        size = backend.memory_bytes() or estimate
        with self._lock:
            self._loaded[key] = _Entry(backend, size, time.time(), seconds)
            self.load_counts[key] += 1
            self._fit(backend.device, keep=key)
        log.info("loaded %s in %.1f s (%.0f MB)", spec.label(), seconds, size / 2**20)
        return backend

    def _place(self, spec: ModelSpec, estimate: int) -> Placement:
        if spec.device != "auto":
            return Placement(spec.device, dtype_for(spec.device, spec.dtype))
        devices = list_devices(self.settings.devices)
        for dev in devices:
            need = estimate * self._scale(dev, spec)
            if self.used(dev.name) + need <= self.budget(dev):
                return Placement(dev.name, dtype_for(dev.name, spec.dtype))
        best = devices[0]
        with self._lock:
            self._evict_for(best, estimate * self._scale(best, spec))
        return Placement(best.name, dtype_for(best.name, spec.dtype))

    def _scale(self, dev: DeviceInfo, spec: ModelSpec) -> float:
        """Estimates are of fp32 weights; half precision halves them."""
        return dtype_size(dtype_for(dev.name, spec.dtype)) / 4

    def budget(self, dev: DeviceInfo) -> float:
        configured = self.settings.memory_budget_gb.get(dev.name)
        if configured is None:
            configured = self.settings.memory_budget_gb.get(dev.kind)
        if configured is not None:
            return configured * 2**30
        return dev.total_bytes * self.settings.memory_fraction

    def used(self, device: str) -> int:
        with self._lock:
            return sum(e.bytes for e in self._loaded.values() if e.backend.device == device)

    def _fit(self, device: str, keep: str) -> None:
        dev = next((d for d in list_devices("auto") if d.name == device), None)
        if dev is None:
            return
        budget = self.budget(dev)
        for key in list(self._loaded):
            if self.used(device) <= budget:
                break
            if key != keep and self._loaded[key].backend.device == device:
                self._drop(key)

    def _evict_for(self, dev: DeviceInfo, need: float) -> None:
        budget = self.budget(dev)
        for key in list(self._loaded):
            if self.used(dev.name) + need <= budget:
                break
            if self._loaded[key].backend.device == dev.name:
                self._drop(key)

    def _drop(self, key: str) -> None:
        entry = self._loaded.pop(key)
        log.info("evicting %s from %s (%.0f MB)", entry.backend.spec.label(), entry.backend.device,
                 entry.bytes / 2**20)  # fmt: skip
        try:
            entry.backend.stop_model_thread()
            entry.backend.unload()
        finally:
            del entry
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def evict(self, key_or_role: str) -> bool:
        with self._lock:
            key = key_or_role
            if key not in self._loaded:
                spec, _ = self._resolved.get(key_or_role, (None, None))
                key = spec.key() if spec is not None else key
            if key in self._loaded:
                self._drop(key)
                return True
            return False

    def clear(self) -> None:
        with self._lock:
            for key in list(self._loaded):
                self._drop(key)
            self.features.clear()

    # --- inspection ------------------------------------------------------------------------

    def loaded(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {
                    **e.backend.describe(),
                    "key": k,
                    "roles": sorted(e.roles),
                    "load_seconds": round(e.seconds, 2),
                }
                for k, e in self._loaded.items()
            ]

    def is_loaded(self, spec: ModelSpec) -> bool:
        with self._lock:
            return spec.key() in self._loaded


class DevicePool:
    """A view of a :class:`ModelPool` that loads every role's model on one device."""

    def __init__(self, pool: ModelPool, device: str) -> None:
        self.pool = pool
        self.device = device

    def resolve(self, role: str) -> tuple[ModelSpec | None, str | None]:
        return self.pool.resolve(role)

    def unavailable(self, role: str) -> str | None:
        return self.pool.unavailable(role)

    def on_device(self, device: str) -> DevicePool:
        return self.pool.on_device(device)

    def get(self, role: str) -> Any:
        with self.pool._lock:
            provided = self.pool._provided.get(role)
        if provided is not None:
            if provided.device == self.device:
                return provided
            raise NoBackendError(
                f"the '{role}' model was provided on {provided.device} and cannot move to "
                f"{self.device}"
            )
        spec, reason = self.pool.resolve(role)
        if spec is None:
            raise NoBackendError(f"no '{role}' model available: {reason}")
        return self.pool.load(spec, device=self.device)


_DEFAULT: ModelPool | None = None
_DEFAULT_LOCK = threading.Lock()


def default_pool(settings: ModelSettings | None = None) -> ModelPool:
    """The process-wide pool (created on first use)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = ModelPool(settings)
        return _DEFAULT
