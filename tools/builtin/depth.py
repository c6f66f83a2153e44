"""Depth: how far away an image region is, and a picture of it (a monocular depth model)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image as PILImage

from tools.base import Tool, ToolContext
from tools.types import Image

from .crop import Region, region_box


class Depth(Tool):
    """The median relative depth of an image, or of an object in it (the first of a list):
    larger is farther, and the whole picture's median is 1.0, so values compare within one
    picture (not metres). Sort objects by it to find the nearest or the farthest."""

    name = "Depth"
    aliases = ("ComputeDepth", "MedianDepth")
    examples = ("DEPTH0=Depth(image=IMAGE, object=OBJ0)",)
    requires = ("depth",)
    max_batch = 16

    def run(self, ctx: ToolContext, image: Image, object: Region | None = None) -> float:
        """Args:
        image: the picture (its depth map is computed once and cached)
        object: the object, box or objects whose depth to measure (default: the whole image)
        """
        return self.one(ctx, image=image, object=object)

    def run_batch(self, ctx: ToolContext, calls: Sequence[dict[str, Any]]) -> list[Any]:
        from tools.backends.depth import region_median

        model = ctx.model("depth")
        ctx.note(model=model.spec.label(), device=model.device)
        maps = model.depth_maps([c["image"] for c in calls])
        out: list[Any] = []
        for call, depth in zip(calls, maps, strict=True):
            region = call.get("object")
            if region is None:
                out.append(region_median(depth))
                continue
            box = region_box(ctx, call["image"], region)
            out.append(region_median(depth, box.as_tuple()))
        return out


class DepthMap(Tool):
    """A picture of the image's depth: nearer is brighter (for looking at, or for a model to
    see the scene's layout). Shares the depth model's cached map with Depth."""

    name = "DepthMap"
    examples = ("IMAGE0=DepthMap(image=IMAGE)",)
    requires = ("depth",)
    max_batch = 16

    def run(self, ctx: ToolContext, image: Image) -> Image:
        """Args:
        image: the picture
        """
        return self.one(ctx, image=image)

    def run_batch(self, ctx: ToolContext, calls: Sequence[dict[str, Any]]) -> list[Any]:
        model = ctx.model("depth")
        ctx.note(model=model.spec.label(), device=model.device)
        maps = model.depth_maps([c["image"] for c in calls])
        return [
            Image(
                PILImage.fromarray(depth_picture(d)), name=c["image"].name, origin=c["image"].origin
            )
            for c, d in zip(calls, maps, strict=True)
        ]


def depth_picture(depth: np.ndarray) -> np.ndarray:
    """H×W×3 uint8 grey levels of a depth map: the nearest pixel white, the farthest black
    (scaled between the 2nd and 98th percentiles, so a few outliers do not wash it out)."""
    near = 1.0 / np.maximum(depth.astype(np.float64), 1e-6)
    lo, hi = np.percentile(near, [2, 98])
    scaled = np.clip((near - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(near)
    grey = (scaled * 255).round().astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)
