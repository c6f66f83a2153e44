"""Faulty tools and a faulty model family, for fault-injection tests.

Every fault is real behaviour of real code paths, switched on by the call's arguments: a
backend that raises, blocks in native code (a lock wait the interpreter cannot interrupt),
returns the wrong type or the wrong number of results, or raises CUDA's out-of-memory error
(``torch.cuda.OutOfMemoryError``, what a GPU raises) when a batch is larger than its
device can hold. Tools here are module-level so an isolated child process can import them.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from tools import Tool, ToolContext, tool
from tools.backends.base import Backend, Located, Placement
from tools.settings import ModelSettings, ModelSpec

RELEASE = threading.Event()  # set it to let every blocked call return


class FlakyBackend(Backend):
    """A model whose device holds ``capacity`` inputs per batch (option; CPU: unlimited
    unless ``cpu_capacity`` is set). It doubles numbers; ``mode`` makes it misbehave."""

    family: ClassVar[str] = "flaky"

    @classmethod
    def locate(cls, spec: ModelSpec, settings: ModelSettings) -> Located:
        return Located(True, "memory")

    @classmethod
    def load(cls, spec: ModelSpec, placement: Placement, settings: ModelSettings) -> Backend:
        return cls(spec, placement)

    def __init__(self, spec: ModelSpec, placement: Placement) -> None:
        super().__init__(spec, placement)
        self.batches: list[tuple[str, int]] = []

    def double(self, xs: Sequence[float], mode: str = "ok") -> list[Any]:
        self.batches.append((self.device, len(xs)))
        key = "cpu_capacity" if self.device == "cpu" else "capacity"
        capacity = self.spec.options.get(key)
        if capacity is not None and len(xs) > capacity:
            raise torch.cuda.OutOfMemoryError(
                f"CUDA out of memory. Tried to allocate {len(xs)} GiB (device {self.device})"
            )
        if mode == "raise":
            raise RuntimeError("the backend crashed")
        if mode == "hang":
            RELEASE.wait()
        if mode == "wrong-type":
            return ["not a number"] * len(xs)
        if mode == "wrong-count":
            return [2 * x for x in xs][:-1]
        return [2 * x for x in xs]


def flaky_settings(**options: Any) -> ModelSettings:
    """Model settings whose 'flaky' role is a FlakyBackend on cuda:0 with ``options``."""
    spec = ModelSpec(family="flaky", device="cuda:0", dtype="float16", options=options)
    return ModelSettings(profile="offline", roles={"flaky": [spec]}, progress=False)


class Double(Tool):
    """Doubles numbers on the flaky model, many per batch."""

    name = "Double"
    requires = ("flaky",)
    max_batch = 16

    def run(self, ctx: ToolContext, x: float, mode: str = "ok") -> float:
        """Args:
        x: a number
        mode: ok, raise, hang, wrong-type or wrong-count
        """
        return self.one(ctx, x=x, mode=mode)

    def run_batch(self, ctx: ToolContext, calls: Sequence[dict[str, Any]]) -> list[Any]:
        modes = {c.get("mode", "ok") for c in calls}
        mode = "ok" if modes == {"ok"} else sorted(modes - {"ok"})[0]
        return ctx.model("flaky").double([c["x"] for c in calls], mode)


@tool
def stuck(x: int) -> int:
    """Blocks in a native wait until RELEASE is set, then returns x.

    Args:
        x: any number
    """
    RELEASE.wait()
    return x


@tool
def sleepy(seconds: float) -> int:
    """Sleeps in native code (an hour, say: only a killed process ends it), then returns
    the id of the process that ran the call.

    Args:
        seconds: how long to sleep
    """
    time.sleep(seconds)
    return os.getpid()


@tool
def exits(code: int) -> int:
    """Ends the process it runs in with exit status ``code`` (a crash in native code),
    unless ``code`` is 0: then it returns the process id.

    Args:
        code: the exit status
    """
    if code:
        os._exit(code)
    return os.getpid()
