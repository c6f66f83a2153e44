"""Model roles served by Ray Serve: the replica side (the client side is :mod:`tools.remote`).

One deployment per role, built from the same :class:`ModelSpec` candidates and profile a
local pool would use. A replica holds a :class:`~tools.pool.ModelPool` of its own (its
placement, memory budget and per-image feature cache keyed by content hash) and answers
:class:`~tools.remote.Call` requests:

1. Routing: the call's ``model`` (a spec key) is Serve's multiplexed model id, so calls
   go to a replica that already holds that checkpoint; ``@serve.multiplexed`` keeps at most
   ``max_models_per_replica`` checkpoints of the role loaded and unloads the least recently
   used one (e.g. two CLIP variants behind one role).
2. Batching: ``@serve.batch`` collects concurrent calls from every client (max batch size and
   wait from the role's tools' ``max_batch`` / ``max_wait_ms`` options). Within a batch,
   calls to the same model and method whose other arguments are equal, for methods a backend
   declares in ``batch_methods`` (name → how many leading arguments are per-item
   sequences), are concatenated into one backend call and its result split back; the rest run
   one by one. A failing group fails only its own calls.
3. Health: ``check_health`` fails once a model error left the replica unusable (out of
   memory, a CUDA fault), so Serve replaces it.

Resources: ``ray_actor_options`` come from the pool's budget — a fraction of one GPU sized
from the model's memory estimate where the cluster has GPUs, and that memory reserved.
"""

from __future__ import annotations

import asyncio
import math
import os
import pickle
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .backends import backend_class
from .cache import ByteLRU
from .errors import ModelError, NoBackendError
from .pool import ModelPool
from .profiles import roles_for
from .remote import Call, ImageRef, Outcome, deployment_name, refs_to_images
from .settings import ModelSettings, ModelSpec
from .waiting import DEFAULT_MAX_WAIT_MS

DEFAULT_MAX_MODELS = 2  # checkpoints of one role a replica keeps loaded
BATCH_RECORDS = 1000  # recent batches a replica remembers (for stats)
GPU_STEP = 0.05  # fractional GPUs are requested in these steps
FATAL = ("out of memory", "CUDA error", "device-side assert")


class RoleServer:
    """The body of one role's deployment (wrapped by :func:`role_deployment`)."""

    def __init__(
        self,
        role: str,
        specs: Sequence[ModelSpec],
        settings: ModelSettings,
        max_batch: int,
        max_wait_ms: float,
    ) -> None:
        self.role = role
        # the replica loads only the specs it is given: no profile of its own to resolve
        self.settings = settings.model_copy(
            update={"serve": None, "progress": False, "profile": "offline", "roles": {}}
        )
        self.pool = ModelPool(self.settings)
        self.offered = {s.key(): s for s in specs}
        self.default = next(iter(self.offered), None)
        self.images = ByteLRU(256 * 2**20, "images")
        self.batches: deque[dict[str, Any]] = deque(maxlen=BATCH_RECORDS)
        self.calls = 0
        self.pending = 0  # calls received and not yet answered
        self.broken: str | None = None
        self._lock = threading.Lock()
        batched = self._run  # the @serve.batch wrapper in the deployment class
        if hasattr(batched, "set_max_batch_size"):
            batched.set_max_batch_size(max_batch)
            batched.set_batch_wait_timeout_s(max_wait_ms / 1000.0)

    # --- requests ----------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """The checkpoints this deployment offers (default first), or why it has none."""
        reason = None if self.offered else f"no model for '{self.role}' is present on the server"
        return {"role": self.role, "specs": list(self.offered.values()), "reason": reason}

    async def call(self, call: Call) -> Outcome:
        """Answer one call (batched with concurrent ones)."""
        with self._lock:
            self.pending += 1
        try:
            if call.batch:
                return await self._run(call)
            try:
                held = await self._model(call.model)
            except Exception as exc:
                return Outcome(error=exc)
            return await asyncio.to_thread(self._direct, held.backend, call)
        finally:
            with self._lock:
                self.pending -= 1

    def stats(self) -> dict[str, Any]:
        """Model loads per spec key, recent batch records, calls answered, health."""
        with self._lock:
            return {
                "role": self.role,
                "loads": dict(self.pool.load_counts),
                "loaded": [e["key"] for e in self.pool.loaded()],
                "memory_mb": sum(e["memory_mb"] for e in self.pool.loaded()),
                "batches": list(self.batches),
                "calls": self.calls,
                "pending": self.pending,
                "pid": os.getpid(),
                "broken": self.broken,
            }

    def check_health(self) -> None:
        """Serve calls this periodically; raising makes it replace the replica."""
        if self.broken:
            raise RuntimeError(f"replica for '{self.role}' is unusable: {self.broken}")

    # --- models ------------------------------------------------------------------------------

    async def model(self, key: str) -> Any:
        """The loaded backend for spec ``key`` (multiplexed: see :func:`role_deployment`)."""
        spec = self.offered.get(key or self.default or "")
        if spec is None:
            raise NoBackendError(f"the '{self.role}' deployment does not serve model {key!r}")
        backend = await asyncio.to_thread(self.pool.load, spec)
        return _Held(backend, self.pool, spec.key())

    # --- batches -----------------------------------------------------------------------------

    async def _run(self, calls: list[Call]) -> list[Outcome]:
        with self._lock:
            self.calls += len(calls)
            self.batches.append(
                {
                    "size": len(calls),
                    "callers": sorted({c.caller for c in calls}),
                    "at": time.time(),
                }
            )
        outcomes: list[Outcome | None] = [None] * len(calls)
        for key, members in _groups(calls):
            try:
                held = await self._model(key)
                values = await asyncio.to_thread(self._answer, held.backend, calls, members)
            except Exception as exc:
                self._note_failure(exc)
                values = [Outcome(error=exc)] * len(members)
            for i, value in zip(members, values, strict=True):
                outcomes[i] = value
        return [o if o is not None else Outcome(error=ModelError("no result")) for o in outcomes]

    async def _model(self, key: str) -> _Held:
        return await self.model(key)

    def _answer(self, backend: Any, calls: list[Call], members: list[int]) -> list[Outcome]:
        """Outcomes for ``members`` (calls to one model): concatenated where the backend can
        batch the method, else one by one."""
        out: dict[int, Outcome] = {}
        merged: dict[bytes, list[int]] = {}
        for i in members:
            steps = self._images(calls[i].steps)
            signature = _mergeable(backend, steps)
            if signature is None:
                out[i] = self._replay(backend, steps, calls[i].session)
            else:
                merged.setdefault(signature, []).append(i)
        for group in merged.values():
            steps = [self._images(calls[i].steps) for i in group]
            out.update(zip(group, self._merged(backend, steps), strict=True))
        return [out[i] for i in members]

    def _direct(self, backend: Any, call: Call) -> Outcome:
        try:
            steps = self._images(call.steps)
        except Exception as exc:
            return Outcome(error=exc)
        return self._replay(backend, steps, call.session)

    def _replay(self, backend: Any, steps: Sequence[tuple], session: int | None) -> Outcome:
        try:
            value = replay(backend, steps)
            if session is not None:
                value = tuple(None if n == session else v for n, v in enumerate(value))
            return Outcome(value=value)
        except Exception as exc:
            self._note_failure(exc)
            return Outcome(error=exc)

    def _merged(self, backend: Any, steps: list[Sequence[tuple]]) -> list[Outcome]:
        """One backend call over the concatenated per-item arguments of single-call paths."""
        _, name, _, kwargs = steps[0][0]
        aligned = backend.batch_methods[name]
        sizes = [len(s[0][2][0]) for s in steps]
        args = tuple(
            [item for s in steps for item in s[0][2][a]] if a < aligned else steps[0][0][2][a]
            for a in range(len(steps[0][0][2]))
        )
        try:
            value = getattr(backend, name)(*args, **kwargs)
            parts = split(value, sizes)
        except Exception as exc:
            if len(steps) == 1:
                self._note_failure(exc)
                return [Outcome(error=exc)]
            # one bad call must not fail the others: run them one by one
            return [self._replay(backend, s, None) for s in steps]
        return [Outcome(value=p) for p in parts]

    def _images(self, steps: Any) -> Any:
        return refs_to_images(steps, self._image)

    def _image(self, ref: ImageRef) -> Any:
        import ray

        found = self.images.get(ref.key())
        if found is None:
            found = ray.get(ref.ref)
            self.images.put(ref.key(), found, size=found.width * found.height * 3)
        return found

    def _note_failure(self, exc: BaseException) -> None:
        text = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, MemoryError) or any(f in text for f in FATAL):
            with self._lock:
                self.broken = text


class _Held:
    """A multiplexed model: Serve calls ``__del__`` when it unloads the least recently used
    one, which evicts it from the replica's pool (and frees its memory)."""

    def __init__(self, backend: Any, pool: ModelPool, key: str) -> None:
        self.backend = backend
        self.pool = pool
        self.key = key

    def __del__(self) -> None:
        pool, self.pool = self.pool, None
        if pool is not None:
            pool.evict(self.key)


def replay(backend: Any, steps: Sequence[tuple]) -> Any:
    """Follow a call path on ``backend``: calls, attributes and tuple items in order."""
    value = backend
    for step in steps:
        kind = step[0]
        if kind == "call":
            _, name, args, kwargs = step
            if name.startswith("_"):
                raise AttributeError(f"private method {name!r} cannot be called remotely")
            value = getattr(value, name)(*args, **kwargs)
        elif kind == "attr":
            if step[1].startswith("_"):
                raise AttributeError(f"private attribute {step[1]!r} cannot be read remotely")
            value = getattr(value, step[1])
        elif kind == "item":
            value = value[step[1]]
        else:
            raise ValueError(f"unknown step {kind!r}")
    return value


def split(value: Any, sizes: Sequence[int]) -> list[Any]:
    """``value`` (tensor, array or sequence, one row per item) cut into consecutive parts."""
    total = sum(sizes)
    if len(value) != total:
        raise ModelError(f"a batched result has {len(value)} rows for {total} items")
    parts, start = [], 0
    for n in sizes:
        parts.append(value[start : start + n])
        start += n
    return parts


def _groups(calls: list[Call]) -> Iterable[tuple[str, list[int]]]:
    by_model: dict[str, list[int]] = {}
    for i, c in enumerate(calls):
        by_model.setdefault(c.model, []).append(i)
    return by_model.items()


def _mergeable(backend: Any, steps: Sequence[tuple]) -> bytes | None:
    """A key equal for calls that can be concatenated, or None: a single call of a method in
    the backend's ``batch_methods`` whose per-item arguments are sequences."""
    if len(steps) != 1 or steps[0][0] != "call":
        return None
    _, name, args, kwargs = steps[0]
    aligned = getattr(backend, "batch_methods", {}).get(name)
    if not aligned or len(args) < aligned:
        return None
    if not all(isinstance(a, (list, tuple)) for a in args[:aligned]):
        return None
    if len({len(a) for a in args[:aligned]}) != 1:
        return None
    try:
        return pickle.dumps((name, args[aligned:], sorted(kwargs.items())))
    except Exception:
        return None


# --- building the application ----------------------------------------------------------------


def role_deployment(max_models: int = DEFAULT_MAX_MODELS) -> Any:
    """The Serve deployment class for a role (multiplexing up to ``max_models``)."""
    from ray import serve

    class Role(RoleServer):
        @serve.multiplexed(max_num_models_per_replica=max_models)
        async def model(self, key: str) -> Any:
            return await RoleServer.model(self, key)

        @serve.batch(max_batch_size=16, batch_wait_timeout_s=DEFAULT_MAX_WAIT_MS / 1000)
        async def _run(self, calls: list[Call]) -> list[Outcome]:
            return await RoleServer._run(self, calls)

    Role.__name__ = Role.__qualname__ = "RoleServer"
    return serve.deployment(Role)


def batch_limits(
    role: str, tools: Iterable[Any], options: Mapping[str, Mapping[str, Any]]
) -> tuple[int, float]:
    """Max batch size and wait (ms) for a role: the largest its tools are configured with."""
    sizes, waits = [1], [DEFAULT_MAX_WAIT_MS]
    for tool in tools:
        if role in tool.requires and tool.max_batch > 1:
            own = options.get(tool.name, {})
            sizes.append(int(own.get("max_batch", tool.max_batch)))
            waits.append(float(own.get("max_wait_ms", DEFAULT_MAX_WAIT_MS)))
    return max(sizes), max(waits)


def actor_options(
    spec: ModelSpec | None, settings: ModelSettings, *, gpus: float, gpu_bytes: int
) -> dict[str, Any]:
    """``ray_actor_options`` for a role's replica: CPUs from the serve settings; where the
    cluster has GPUs, the fraction of one that the model's memory estimate needs (in
    ``GPU_STEP`` steps, at least one step); the estimate itself as reserved memory."""
    serve_settings = settings.serve
    options: dict[str, Any] = {"num_cpus": serve_settings.num_cpus if serve_settings else 0.5}
    estimate = 0
    if spec is not None:
        try:
            estimate = backend_class(spec.family).estimate_bytes(spec, settings) or 0
        except Exception:
            estimate = 0
    wants_gpu = spec is not None and (spec.device == "auto" or spec.device.startswith("cuda"))
    if gpus > 0 and gpu_bytes > 0 and wants_gpu and estimate:
        budget = gpu_bytes * settings.memory_fraction
        fraction = math.ceil(min(1.0, estimate / budget) / GPU_STEP) * GPU_STEP
        options["num_gpus"] = round(max(GPU_STEP, fraction), 2)
    if estimate:
        options["memory"] = int(estimate)
    return options


def present_specs(
    role: str, candidates: Sequence[ModelSpec], settings: ModelSettings
) -> list[ModelSpec]:
    """The role's candidates whose weights are on this machine, in preference order."""
    present = []
    for spec in candidates:
        try:
            if backend_class(spec.family).locate(spec, settings).present:
                present.append(spec)
        except Exception:
            continue
    return present


def build_roles(
    settings: ModelSettings,
    *,
    roles: Sequence[str] | None = None,
    tools: Iterable[Any] = (),
    options: Mapping[str, Mapping[str, Any]] | None = None,
    multiplex: Mapping[str, Sequence[ModelSpec]] | None = None,
) -> dict[str, Any]:
    """One bound Serve deployment per role (``roles``: all the profile has by default);
    ``tools`` (default: the built-in ones) and their ``options`` set the batch limits.

    A role serves its first present candidate; ``multiplex`` (default: the serve settings')
    lists further checkpoints a role offers (the first present one stays the default)."""
    if multiplex is None:
        multiplex = settings.serve.multiplex if settings.serve is not None else {}
    local = settings.model_copy(update={"serve": None})
    candidates = roles_for(local)
    wanted = list(roles) if roles is not None else sorted(candidates)
    unknown = [r for r in wanted if r not in candidates and r not in (multiplex or {})]
    if unknown:
        raise NoBackendError(f"no model is configured for role(s) {', '.join(unknown)}")
    gpus, gpu_bytes = _cluster_gpus()
    tools = list(tools)
    if not tools:  # the built-in tools' batch sizes (plug-ins: pass the registry's tools)
        from . import default_registry

        tools = list(default_registry(plugins=False))
    serve_settings = settings.serve
    bound = {}
    for role in wanted:
        specs = present_specs(role, candidates.get(role, []), local)[:1]
        extra = present_specs(role, (multiplex or {}).get(role, []), local)
        specs += [s for s in extra if s not in specs]
        if not specs:
            if roles is not None:
                raise NoBackendError(f"no model for role '{role}' is present on this machine")
            continue  # a role without weights here gets no replica
        max_batch, max_wait = batch_limits(role, tools, options or {})
        own = serve_settings.batch.get(role, {}) if serve_settings else {}
        max_batch = int(own.get("max_batch", max_batch))
        max_wait = float(own.get("max_wait_ms", max_wait))
        deployment = role_deployment(max(1, len(specs), DEFAULT_MAX_MODELS))
        bound[role] = deployment.options(
            name=deployment_name(role),
            num_replicas=serve_settings.replicas if serve_settings else 1,
            max_ongoing_requests=max(4 * max_batch, 16),
            ray_actor_options=actor_options(
                specs[0] if specs else None, local, gpus=gpus, gpu_bytes=gpu_bytes
            ),
            health_check_period_s=serve_settings.health_check_s if serve_settings else 10.0,
        ).bind(role, specs, local, max_batch, max_wait)
    return bound


def _cluster_gpus() -> tuple[float, int]:
    """GPUs in the Ray cluster and the memory of one (from this machine's first GPU)."""
    import ray

    gpus = float(ray.cluster_resources().get("GPU", 0)) if ray.is_initialized() else 0.0
    if gpus <= 0:
        return 0.0, 0
    try:
        import torch

        return gpus, int(torch.cuda.get_device_properties(0).total_memory)
    except Exception:
        return gpus, 0


class Catalog:
    """The ingress of a models-only application (no HTTP): names the roles it serves."""

    def __init__(self, roles: Mapping[str, Any]) -> None:
        self._roles = dict(roles)

    def roles(self) -> list[str]:
        return sorted(self._roles)


def models_app(settings: ModelSettings, **kwargs: Any) -> Any:
    """A Serve application of role deployments only (see :func:`build_roles` for kwargs);
    run it with ``serve.run(models_app(...), name=settings.serve.app, route_prefix=None)``."""
    from ray import serve

    roles = build_roles(settings, **kwargs)
    return serve.deployment(Catalog).options(ray_actor_options={"num_cpus": 0}).bind(roles)
