"""Masks for objects that only have boxes: GrabCut inside the box, or the box itself.

Mask-driven edits (ColorPop, BgBlur, Replace, Emoji) need a region, not a rectangle; when a
detector gave only boxes (FaceDet, Loc), OpenCV's GrabCut, seeded with the box, separates
the object from the background around it.
"""

from __future__ import annotations

import cv2
import numpy as np

from .convert import box_mask
from .types import Box, Image, Mask, Object

MAX_SIDE = 320  # GrabCut runs on a region downscaled to this size: it is O(pixels)


def grabcut(image: Image, box: Box, *, iterations: int = 3) -> Mask | None:
    """Foreground inside ``box`` by GrabCut, or None when it finds nothing plausible."""
    w, h = image.size
    b = box.clip(w, h).rounded()
    if b.width < 8 or b.height < 8:
        return None
    margin = max(b.width, b.height) * 0.25
    region = b.expanded(margin).clip(w, h).rounded()
    if region.width <= b.width + 2 and region.height <= b.height + 2:
        return None  # the box fills the image: GrabCut has no background to learn from
    x0, y0 = int(region.x0), int(region.y0)
    crop = image.array[y0 : int(region.y1), x0 : int(region.x1)]
    scale = min(1.0, MAX_SIDE / max(crop.shape[:2]))
    small = (
        cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        if scale < 1
        else crop
    )
    rect = (
        int((b.x0 - x0) * scale),
        int((b.y0 - y0) * scale),
        max(int(b.width * scale), 2),
        max(int(b.height * scale), 2),
    )
    mask = np.zeros(small.shape[:2], np.uint8)
    bgd = np.zeros((1, 65), np.float64)
    fgd = np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(
            cv2.cvtColor(np.ascontiguousarray(small), cv2.COLOR_RGB2BGR),
            mask,
            rect,
            bgd,
            fgd,
            iterations,
            cv2.GC_INIT_WITH_RECT,
        )
    except cv2.error:
        return None
    fg = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
    if scale < 1:
        fg = cv2.resize(fg, (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_NEAREST)
    full = np.zeros((h, w), bool)
    full[y0 : y0 + fg.shape[0], x0 : x0 + fg.shape[1]] = fg.astype(bool)
    area = full.sum()
    if area < 0.05 * b.area or (area > 0.98 * b.area and b.area > 0.9 * w * h):
        return None
    return Mask(full)


def object_mask(image: Image, obj: Object, *, refine: bool = True) -> tuple[Mask, str]:
    """The object's region on ``image`` and where it came from ('mask', 'grabcut', 'box')."""
    if obj.mask is not None and obj.mask.shape == (image.height, image.width):
        return obj.mask, "mask"
    if refine:
        cut = grabcut(image, obj.box)
        if cut is not None:
            return cut, "grabcut"
    return box_mask(obj.box, image.size), "box"


def union_mask(
    image: Image, objects: list[Object], *, refine: bool = True
) -> tuple[Mask, list[str]]:
    """The union of every object's region, and how each region was obtained."""
    total = np.zeros((image.height, image.width), bool)
    sources = []
    for obj in objects:
        m, source = object_mask(image, obj, refine=refine)
        total |= m.array
        sources.append(source)
    return Mask(total), sources
