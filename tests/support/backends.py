"""Where backend tests load models, the noise pictures they feed them, a backend whose
loads a test can hold and watch, and an image processor that counts what it preprocesses."""

from __future__ import annotations

import threading
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image as PILImage

from tools.backends import BACKENDS, Backend, Located, Placement
from tools.settings import ModelSettings, ModelSpec
from tools.types import Image

CPU = Placement("cpu", torch.float32)


def noise_image(seed: int, width: int = 32, height: int = 32) -> Image:
    """A ``width``×``height`` RGB picture of uniform noise, the same for the same seed."""
    rng = np.random.default_rng(seed)
    return Image(PILImage.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)))


class CountingImageProcessor:
    """Wraps a transformers image processor, recording how many pictures each call
    preprocessed (``calls``); attribute reads go to the wrapped one."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[int] = []

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (copy, pickle): never recurse
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __call__(self, images: Any = None, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(len(images) if isinstance(images, list) else 1)
        return self.inner(images, *args, **kwargs)


class GatedBackend(Backend):
    """A one-weight model whose load of ``model`` waits until ``gates[model]`` is set (when
    there is one); it records the loading thread, and ``model='fails'`` raises."""

    family = "test_gated"
    gates: ClassVar[dict[str, threading.Event]] = {}
    started: ClassVar[dict[str, threading.Event]] = {}
    threads: ClassVar[list[str]] = []

    def __init__(self, spec: ModelSpec, placement: Placement) -> None:
        super().__init__(spec, placement)
        self.layer = torch.nn.Linear(1, 1, bias=False)

    @classmethod
    def locate(cls, spec: ModelSpec, settings: ModelSettings) -> Located:
        return Located(True, "memory")

    @classmethod
    def load(cls, spec: ModelSpec, placement: Placement, settings: ModelSettings) -> Backend:
        cls.threads.append(threading.current_thread().name)
        cls.started.setdefault(spec.model, threading.Event()).set()
        gate = cls.gates.get(spec.model)
        if gate is not None:
            gate.wait()
        if spec.model == "fails":
            raise RuntimeError("corrupt checkpoint")
        return cls(spec, placement)

    def modules(self) -> list[torch.nn.Module]:
        return [self.layer]


BACKENDS["test_gated"] = GatedBackend
