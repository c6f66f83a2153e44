"""Process isolation for one tool (``tools: {Name: {isolate: process}}`` in the config).

A thread cannot be killed, so a tool that may hang in native code can instead run in a
child process of its own. :class:`IsolatedTool` starts the child on first use (``spawn``:
a fresh interpreter, no inherited locks), sends it each batch of calls and waits for the
results while watching the step's deadline and cancellation; when either fires, the child is
killed — the hang ends there — and the next call starts a fresh one. Calls to one isolated
tool run one batch at a time.

The child finds the tool again by reference (a ``@tool`` function or a :class:`Tool`
subclass importable at module level), gets the tool's options and limits, and builds its
own model pool from the same settings when the tool needs models. Arguments and results
cross as pickles.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from .base import FunctionTool, Tool, ToolContext
from .errors import ToolError

log = logging.getLogger("vischain.tools")

POLL_SECONDS = 0.05


class IsolationError(ToolError):
    """An isolated tool's process could not be started, or died while running a call."""


@dataclass(frozen=True)
class ToolReference:
    """Where a child process imports a tool from: ``module.qualname`` is either the tool
    object itself (a ``@tool`` function) or a :class:`Tool` subclass to instantiate."""

    module: str
    qualname: str

    @classmethod
    def of(cls, tool: Tool) -> ToolReference:
        if isinstance(tool, FunctionTool):
            fn = tool.fn
            ref = cls(fn.__module__, fn.__qualname__)
        else:
            ref = cls(type(tool).__module__, type(tool).__qualname__)
        if "<locals>" in ref.qualname or ref.module == "__main__":
            raise IsolationError(
                f"{tool.name} cannot run in its own process: define it at module level in an "
                "importable module"
            )
        return ref

    def load(self) -> Tool:
        obj: Any = importlib.import_module(self.module)
        for part in self.qualname.split("."):
            obj = getattr(obj, part)
        if isinstance(obj, Tool):
            return obj
        if isinstance(obj, type) and issubclass(obj, Tool):
            return obj()
        raise TypeError(f"{self.module}.{self.qualname} is not a tool")


def _child(conn: Connection, ref: ToolReference, settings: Any) -> None:
    """The child's loop: receive (calls, options, limits), send back results."""
    from .batching import run_calls

    tool = ref.load()
    models = None
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        calls, options, limits = message
        if models is None and settings is not None and tool.requires:
            from .pool import ModelPool

            models = ModelPool(settings)
        ctx = ToolContext(models=models, options=options, limits=limits)
        try:
            results = run_calls(tool, ctx, calls)
        except Exception as exc:
            results = [exc] * len(calls)
        try:
            conn.send((results, ctx.meta))
        except Exception as exc:  # a result that does not pickle
            error = IsolationError(f"{tool.name} returned a value that cannot be sent back: {exc}")
            conn.send(([error] * len(calls), ctx.meta))


class IsolatedTool:
    """Runs one tool's calls in a killable child process."""

    def __init__(self, tool: Tool, settings: Any = None) -> None:
        """``settings``: the :class:`~tools.settings.ModelSettings` the child builds its
        model pool from (None: the tool gets no models)."""
        self.tool = tool
        self.reference = ToolReference.of(tool)
        self.settings = settings
        self._lock = threading.Lock()
        self._process: Any = None
        self._conn: Connection | None = None

    def _ensure(self) -> Connection:
        if self._process is not None and self._process.is_alive() and self._conn is not None:
            return self._conn
        self._stop()
        mp = multiprocessing.get_context("spawn")
        parent, child = mp.Pipe()
        process = mp.Process(
            target=_child,
            args=(child, self.reference, self.settings),
            name=f"vischain-isolated-{self.tool.name}",
            daemon=True,
        )
        process.start()
        child.close()
        self._process, self._conn = process, parent
        return parent

    def run_batch(self, ctx: ToolContext, calls: Sequence[dict[str, Any]]) -> list[Any]:
        """The results of ``calls`` run in the child; the child is killed when the step's
        deadline passes or it is cancelled (a ``time-limit``/``cancelled`` error)."""
        while not self._lock.acquire(timeout=POLL_SECONDS):
            ctx.check()
        try:
            killed = True
            try:
                conn = self._ensure()
                conn.send((list(calls), _plain_options(ctx.options), ctx.limits))
                while not conn.poll(POLL_SECONDS):
                    if not self._process.is_alive():
                        raise EOFError
                    ctx.check()
                results, meta = conn.recv()
                killed = False
            except (EOFError, OSError) as exc:  # the child is gone: say how it ended
                process = self._process
                if process is None:
                    raise IsolationError(f"{self.tool.name}'s process failed: {exc}") from exc
                process.join(timeout=5)
                raise IsolationError(
                    f"{self.tool.name}'s process died (exit code {process.exitcode})"
                ) from exc
            finally:
                if killed:
                    self._stop()
            ctx.meta.update(meta)
            ctx.note(isolated="process")
            return list(results)
        finally:
            self._lock.release()

    def _stop(self) -> None:
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if conn is not None:
            conn.close()
        if process is not None and process.is_alive():
            process.kill()
            process.join(timeout=5)

    def close(self) -> None:
        with self._lock:
            self._stop()


def _plain_options(options: Any) -> dict[str, dict[str, Any]]:
    return {str(k): dict(v) for k, v in dict(options).items()}


def wants_process(ctx: ToolContext, tool: Tool) -> bool:
    """Whether the config asks for ``tool`` to run in its own process."""
    return str(ctx.option(tool.name, "isolate", "") or "").lower() == "process"
