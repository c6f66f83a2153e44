"""Model roles served by Ray Serve: the client side.

With ``models.serve`` set, the pool hands tools a :class:`RemoteBackend` per role instead of
loading weights. It stands in for the backend the role's deployment (see
:mod:`tools.deployments`) holds: the same methods, the same results, so tools and the
executor do not change.

A method call becomes one :class:`Call` to the role's deployment handle: the method's
path (``Call.steps``: calls, attributes, tuple items, replayed on the replica) and its
arguments. Every :class:`~tools.types.Image` in the arguments is replaced by an
:class:`ImageRef` — the image put once into Ray's object store, remembered per process by
content hash and position, so an image many calls use travels once and is never re-encoded.
The replica keeps its own per-image feature cache (keyed by content hash), as a local pool
does.

Methods that return a stateful object (SAM's ``predictor(image)``; declared by a backend in
``remote_sessions``) return a :class:`RemoteObject` whose own calls replay the path on the
replica, where the cache makes the replay cheap: no per-client state lives on a replica, so
any replica can answer and a restarted one loses nothing.

A replica that dies with a call in flight raises :class:`~tools.errors.ReplicaDiedError`;
Serve restarts it and the next call goes to the new one.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from .backends import backend_class
from .cache import ByteLRU
from .errors import ModelError, NoBackendError, ReplicaDiedError
from .settings import ModelSpec, ServeSettings
from .types import Image

log = logging.getLogger("vischain.models")

DEPLOYMENT_PREFIX = "role-"
Step = tuple[Any, ...]  # ("call", name, args, kwargs) | ("attr", name) | ("item", index)


def deployment_name(role: str) -> str:
    """The Serve deployment that serves ``role`` in a VisChain application."""
    return f"{DEPLOYMENT_PREFIX}{role}"


@dataclass(frozen=True)
class ImageRef:
    """An image in Ray's object store: its content hash, where it sits (crops), and the ref."""

    hash: str
    origin: tuple[int, int]
    name: str | None
    ref: Any

    def key(self) -> tuple[str, tuple[int, int], str | None]:
        return (self.hash, self.origin, self.name)


@dataclass(frozen=True)
class Call:
    """One request to a role's deployment.

    ``model`` is the :meth:`ModelSpec.key` of the checkpoint to use (the multiplexed model
    id); ``steps`` the path to replay on it; ``session`` the index of the result's tuple
    element that is a stateful object to leave on the replica (``None`` in its place);
    ``caller`` who sent it (process id), for the replica's batch records; ``batch`` whether
    it goes through the replica's batch queue (other calls are answered at once)."""

    model: str
    steps: tuple[Step, ...]
    session: int | None = None
    caller: str = ""
    batch: bool = False  # a call of one of the backend's batch_methods: wait for company


@dataclass(frozen=True)
class Outcome:
    """What a replica answers for one call: its value, or the exception it raised."""

    value: Any = None
    error: BaseException | None = None


def _replace_leaves(value: Any, leaf: type, fn: Any) -> Any:
    """``value`` with every instance of ``leaf`` (inside lists, tuples and dicts) replaced by
    ``fn(leaf)``; everything else is kept as it is."""
    if isinstance(value, leaf):
        return fn(value)
    if isinstance(value, list):
        return [_replace_leaves(v, leaf, fn) for v in value]
    if isinstance(value, tuple):
        return tuple(_replace_leaves(v, leaf, fn) for v in value)
    if isinstance(value, dict):
        return {k: _replace_leaves(v, leaf, fn) for k, v in value.items()}
    return value


def images_to_refs(value: Any, put: Any) -> Any:
    """``value`` with every Image (inside lists, tuples and dicts) replaced by ``put(image)``."""
    return _replace_leaves(value, Image, put)


def refs_to_images(value: Any, get: Any) -> Any:
    """The inverse of :func:`images_to_refs`: every ImageRef replaced by ``get(ref)``."""
    return _replace_leaves(value, ImageRef, get)


def connect(settings: ServeSettings) -> None:
    """Join the Ray cluster at ``settings.address`` (once per process; a process already in
    one, such as a Serve replica, stays in it)."""
    import ray

    if not ray.is_initialized():
        ray.init(address=settings.address, log_to_driver=False, logging_level=logging.WARNING)


def is_replica_death(exc: BaseException) -> bool:
    """Whether ``exc`` says the replica (its actor or node) died or became unreachable."""
    from ray import exceptions as rex

    dead = (rex.RayActorError, rex.ActorUnavailableError, rex.NodeDiedError, rex.WorkerCrashedError)
    return isinstance(exc, dead)


class RemoteModels:
    """Roles resolved to Serve deployment handles of one application (one per process)."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.caller = f"{os.uname().nodename}:{os.getpid()}"
        self.images = ByteLRU(settings.image_cache_mb * 2**20, "image-refs")
        self._lock = threading.Lock()
        self._handles: dict[str, Any] = {}
        self._info: dict[str, dict[str, Any]] = {}
        self._backends: dict[tuple[str, str], RemoteBackend] = {}
        self._roles: list[str] | None = None

    # --- discovery -------------------------------------------------------------------------

    def roles(self) -> list[str]:
        """The roles the application serves (its ``role-*`` deployments)."""
        with self._lock:
            if self._roles is None:
                from ray import serve

                connect(self.settings)
                status = serve.status().applications.get(self.settings.app)
                if status is None:
                    raise NoBackendError(
                        f"no Serve application '{self.settings.app}' at "
                        f"{self.settings.address} (start one with `vischain serve`)"
                    )
                self._roles = sorted(
                    d[len(DEPLOYMENT_PREFIX) :]
                    for d in status.deployments
                    if d.startswith(DEPLOYMENT_PREFIX)
                )
            return list(self._roles)

    def handle(self, role: str) -> Any:
        with self._lock:
            handle = self._handles.get(role)
        if handle is None:
            from ray import serve

            connect(self.settings)
            handle = serve.get_deployment_handle(deployment_name(role), app_name=self.settings.app)
            with self._lock:
                self._handles[role] = handle
        return handle

    def info(self, role: str) -> dict[str, Any]:
        """What the role's deployment offers: ``specs`` (present checkpoints, default first),
        ``reason`` (why none is), and ``describe`` (the default model's description)."""
        with self._lock:
            known = self._info.get(role)
        if known is None:
            if role not in self.roles():
                return {"specs": [], "reason": f"the Serve application does not serve '{role}'"}
            known = self._request(role, self.handle(role).info.remote())
            with self._lock:
                self._info[role] = known
        return known

    def resolve(
        self, role: str, wanted: Sequence[ModelSpec] = ()
    ) -> tuple[ModelSpec | None, str | None]:
        """The served checkpoint for ``role``: the first of ``wanted`` the deployment offers,
        else its default; or None and why."""
        try:
            info = self.info(role)
        except ModelError as exc:
            return None, str(exc)
        offered: list[ModelSpec] = info["specs"]
        if not offered:
            return None, info.get("reason") or f"the deployment for '{role}' has no model"
        keys = {s.key(): s for s in offered}
        for spec in wanted:
            if spec.key() in keys:
                return keys[spec.key()], None
        return offered[0], None

    def backend(self, role: str, spec: ModelSpec) -> RemoteBackend:
        with self._lock:
            found = self._backends.get((role, spec.key()))
            if found is None:
                found = RemoteBackend(self, role, spec)
                self._backends[(role, spec.key())] = found
            return found

    # --- calls -----------------------------------------------------------------------------

    def put(self, image: Image) -> ImageRef:
        """The image's object-store ref (put once per process, by content and position)."""
        import ray

        key = (image.hash, image.origin, image.name)
        found = self.images.get(key)
        if found is None:
            found = ImageRef(image.hash, image.origin, image.name, ray.put(image))
            self.images.put(key, found, size=image.width * image.height * 3)
        return found

    def call(self, role: str, call: Call) -> Any:
        """Send ``call`` to the role's deployment; its value, or its error raised here."""
        steps = images_to_refs(call.steps, self.put)
        call = Call(call.model, steps, call.session, self.caller, call.batch)
        handle = self.handle(role).options(multiplexed_model_id=call.model)
        outcome: Outcome = self._request(role, handle.call.remote(call))
        if outcome.error is not None:
            raise outcome.error
        return outcome.value

    def stats(self, role: str) -> dict[str, Any]:
        """The replica's records: model loads per key, batch sizes and callers, health."""
        return self._request(role, self.handle(role).stats.remote())

    def _request(self, role: str, response: Any) -> Any:
        from ray import exceptions as rex

        try:
            return response.result(timeout_s=self.settings.timeout_s)
        except TimeoutError as exc:
            raise ModelError(
                f"the '{role}' deployment did not answer within {self.settings.timeout_s} s"
            ) from exc
        except rex.RayTaskError as exc:  # the replica raised outside a call (a bug or a crash)
            cause = exc.cause
            if cause is not None and is_replica_death(cause):
                raise ReplicaDiedError(f"the '{role}' replica died: {cause}") from exc
            raise ModelError(f"the '{role}' deployment failed: {cause or exc}") from exc
        except Exception as exc:
            if is_replica_death(exc):
                raise ReplicaDiedError(
                    f"the '{role}' replica died during the call ({type(exc).__name__}); "
                    "Serve restarts it and the next call goes to the new one"
                ) from exc
            raise


class RemoteBackend:
    """Stands in for the backend a role's deployment holds (see the module docstring).

    ``spec``, ``device``, ``dtype`` and ``family`` are the served model's; class-level
    constants (``supports_pointing``) come from the backend class; every method call and
    property goes to the replica."""

    def __init__(self, models: RemoteModels, role: str, spec: ModelSpec) -> None:
        self._models = models
        self.role = role
        self.spec = spec
        self.family = spec.family
        self.cls = backend_class(spec.family)

    @cached_property
    def _description(self) -> dict[str, Any]:
        return dict(self._call((("call", "describe", (), {}),)))

    @property
    def device(self) -> str:
        return str(self._description.get("device", "remote"))

    @property
    def dtype(self) -> str:
        return str(self._description.get("dtype", ""))

    def describe(self) -> dict[str, Any]:
        return {**self._description, "remote": f"{self._models.settings.app}/{self.role}"}

    def memory_bytes(self) -> int:
        return 0  # the weights live on the replica, not in this process

    def unload(self) -> None:
        """Nothing to release here: the replica owns the model."""

    def _call(self, steps: tuple[Step, ...], session: int | None = None) -> Any:
        batch = len(steps) == 1 and steps[0][0] == "call" and steps[0][1] in self.cls.batch_methods
        return self._models.call(self.role, Call(self.spec.key(), steps, session, batch=batch))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return _member(self, self.cls, (), name)

    def __repr__(self) -> str:
        return f"<RemoteBackend {self.role}: {self.spec.label()}>"


@dataclass
class RemoteObject:
    """A stateful object that stays on the replica (e.g. a SAM predictor with its image
    set), reached by replaying ``path`` there."""

    backend: RemoteBackend
    path: tuple[Step, ...]
    cls: type | None = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return _member(self.backend, self.cls, self.path, name)


def _member(backend: RemoteBackend, cls: type | None, path: tuple[Step, ...], name: str) -> Any:
    """Attribute ``name`` of the remote object at ``path``: a class constant read here, a
    method as a callable that runs remotely, anything else fetched from the replica."""
    attr = inspect.getattr_static(cls, name, _MISSING) if cls is not None else _MISSING
    if attr is not _MISSING and not isinstance(attr, (property, cached_property)):
        if inspect.isfunction(attr):
            return _RemoteMethod(backend, path, name, cls)
        if not callable(attr) and not isinstance(attr, (staticmethod, classmethod)):
            return attr
    return backend._call((*path, ("attr", name)))


@dataclass(frozen=True)
class _RemoteMethod:
    backend: RemoteBackend
    path: tuple[Step, ...]
    name: str
    cls: type | None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        step = ("call", self.name, args, kwargs)
        sessions = getattr(self.cls, "remote_sessions", {}) if not self.path else {}
        if self.name not in sessions:
            return self.backend._call((*self.path, step))
        index, session_cls = sessions[self.name]
        result = list(self.backend._call((*self.path, step), session=index))
        result[index] = RemoteObject(self.backend, (step, ("item", index)), session_cls)
        return tuple(result)


_MISSING = object()
