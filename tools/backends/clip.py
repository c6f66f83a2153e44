"""CLIP through open_clip: image and text embeddings, zero-shot classification, similarity.

Two stages: :mod:`tools.backends.clip_weights` finds what a spec names on this machine
(architecture, checkpoint, preprocessing a pretrained tag implies); this module builds the
model from that (skipping random initialisation where the checkpoint covers every tensor) and
runs it. Features are cached per image content hash and per text in the pool's feature
cache; only the misses of a call are encoded, together. Pixels and tokens are prepared on
the caller's thread; the encoders run in the model's lanes (:mod:`tools.backends.coalesce`),
so concurrent calls from any tool share one forward.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from ..cache import ByteLRU
from ..errors import ModelError
from ..settings import ModelSettings, ModelSpec
from ..types import Image
from .base import Backend, Located, Placement, dir_bytes
from .clip_weights import CONFIG_NAME, LOCAL_PREFIX, WEIGHT_NAMES, WeightsMissing, resolve
from .regions import RegionPlan, plan_of, region_pixels
from .threads import on_model_thread

log = logging.getLogger("vischain.models")

# Prompt ensemble for zero-shot classification (each class embedding is the renormalised
# mean over these, formatted with the class name).
DEFAULT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a photo of the {}.",
    "a close-up photo of a {}.",
    "a cropped photo of a {}.",
    "a photo of a small {}.",
    "a photo of a large {}.",
    "a bright photo of a {}.",
    "a dark photo of a {}.",
)
DEFAULT_MAX_BATCH = 128  # images or texts per encoder forward (options["batch_size"])

# The tiny test model: a small ViT and text tower; the text tower keeps CLIP's real vocabulary
# size and context length so open_clip's bundled BPE tokenizer drives it.
TINY_CONFIG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"width": 32, "heads": 2, "layers": 2},
}
TINY_PREPROCESS: dict[str, Any] = {
    "mean": [0.48145466, 0.4578275, 0.40821073],
    "std": [0.26862954, 0.26130258, 0.27577711],
    "interpolation": "bicubic",
    "resize_mode": "shortest",
}
TINY_SEED = 20240611


class OpenClipBackend(Backend):
    """A loaded open_clip model with cached, batched image and text embeddings."""

    family: ClassVar[str] = "open_clip"
    batch_methods: ClassVar[Mapping[str, int]] = {
        "image_features": 1,
        "text_features": 1,
        "similarity": 1,
        "similarity_to_classes": 1,
        "zero_shot": 1,
    }

    def __init__(
        self,
        spec: ModelSpec,
        placement: Placement,
        model: torch.nn.Module,
        preprocess: Callable[[Any], torch.Tensor],
        tokenizer: Callable[..., torch.Tensor],
    ) -> None:
        super().__init__(spec, placement)
        self.model = model.eval()
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.max_batch = int(spec.options.get("batch_size", DEFAULT_MAX_BATCH))
        self._stats_lock = threading.Lock()

    # --- construction ----------------------------------------------------------------------

    @classmethod
    def from_objects(
        cls,
        model: torch.nn.Module,
        preprocess: Callable[[Any], torch.Tensor],
        tokenizer: Callable[..., torch.Tensor],
        *,
        spec: ModelSpec | None = None,
        placement: Placement | None = None,
        cache: ByteLRU | None = None,
    ) -> OpenClipBackend:
        """Wrap an open_clip model, its eval transform and tokenizer already in memory (e.g.
        from ``open_clip.create_model_and_transforms``). With ``placement`` the model is moved
        there; otherwise it stays where its parameters are."""
        if placement is None:
            param = next(model.parameters())
            placement = Placement(str(param.device), param.dtype)
        else:
            model.to(device=placement.device, dtype=placement.dtype)
        spec = spec or ModelSpec(
            family=cls.family, model=f"in-memory:{type(model).__name__}@{id(model):x}"
        )
        backend = cls(spec, placement, model, preprocess, tokenizer)
        backend.cache = cache
        return backend

    @classmethod
    def locate(cls, spec: ModelSpec, settings: ModelSettings) -> Located:
        try:
            source = resolve(spec, settings)
        except WeightsMissing as missing:
            return Located(False, hint=str(missing))
        return Located(True, source.where)

    @classmethod
    def load(cls, spec: ModelSpec, placement: Placement, settings: ModelSettings) -> Backend:
        import open_clip
        from open_clip.transform import PreprocessCfg, image_transform_v2

        try:
            source = resolve(spec, settings)
        except WeightsMissing as missing:
            raise ModelError(f"cannot load {spec.label()}: {missing}") from None
        if source.register:
            _register_config(source.register)
        kwargs: dict[str, Any] = {
            "pretrained_text": False,  # never fetch tower weights from a hub
            "pretrained_image": False,
            "load_weights": False,  # the checkpoint is loaded below, from a resolved path
            "force_quick_gelu": source.quick_gelu,
            "force_preprocess_cfg": source.preprocess or None,
        }
        model = None
        with _quiet_open_clip(bool(source.checkpoint)):
            if source.checkpoint:
                model = _build_loaded(source.name, source.checkpoint, kwargs)
            if model is None:
                model = open_clip.create_model(source.name, **kwargs)
                if source.checkpoint:
                    open_clip.load_checkpoint(model, source.checkpoint, strict=True)
        model.to(device=placement.device, dtype=placement.dtype)
        model.eval()
        preprocess = image_transform_v2(
            PreprocessCfg(**model.visual.preprocess_cfg), is_train=False
        )
        tokenizer = open_clip.get_tokenizer(source.name)
        return cls(spec, placement, model, preprocess, tokenizer)

    @classmethod
    def estimate_bytes(cls, spec: ModelSpec, settings: ModelSettings) -> int | None:
        """fp32 bytes of the architecture (built on the meta device: no memory, no init)."""
        try:
            import open_clip

            source = resolve(spec, settings)
            if source.register:
                _register_config(source.register)
            with torch.device("meta"), _quiet_open_clip(True):
                model = open_clip.create_model(
                    source.name, device="meta", pretrained_text=False, load_weights=False
                )
            return sum(p.numel() for p in model.parameters()) * 4
        except Exception:  # an estimate is optional: fall back to the checkpoint's size
            try:
                source = resolve(spec, settings)
            except WeightsMissing:
                return None
            return dir_bytes(source.checkpoint) if source.checkpoint else None

    @classmethod
    def tiny_spec(cls, directory: Path) -> ModelSpec:
        """A tiny random CLIP in open_clip's HF layout under ``directory/tiny-open_clip``."""
        import open_clip
        from safetensors.torch import save_file

        target = Path(directory) / "tiny-open_clip"
        target.mkdir(parents=True, exist_ok=True)
        base = open_clip.get_model_config("ViT-B-32")
        config = json.loads(json.dumps(TINY_CONFIG))
        for key in ("context_length", "vocab_size"):  # what the real tokenizer expects
            config["text_cfg"][key] = base["text_cfg"][key]
        payload = {"model_cfg": config, "preprocess_cfg": TINY_PREPROCESS}
        (target / CONFIG_NAME).write_text(json.dumps(payload, indent=1), encoding="utf-8")
        with torch.random.fork_rng(devices=[]), _quiet_open_clip(True):
            torch.manual_seed(TINY_SEED)
            model = open_clip.create_model(
                LOCAL_PREFIX + str(target), pretrained_text=False, load_weights=False
            )
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(target / WEIGHT_NAMES[0]))
        return ModelSpec(family=cls.family, model=str(target))

    # --- instance -------------------------------------------------------------------------

    def modules(self) -> list[Any]:
        return [self.model]

    @property
    def logit_scale(self) -> float:
        """The model's learned softmax temperature (exp of its logit_scale, at most 100)."""
        return float(self.model.logit_scale.detach().float().exp().clamp(max=100.0).max())

    @property
    def embed_dim(self) -> int:
        dim = getattr(self.model.visual, "output_dim", None)
        if dim is None:
            dim = int(self.text_features(["a photo."]).shape[1])
        return int(dim)

    def image_features(self, images: Sequence[Image]) -> torch.Tensor:
        """[N, D] L2-normalised float32 CPU embeddings; only uncached images are encoded, in
        one batch with other callers' (per ``batch_size`` chunk)."""
        keys = [("clip_image", im.hash) for im in images]
        return self._rows(keys, list(images), self._encode_images)

    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        """[M, D] L2-normalised float32 CPU embeddings, cached per text."""
        keys = [("clip_text", t) for t in texts]
        return self._rows(keys, list(texts), self._encode_texts)

    def class_features(
        self,
        classes: Sequence[str],
        *,
        templates: Sequence[str] | None = None,
        descriptions: Mapping[str, Sequence[str]] | None = None,
    ) -> torch.Tensor:
        """[C, D]: each class's prompt ensemble (templates formatted with its name, plus any
        descriptions given for it), averaged and renormalised."""
        if not classes:
            raise ValueError("at least one class is needed")
        templates = DEFAULT_TEMPLATES if templates is None else tuple(templates)
        prompts: list[list[str]] = []
        for name in classes:
            own = [t.format(name) for t in templates]
            own += [d for d in (descriptions or {}).get(name, ()) if d and d.strip()]
            prompts.append(own or [name])
        unique = list(dict.fromkeys(p for own in prompts for p in own))
        feats = self.text_features(unique)
        row = {p: i for i, p in enumerate(unique)}
        means = torch.stack([feats[[row[p] for p in own]].mean(dim=0) for own in prompts])
        return F.normalize(means, dim=-1)

    def similarity(self, images: Sequence[Image], texts: Sequence[str]) -> np.ndarray:
        """[N, M] cosine similarities between images and texts."""
        if not images or not texts:
            return np.zeros((len(images), len(texts)), dtype=np.float32)
        return (self.image_features(images) @ self.text_features(texts).T).numpy()

    def similarity_to_classes(
        self,
        images: Sequence[Image],
        classes: Sequence[str],
        *,
        templates: Sequence[str] | None = None,
        descriptions: Mapping[str, Sequence[str]] | None = None,
    ) -> np.ndarray:
        """[N, C] cosine similarities between images and prompt-ensembled classes."""
        cls_feats = self.class_features(classes, templates=templates, descriptions=descriptions)
        if not images:
            return np.zeros((0, len(classes)), dtype=np.float32)
        return (self.image_features(images) @ cls_feats.T).numpy()

    def zero_shot(
        self,
        images: Sequence[Image],
        classes: Sequence[str],
        *,
        templates: Sequence[str] | None = None,
        descriptions: Mapping[str, Sequence[str]] | None = None,
    ) -> np.ndarray:
        """[N, C] class probabilities: softmax of the scaled cosine similarities."""
        return self.zero_shot_features(
            self.image_features(images) if images else torch.zeros((0, 0)),
            classes,
            templates=templates,
            descriptions=descriptions,
        )

    def zero_shot_features(
        self,
        features: torch.Tensor,
        classes: Sequence[str],
        *,
        templates: Sequence[str] | None = None,
        descriptions: Mapping[str, Sequence[str]] | None = None,
    ) -> np.ndarray:
        """:meth:`zero_shot` for [N, D] image embeddings already computed (e.g. by
        :meth:`region_features`)."""
        cls_feats = self.class_features(classes, templates=templates, descriptions=descriptions)
        if not len(features):
            return np.zeros((0, len(classes)), dtype=np.float32)
        logits = (features @ cls_feats.T).numpy().astype(np.float64) * self.logit_scale
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        return probs.astype(np.float32)

    @cached_property
    def region_plan(self) -> RegionPlan | None:
        """How this model's preprocessing treats a crop, when regions can be prepared in
        one tensor op (:mod:`tools.backends.regions`); None when they cannot."""
        return plan_of(self.preprocess)

    @cached_property
    def batch_regions(self) -> bool:
        """Whether Select and Classify prepare a picture's regions in one tensor op here
        (options ``region_batching``: true, false, or ``auto`` — on an accelerator only: on
        the CPU, torchvision's roi_align measured slower than the PIL crops it replaces,
        0.30 s against 0.26 s for 30 regions on one thread)."""
        if self.region_plan is None:
            return False
        choice = self.spec.options.get("region_batching", "auto")
        return self.device != "cpu" if choice == "auto" else bool(choice)

    def region_features(
        self,
        image: Image,
        boxes: Sequence[tuple[int, int, int, int]],
        masks: Sequence[np.ndarray | None],
    ) -> torch.Tensor:
        """[N, D] embeddings of regions of one picture: each box (integer pixel corners
        x0, y0, x1, y1) cut out, pixels outside its mask (H × W bool, or None) grey, all
        prepared in one tensor op on the model's device and encoded in the image lane's
        batch. Cached per (picture, box, mask). Needs :attr:`region_plan`."""
        plan = self.region_plan
        if plan is None:
            raise ModelError(f"{self.spec.label()}: its preprocessing cannot batch regions")
        keys = [
            ("clip_region", image.hash, tuple(box), _mask_digest(mask))
            for box, mask in zip(boxes, masks, strict=True)
        ]

        def compute(indices: list[int]) -> list[torch.Tensor]:
            def rows() -> list[tuple[Any, torch.Tensor]]:
                pixels = region_pixels(  # stays on the model's device for the encoder
                    image.array, [boxes[i] for i in indices], [masks[i] for i in indices],
                    plan, self.device,
                )  # fmt: skip
                return [(keys[i], row) for i, row in zip(indices, pixels, strict=True)]

            return [row.clone() for row in self._image_lane(rows)]

        found = self.cached_many(keys, compute)
        if not found:
            return torch.zeros((0, self.embed_dim), dtype=torch.float32)
        return torch.stack(found)

    # --- internals ------------------------------------------------------------------------

    def _rows(
        self,
        keys: list[tuple[str, str]],
        items: list[Any],
        encode: Callable[[list[Any]], torch.Tensor],
    ) -> torch.Tensor:
        """One row per key through the feature cache; the misses are encoded together."""

        def compute(indices: list[int]) -> list[torch.Tensor]:
            vectors = encode([items[i] for i in indices])
            return [row.clone() for row in vectors]  # own storage: the cache sizes each row

        rows = self.cached_many(keys, compute)
        if not rows:
            return torch.zeros((0, self.embed_dim), dtype=torch.float32)
        return torch.stack(rows)

    def _count(self, counter: str, items: str, n: int) -> None:
        with self._stats_lock:
            self.stats[counter] += 1
            self.stats[items] += n

    def _encode_images(self, images: list[Image]) -> torch.Tensor:
        """Embeddings of ``images``: their pixels are prepared here, on the caller's thread,
        then encoded in the image lane's batch (shared with every other caller)."""
        return self._image_lane(
            lambda: [(im.hash, row) for im, row in zip(images, self.pixels(images), strict=True)]
        )

    def _image_lane(self, rows: Callable[[], list[tuple[Any, torch.Tensor]]]) -> torch.Tensor:
        """The image encoder's output for the pixel rows ``rows()`` prepares on this thread,
        in the image lane's batch."""
        return self.lanes.after(
            "image_encoder", self._encode_pixels, rows, max_batch=self.max_batch, key=_row_key
        )

    @on_model_thread
    def _encode_pixels(self, rows: list[tuple[str, torch.Tensor]]) -> torch.Tensor:
        """[N, D] embeddings of prepared [3, S, S] pixel rows, ``batch_size`` per forward."""
        out = []
        for start in range(0, len(rows), self.max_batch):
            chunk = torch.stack([pixels for _, pixels in rows[start : start + self.max_batch]])
            try:
                with torch.inference_mode():
                    feats = self.model.encode_image(chunk.to(device=self.device, dtype=self.dtype))
                    out.append(F.normalize(feats.float(), dim=-1).cpu())
            except Exception as exc:
                raise ModelError(f"CLIP image encoder failed: {type(exc).__name__}: {exc}") from exc
            self._count("image_encoder", "images_encoded", len(chunk))
        return torch.cat(out)

    def pixels(self, images: Sequence[Image]) -> torch.Tensor:
        """[N, 3, S, S] float32 model input. When the preprocessing is the usual resize /
        crop on PIL images followed by to-tensor and normalise, only the PIL stage runs per
        image; the uint8 results are stacked and scaled and normalised in one tensor op
        (the same arithmetic, without N small tensor ops that each wake torch's threads)."""
        split = _split_preprocess(self.preprocess)
        if split is not None:
            pil_stage, mean, std = split
            arrays = [np.asarray(pil_stage(im.pil), dtype=np.uint8) for im in images]
            if arrays and all(a.ndim == 3 and a.shape == arrays[0].shape for a in arrays):
                batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255)
                return batch.sub_(mean.view(1, -1, 1, 1)).div_(std.view(1, -1, 1, 1))
        return torch.stack([self.preprocess(im.pil) for im in images])

    def _encode_texts(self, texts: list[str]) -> torch.Tensor:
        """Embeddings of ``texts``: tokenised here, encoded in the text lane's batch."""

        def rows() -> list[tuple[str, torch.Tensor]]:
            try:
                tokens = self.tokenizer(texts)
            except Exception as exc:
                raise ModelError(f"CLIP tokenizer failed: {type(exc).__name__}: {exc}") from exc
            return list(zip(texts, tokens, strict=True))

        return self.lanes.after(
            "text_encoder", self._encode_tokens, rows, max_batch=self.max_batch, key=_row_key
        )

    @on_model_thread
    def _encode_tokens(self, rows: list[tuple[str, torch.Tensor]]) -> torch.Tensor:
        """[M, D] embeddings of tokenised texts, ``batch_size`` per forward."""
        out = []
        for start in range(0, len(rows), self.max_batch):
            chunk = torch.stack([tokens for _, tokens in rows[start : start + self.max_batch]])
            try:
                with torch.inference_mode():
                    feats = self.model.encode_text(chunk.to(self.device))
                    out.append(F.normalize(feats.float(), dim=-1).cpu())
            except Exception as exc:
                raise ModelError(f"CLIP text encoder failed: {type(exc).__name__}: {exc}") from exc
            self._count("text_encoder", "texts_encoded", len(chunk))
        return torch.cat(out)


def _row_key(row: tuple[Hashable, Any]) -> Hashable:
    """A lane row's identity: the image hash, the region's key or the text."""
    return row[0]


def _mask_digest(mask: np.ndarray | None) -> str | None:
    """A short digest of a boolean mask (bits packed first: 8 pixels a byte)."""
    if mask is None:
        return None
    packed = np.packbits(np.ascontiguousarray(mask, dtype=bool))
    return hashlib.blake2b(packed.tobytes(), digest_size=16).hexdigest() + f"{mask.shape}"


def _split_preprocess(
    preprocess: Callable[[Any], torch.Tensor],
) -> tuple[Callable[[Any], Any], torch.Tensor, torch.Tensor] | None:
    """(the PIL stage, mean, std) of a torchvision ``Compose`` that ends in to-tensor and
    an out-of-place normalise (open_clip's eval transform); None for anything else."""
    steps = list(getattr(preprocess, "transforms", None) or [])
    if len(steps) < 2:
        return None
    to_tensor, normalize = steps[-2], steps[-1]
    if type(to_tensor).__name__ not in ("ToTensor", "MaybeToTensor"):
        return None
    if type(normalize).__name__ != "Normalize" or getattr(normalize, "inplace", True):
        return None
    mean = torch.as_tensor(normalize.mean, dtype=torch.float32)
    std = torch.as_tensor(normalize.std, dtype=torch.float32)
    return type(preprocess)(steps[:-2]), mean, std


_RANDOM_INIT_NOTES = (
    "No pretrained weights loaded",
    "Local config loaded, but no CLIP weights",
    "Potential checkpoint path",
)


class _DropRandomInitNotes(logging.Filter):
    """open_clip warns "initialized randomly" whenever create_model loads no checkpoint
    itself; wrong here, where the checkpoint is loaded right after (or on purpose absent)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_RANDOM_INIT_NOTES)


@contextlib.contextmanager
def _quiet_open_clip(active: bool) -> Iterator[None]:
    if not active:
        yield
        return
    root = logging.getLogger()  # open_clip logs through the root logger
    note_filter = _DropRandomInitNotes()
    root.addFilter(note_filter)
    try:
        yield
    finally:
        root.removeFilter(note_filter)


_REGISTERED: set[str] = set()
_REGISTER_LOCK = threading.Lock()


def _register_config(path: str) -> None:
    """Add a bare config file to open_clip's architecture registry (once; by file stem)."""
    import open_clip

    with _REGISTER_LOCK:
        if path in _REGISTERED:
            return
        if Path(path).stem in open_clip.list_models():
            log.warning("model config %s replaces open_clip's '%s'", path, Path(path).stem)
        open_clip.add_model_config(path)
        _REGISTERED.add(path)


def _build_loaded(name: str, checkpoint: str, kwargs: dict[str, Any]) -> torch.nn.Module | None:
    """Build the architecture on the meta device and take the checkpoint's tensors as its
    parameters: skips random initialisation (seconds for ViT-L on a CPU). Returns None when
    the model has state the checkpoint does not carry (the caller then builds it normally)."""
    import open_clip

    try:
        with torch.device("meta"):
            model = open_clip.create_model(name, device="meta", **kwargs)
        loader = model.load_state_dict
        model.load_state_dict = lambda state, strict=True: loader(state, strict=strict, assign=True)
        try:
            open_clip.load_checkpoint(model, checkpoint, strict=True)
        finally:
            del model.load_state_dict
    except Exception as exc:
        log.debug("meta-device load of %s failed (%s); building normally", name, exc)
        return None
    for module_name, module in model.named_modules():
        for buffer_name, buffer in list(module.named_buffers(recurse=False)):
            if not buffer.is_meta:
                continue
            n = buffer.shape[0] if buffer.ndim == 2 and buffer.shape[0] == buffer.shape[1] else 0
            if buffer_name != "attn_mask" or not n:
                log.debug("meta-device load of %s leaves %s.%s", name, module_name, buffer_name)
                return None
            causal = torch.full((n, n), float("-inf")).triu_(1)  # open_clip's causal mask
            setattr(module, buffer_name, causal)
    if any(p.is_meta for p in model.parameters()):
        return None
    return model
