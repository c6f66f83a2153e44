"""Depth: how far away an image region is (a monocular depth model)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
