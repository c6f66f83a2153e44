"""Monocular depth: Depth Anything (V1/V2) and DPT / MiDaS through transformers.

Both families predict *relative inverse depth* (larger = nearer) at the model's input
resolution. :meth:`DepthBackend.depth_maps` turns that into what programs compare: an
H×W float32 map at the picture's own size where **larger means farther**, scaled so the
picture's median is 1.0 (values are relative: comparable within one picture, not metres).
Maps are cached per picture content, so the patches of one image share one forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..settings import ModelSpec
from ..types import Image
from .hf import HFBackend, redraw, seeded
from .threads import on_model_thread

_EPS = 1e-6


def inverse_to_depth(inverse: np.ndarray) -> np.ndarray:
    """Relative depth (larger = farther, median 1.0) from relative inverse depth.

    Inverse depth is shifted to be positive (models' outputs have an arbitrary offset),
    inverted, and divided by its median.
    """
    inv = inverse.astype(np.float64)
    inv = inv - float(inv.min()) + max(float(np.ptp(inv)), _EPS) * 0.05
    depth = 1.0 / np.maximum(inv, _EPS)
    median = float(np.median(depth))
    return (depth / (median if median > 0 else 1.0)).astype(np.float32)


class DepthBackend(HFBackend):
    """A transformers depth-estimation model and its image processor."""

    family = "depth_anything"
    model_class = "AutoModelForDepthEstimation"
    default_model = "depth-anything/Depth-Anything-V2-Small-hf"

    @on_model_thread
    def depth_maps(self, images: Sequence[Image]) -> list[np.ndarray]:
        """One relative depth map (H×W float32, larger = farther, median 1) per image, at
        each image's size; pictures seen before come from the cache; the rest share one
        batched forward pass."""

        def compute(first: list[int]) -> list[np.ndarray]:
            batch = [images[i] for i in first]
            inputs = self.processor(images=[im.pil for im in batch], return_tensors="pt")
            pixels = inputs["pixel_values"].to(self.device, self.dtype)
            with torch.inference_mode():
                predicted = self.model(pixel_values=pixels).predicted_depth
            self.stats["depth_forward"] += len(batch)
            out = []
            for k, image in enumerate(batch):
                resized = torch.nn.functional.interpolate(
                    predicted[k][None, None].float(),
                    size=(image.height, image.width),
                    mode="bicubic",
                    align_corners=False,
                )[0, 0]
                out.append(inverse_to_depth(resized.cpu().numpy()))
            return out

        return self.cached_many([("depth", image.hash) for image in images], compute)

    @classmethod
    def tiny_spec(cls, directory: Path) -> ModelSpec:
        """A Depth Anything with a 2-layer, 32-wide DINOv2 backbone and a 32-pixel input,
        saved like the real checkpoints and loaded through the real loader."""
        from transformers import (
            DepthAnythingConfig,
            DepthAnythingForDepthEstimation,
            DPTImageProcessor,
        )

        directory = Path(directory)
        backbone = {
            "model_type": "dinov2",
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "image_size": 32,
            "patch_size": 8,
            "out_features": ["stage1", "stage2"],
            "reshape_hidden_states": False,
        }
        config = DepthAnythingConfig(
            backbone_config=backbone,
            reassemble_hidden_size=32,
            patch_size=8,
            reassemble_factors=[1, 0.5],
            neck_hidden_sizes=[16, 32],
            fusion_hidden_size=16,
            head_hidden_size=8,
        )
        with seeded():
            model = DepthAnythingForDepthEstimation(config)
        redraw(model)
        model.save_pretrained(directory)
        size = {"height": 32, "width": 32}
        DPTImageProcessor(size=size, keep_aspect_ratio=False, ensure_multiple_of=8).save_pretrained(
            directory
        )
        return ModelSpec(family=cls.family, model=str(directory))


class DptDepthBackend(DepthBackend):
    """DPT / MiDaS (e.g. Intel/dpt-hybrid-midas, Intel/dpt-large), ViperGPT's depth model."""

    family = "dpt"
    default_model = "Intel/dpt-hybrid-midas"


def region_median(depth: np.ndarray, box: Any | None = None, mask: Any | None = None) -> float:
    """The median of a depth map inside a box (x0, y0, x1, y1 in pixels) or a boolean mask
    (the whole map when neither is given, or when the region holds no pixel)."""
    if mask is not None and mask.shape == depth.shape and mask.any():
        return float(np.median(depth[mask]))
    if box is not None:
        h, w = depth.shape
        x0, y0 = max(int(np.floor(box[0])), 0), max(int(np.floor(box[1])), 0)
        x1, y1 = min(int(np.ceil(box[2])), w), min(int(np.ceil(box[3])), h)
        if x1 > x0 and y1 > y0:
            return float(np.median(depth[y0:y1, x0:x1]))
    return float(np.median(depth))
