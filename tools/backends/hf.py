"""What every transformers-based backend shares: finding a model id or directory without
the network, loading a model and its processor with ``local_files_only``, wrapping objects
already in memory, and building seeded tiny test models."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import torch

from ..errors import ModelError
from ..settings import ModelSettings, ModelSpec
from .base import Backend, Located, Placement, dir_bytes, hf_locate

TINY_SEED = 0


def hf_dir(model: str, revision: str | None = None) -> Path | None:
    """The local directory holding ``model`` (a path, or its snapshot in the HF cache)."""
    path = Path(model).expanduser()
    if path.exists():
        return path
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model, "config.json", revision=revision)
    except (ImportError, ValueError):
        return None
    return Path(found).parent if isinstance(found, str) else None


class HFBackend(Backend):
    """A transformers model with its processor. Subclasses name ``model_class`` (in the
    transformers namespace) and ``default_model``, and extend ``__init__`` for options."""

    model_class: ClassVar[str] = ""
    default_model: ClassVar[str] = ""

    def __init__(self, spec: ModelSpec, placement: Placement, model: Any, processor: Any) -> None:
        super().__init__(spec, placement)
        self.model = model
        self.processor = processor

    @classmethod
    def _model_id(cls, spec: ModelSpec) -> str:
        return spec.model or cls.default_model

    @classmethod
    def locate(cls, spec: ModelSpec, settings: ModelSettings) -> Located:
        return hf_locate(cls._model_id(spec), revision=spec.revision)

    @classmethod
    def estimate_bytes(cls, spec: ModelSpec, settings: ModelSettings) -> int | None:
        where = hf_dir(cls._model_id(spec), spec.revision)
        return None if where is None else dir_bytes(where) or None

    @classmethod
    def load(cls, spec: ModelSpec, placement: Placement, settings: ModelSettings) -> Any:
        import transformers

        model_id = cls._model_id(spec)
        try:
            processor = transformers.AutoProcessor.from_pretrained(
                model_id, revision=spec.revision, local_files_only=True
            )
            model = getattr(transformers, cls.model_class).from_pretrained(
                model_id, revision=spec.revision, local_files_only=True, dtype=placement.dtype
            )
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load {cls.family} model '{model_id}': {exc}") from exc
        model.to(device=placement.device, dtype=placement.dtype).eval()
        return cls(spec, placement, model, processor)

    @classmethod
    def from_objects(
        cls,
        model: Any,
        processor: Any,
        *,
        spec: ModelSpec | None = None,
        placement: Placement | None = None,
    ) -> Any:
        """Wrap a model and processor already in memory (the model stays where it is)."""
        param = next(model.parameters())
        placement = placement or Placement(str(param.device), param.dtype)
        spec = spec or ModelSpec(family=cls.family, model=f"in-memory:{type(model).__name__}")
        model.eval()
        return cls(spec, placement, model, processor)

    def modules(self) -> list[Any]:
        return [self.model]


@contextlib.contextmanager
def seeded() -> Iterator[None]:
    """Seed torch's global RNG for a block and restore it afterwards (tiny models are built
    deterministically without disturbing the caller's random state)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        yield


def redraw(model: torch.nn.Module) -> None:
    """Re-draw every weight from one seeded generator in name order (norms set to identity):
    the same bytes whatever a transformers version's initialisers do, and small weights so a
    random model still behaves sanely (some families initialise their heads with std 1)."""
    gen = torch.Generator().manual_seed(TINY_SEED)
    norms = {
        id(p)
        for m in model.modules()
        if "Norm" in type(m).__name__
        for p in m.parameters(recurse=False)
    }
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            if id(param) in norms:
                param.fill_(1.0 if name.endswith("weight") else 0.0)
            else:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.02)
