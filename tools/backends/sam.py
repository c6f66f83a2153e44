"""Segment Anything (segment-anything 1.0): masks from boxes or points, and automatic masks.

``spec.model`` is a variant of ``segment_anything.sam_model_registry`` ("vit_h", "vit_l",
"vit_b"), or any name with ``options["architecture"]`` describing a custom SAM (what
:meth:`SamBackend.tiny_spec` writes); ``spec.weights`` the checkpoint, absolute or relative to
``settings.cache_dir``. The image embedding (with the resize metadata SamPredictor needs) is
cached per image content hash, so every prompt on an image after the first skips the image
encoder. Each :meth:`SamBackend.predictor` call returns its own SamPredictor over the shared
model, so threads never share predictor state.

The image encoder runs in the placement's dtype; the prompt encoder and mask decoder stay in
float32, because segment-anything builds their positional encodings in float32.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ..cache import ByteLRU
from ..errors import ModelError
from ..settings import ModelSettings, ModelSpec
from ..types import Box, Image, Mask, Object, ObjectList
from .base import Backend, Located, Placement, file_locate
from .threads import ModelThread, on_model_thread

log = logging.getLogger("vischain.models")

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)
CHECKPOINT_URL = "https://dl.fbaipublicfiles.com/segment_anything/"

# A custom architecture: keys of options["architecture"]; defaults are SAM's own (ViT-B).
DEFAULT_ARCHITECTURE: dict[str, Any] = {
    "image_size": 1024,
    "patch_size": 16,
    "encoder_embed_dim": 768,
    "encoder_depth": 12,
    "encoder_num_heads": 12,
    "encoder_global_attn_indexes": [2, 5, 8, 11],
    "window_size": 14,
    "mlp_ratio": 4.0,
    "prompt_embed_dim": 256,  # the prompt encoder's positional features are half of this
    "mask_in_chans": 16,
    "decoder_depth": 2,
    "decoder_mlp_dim": 2048,
    "decoder_num_heads": 8,
    "iou_head_depth": 3,
    "iou_head_hidden_dim": 256,
}
TINY_ARCHITECTURE: dict[str, Any] = {
    "image_size": 64,
    "patch_size": 8,
    "encoder_embed_dim": 32,
    "encoder_depth": 2,
    "encoder_num_heads": 2,
    "encoder_global_attn_indexes": [1],
    "window_size": 4,
    "mlp_ratio": 2.0,
    "prompt_embed_dim": 32,
    "mask_in_chans": 8,
    "decoder_depth": 2,
    "decoder_mlp_dim": 64,
    "decoder_num_heads": 2,
    "iou_head_depth": 3,
    "iou_head_hidden_dim": 32,
}
TINY_SEED = 20240612

# SamAutomaticMaskGenerator settings that spec.options may override.
AUTOMATIC_OPTIONS: dict[str, Any] = {
    "points_per_side": 32,
    "points_per_batch": 64,
    "pred_iou_thresh": 0.88,
    "stability_score_thresh": 0.95,
    "box_nms_thresh": 0.7,
    "crop_n_layers": 0,
    "min_mask_region_area": 0,
}


@functools.cache
def _predictor_class() -> type:
    """SamPredictor whose ``set_image`` takes the embedding from the backend's cache (so
    SamAutomaticMaskGenerator, which calls set_image itself, shares the cache too)."""
    from segment_anything import SamPredictor

    class CachedSamPredictor(SamPredictor):
        def __init__(self, backend: SamBackend) -> None:
            super().__init__(backend.model)
            self.backend = backend
            self.was_cached = False

        def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
            if image_format != self.model.image_format:
                image = image[..., ::-1]
            self.set_embedding(Image(_pil(image)))

        def set_embedding(self, image: Image) -> None:
            embedding, self.was_cached = self.backend.embedding(image)
            self.reset_image()
            self.features = embedding["features"]
            self.input_size = embedding["input_size"]
            self.original_size = embedding["original_size"]
            self.is_image_set = True

    return CachedSamPredictor


def _pil(array: np.ndarray) -> Any:
    from PIL import Image as PILImage

    return PILImage.fromarray(np.ascontiguousarray(array, dtype=np.uint8))


class ImagePredictor:
    """Prompted masks on one image whose embedding is already computed."""

    def __init__(self, backend: SamBackend, image: Image, predictor: Any) -> None:
        self.backend = backend
        self.image = image
        self._predictor = predictor

    def model_thread(self) -> ModelThread | None:
        """Its decoder calls run on the SAM model's own thread, like the backend's."""
        return self.backend.model_thread()

    @property
    def embedding(self) -> torch.Tensor:
        return self._predictor.features

    @on_model_thread
    def predict_boxes(self, boxes: Sequence[Box]) -> list[tuple[Mask, float]]:
        """One mask (full image size) and predicted IoU per box, in one decoder batch."""
        if not boxes:
            return []
        p = self._predictor
        coords = torch.tensor([b.as_tuple() for b in boxes], dtype=torch.float32)
        with torch.inference_mode():
            coords = p.transform.apply_boxes_torch(coords, p.original_size).to(p.device)
            masks, scores = self._run(None, None, coords, multimask=False)
        return [(Mask(masks[i, 0].copy()), float(scores[i, 0])) for i in range(len(boxes))]

    @on_model_thread
    def predict_points(self, points: Sequence[tuple[float, float]]) -> list[tuple[Mask, float]]:
        """For each point (a positive click), SAM's three candidate masks are predicted and the
        one with the best predicted IoU is kept; all points in one decoder batch."""
        if not points:
            return []
        p = self._predictor
        coords = torch.tensor([[list(pt)] for pt in points], dtype=torch.float32)
        with torch.inference_mode():
            coords = p.transform.apply_coords_torch(coords, p.original_size).to(p.device)
            labels = torch.ones(coords.shape[:2], dtype=torch.int, device=p.device)
            masks, scores = self._run(coords, labels, None, multimask=True)
        best = scores.argmax(axis=1)
        return [
            (Mask(masks[i, best[i]].copy()), float(scores[i, best[i]])) for i in range(len(points))
        ]

    def _run(
        self,
        coords: torch.Tensor | None,
        labels: torch.Tensor | None,
        boxes: torch.Tensor | None,
        *,
        multimask: bool,
    ) -> tuple[np.ndarray, np.ndarray]:
        try:
            masks, scores, _ = self._predictor.predict_torch(
                coords, labels, boxes, multimask_output=multimask
            )
        except Exception as exc:
            raise ModelError(f"SAM mask decoder failed: {type(exc).__name__}: {exc}") from exc
        self.backend.count("mask_decoder")
        return masks.cpu().numpy(), scores.float().cpu().numpy()


class SamBackend(Backend):
    """A loaded SAM with a per-image embedding cache."""

    family: ClassVar[str] = "sam"
    remote_sessions: ClassVar[Mapping[str, tuple[int, type]]] = {"predictor": (0, ImagePredictor)}

    def __init__(self, spec: ModelSpec, placement: Placement, model: torch.nn.Module) -> None:
        super().__init__(spec, placement)
        self.model = model.eval()
        self._stats_lock = threading.Lock()

    # --- construction ----------------------------------------------------------------------

    @classmethod
    def from_objects(
        cls,
        model: torch.nn.Module,
        *,
        spec: ModelSpec | None = None,
        placement: Placement | None = None,
        cache: ByteLRU | None = None,
    ) -> SamBackend:
        """Wrap a ``segment_anything`` Sam already in memory (``cache``: a feature cache for
        its embeddings; the pool attaches its own only to models it loads)."""
        if placement is None:
            param = next(model.image_encoder.parameters())
            placement = Placement(str(param.device), param.dtype)
        else:
            _place(model, placement)
        # a distinct key per object, so two in-memory models never share cached embeddings
        spec = spec or ModelSpec(family=cls.family, model=f"in-memory@{id(model):x}")
        backend = cls(spec, placement, model)
        backend.cache = cache
        return backend

    @classmethod
    def locate(cls, spec: ModelSpec, settings: ModelSettings) -> Located:
        problem = _architecture_problem(spec)
        if problem:
            return Located(False, hint=problem)
        located = file_locate(_checkpoint_path(spec, settings), f"SAM checkpoint for {spec.model}")
        if not located.present and spec.model in _registry() and spec.weights:
            name = Path(spec.weights).name
            hint = (
                f"{located.hint}; download {CHECKPOINT_URL}{name} into {settings.cache_dir} "
                "where the internet is reachable"
            )
            return Located(False, located.where, hint)
        return located

    @classmethod
    def load(cls, spec: ModelSpec, placement: Placement, settings: ModelSettings) -> Backend:
        problem = _architecture_problem(spec)
        if problem:
            raise ModelError(f"cannot load {spec.label()}: {problem}")
        located = file_locate(_checkpoint_path(spec, settings), "SAM checkpoint")
        if not located.present:
            raise ModelError(f"cannot load {spec.label()}: {located.hint}")
        state = torch.load(located.where, map_location="cpu", weights_only=True)
        if isinstance(state, Mapping) and "model" in state and isinstance(state["model"], Mapping):
            state = state["model"]
        with torch.device("meta"):  # no random init: the checkpoint supplies every weight
            model = _build(spec)
        model.load_state_dict(state, strict=True, assign=True)
        # the normalisation constants are not saved in checkpoints
        model.pixel_mean = torch.tensor(PIXEL_MEAN).view(-1, 1, 1)
        model.pixel_std = torch.tensor(PIXEL_STD).view(-1, 1, 1)
        leftover = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
        if leftover:
            raise ModelError(f"SAM checkpoint lacks {', '.join(leftover[:5])}")
        _place(model, placement)
        return cls(spec, placement, model.eval())

    @classmethod
    def estimate_bytes(cls, spec: ModelSpec, settings: ModelSettings) -> int | None:
        path = _checkpoint_path(spec, settings)
        return Path(path).stat().st_size if path and Path(path).is_file() else None

    @classmethod
    def tiny_spec(cls, directory: Path) -> ModelSpec:
        """A tiny random SAM (64-pixel ViT encoder) saved as ``directory/tiny-sam/sam_tiny.pth``;
        its automatic-mask options use a 4×4 point grid and no quality filtering."""
        target = Path(directory) / "tiny-sam"
        target.mkdir(parents=True, exist_ok=True)
        spec = ModelSpec(
            family=cls.family,
            model="tiny",
            weights=str(target / "sam_tiny.pth"),
            options={
                "architecture": dict(TINY_ARCHITECTURE),
                "points_per_side": 4,
                "pred_iou_thresh": 0.0,
                "stability_score_thresh": 0.0,
            },
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(TINY_SEED)
            model = _build(spec)
            # SAM zero-initialises the relative position tables; random ones exercise more
            for name, param in model.named_parameters():
                if "rel_pos" in name:
                    torch.nn.init.normal_(param, std=0.02)
        torch.save(model.state_dict(), target / "sam_tiny.pth")
        return spec

    # --- instance -------------------------------------------------------------------------

    def modules(self) -> list[Any]:
        return [self.model]

    def count(self, counter: str, n: int = 1) -> None:
        with self._stats_lock:
            self.stats[counter] += n

    @on_model_thread
    def embedding(self, image: Image) -> tuple[dict[str, Any], bool]:
        """The image's SAM embedding and resize metadata (cached); returns (value, cached)."""
        return self.cached(("sam_embedding", image.hash), lambda: self._encode(image))

    @on_model_thread
    def predictor(self, image: Image) -> tuple[ImagePredictor, bool]:
        """A predictor with ``image`` set; the bool says the embedding came from the cache."""
        predictor = _predictor_class()(self)
        predictor.set_embedding(image)
        return ImagePredictor(self, image, predictor), predictor.was_cached

    @on_model_thread
    def automatic(
        self, image: Image, *, max_masks: int = 64, min_area_fraction: float = 0.001
    ) -> ObjectList:
        """Masks for everything (SAM's point-grid generator), largest first; each Object has
        the mask, its tight box and the predicted IoU as score."""
        from segment_anything import SamAutomaticMaskGenerator

        options = {k: self.spec.options.get(k, v) for k, v in AUTOMATIC_OPTIONS.items()}
        generator = SamAutomaticMaskGenerator(self.model, **options)
        generator.predictor = _predictor_class()(self)
        try:
            with torch.inference_mode():
                records = generator.generate(np.ascontiguousarray(image.array))
        except Exception as exc:
            raise ModelError(f"SAM automatic masks failed: {type(exc).__name__}: {exc}") from exc
        min_area = min_area_fraction * image.width * image.height
        objects = []
        for record in sorted(records, key=lambda r: r["area"], reverse=True):
            mask = Mask(record["segmentation"])
            box = mask.box()
            if box is None or mask.area < min_area:
                continue
            extra = {"stability_score": float(record["stability_score"]), "area": mask.area}
            objects.append(
                Object(box=box, mask=mask, score=float(record["predicted_iou"]), extra=extra)
            )
            if len(objects) >= max_masks:
                break
        return ObjectList(tuple(objects))

    def _encode(self, image: Image) -> dict[str, Any]:
        from segment_anything.utils.transforms import ResizeLongestSide

        encoder = self.model.image_encoder
        resized = ResizeLongestSide(encoder.img_size).apply_image(np.asarray(image.array))
        try:
            with torch.inference_mode():
                pixels = torch.as_tensor(resized, device=self.device).permute(2, 0, 1)[None]
                pixels = self.model.preprocess(pixels.float())  # normalise and pad, in float32
                dtype = next(encoder.parameters()).dtype
                features = encoder(pixels.to(dtype)).float()
        except Exception as exc:
            raise ModelError(f"SAM image encoder failed: {type(exc).__name__}: {exc}") from exc
        self.count("image_encoder")
        return {
            "features": features,
            "input_size": tuple(resized.shape[:2]),
            "original_size": (image.height, image.width),
        }


# --- building -------------------------------------------------------------------------------


def _registry() -> dict[str, Any]:
    from segment_anything import sam_model_registry

    return sam_model_registry


def _architecture_problem(spec: ModelSpec) -> str | None:
    if spec.model in _registry():
        return None
    if "architecture" not in spec.options:
        variants = ", ".join(k for k in _registry() if k != "default")
        return f"unknown SAM variant '{spec.model}' (use {variants}, or options.architecture)"
    unknown = set(spec.options["architecture"]) - set(DEFAULT_ARCHITECTURE)
    if unknown:
        return f"unknown SAM architecture keys: {', '.join(sorted(unknown))}"
    return None


def _checkpoint_path(spec: ModelSpec, settings: ModelSettings) -> str | None:
    if not spec.weights:
        return None
    path = Path(os.path.expandvars(spec.weights)).expanduser()
    if path.is_absolute():
        return str(path)
    for candidate in (Path(settings.cache_dir) / path, path):
        if candidate.is_file():
            return str(candidate)
    return str(Path(settings.cache_dir) / path)


def _build(spec: ModelSpec) -> torch.nn.Module:
    if spec.model in _registry() and "architecture" not in spec.options:
        return _registry()[spec.model]()
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    a = {**DEFAULT_ARCHITECTURE, **spec.options.get("architecture", {})}
    size, dim = int(a["image_size"]), int(a["prompt_embed_dim"])
    grid = size // int(a["patch_size"])
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=a["encoder_depth"],
            embed_dim=a["encoder_embed_dim"],
            img_size=size,
            mlp_ratio=a["mlp_ratio"],
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=a["encoder_num_heads"],
            patch_size=a["patch_size"],
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=tuple(a["encoder_global_attn_indexes"]),
            window_size=a["window_size"],
            out_chans=dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=dim,
            image_embedding_size=(grid, grid),
            input_image_size=(size, size),
            mask_in_chans=a["mask_in_chans"],
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=a["decoder_depth"],
                embedding_dim=dim,
                mlp_dim=a["decoder_mlp_dim"],
                num_heads=a["decoder_num_heads"],
            ),
            transformer_dim=dim,
            iou_head_depth=a["iou_head_depth"],
            iou_head_hidden_dim=a["iou_head_hidden_dim"],
        ),
        pixel_mean=list(PIXEL_MEAN),
        pixel_std=list(PIXEL_STD),
    )
    return sam.eval()


def _place(model: torch.nn.Module, placement: Placement) -> None:
    """Everything on the device; the image encoder in the placement's dtype, the rest (prompt
    encoder, mask decoder, normalisation) in float32."""
    model.to(device=placement.device, dtype=torch.float32)
    model.image_encoder.to(dtype=placement.dtype)
