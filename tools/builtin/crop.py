"""Crop and its spatial variants: the region of an object, or what lies beside it."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image as PILImage

from tools.base import FunctionTool, ToolContext, tool
from tools.errors import ToolError
from tools.types import Box, Image, Object, ObjectList

Region = Box | Object | ObjectList


def region_box(ctx: ToolContext, image: Image, region: Region) -> Box:
    """The box a crop is about: a Box, an Object's box, or the best (first) object of a list.
    An empty list means the whole image, as in VisProg, and the trace says so."""
    if isinstance(region, Box):
        return region
    if isinstance(region, Object):
        return region.box
    region = region.on(image)
    if len(region) == 0:
        ctx.note(warning="no object to crop around: used the whole image")
        return Box(0, 0, image.width, image.height)
    if len(region) > 1:
        ctx.note(note=f"{len(region)} objects: used the first (highest-ranked) one")
    return region[0].box


def _cut(image: Image, box: Box, what: str) -> Image:
    b = box.clip(image.width, image.height)
    if b.width < 1 or b.height < 1:
        where = f" {what}" if what else ""
        raise ToolError(f"nothing to crop{where}: the region is empty ({b.as_tuple()})")
    return image.crop(b)


@tool(
    name="Crop",
    examples=("IMAGE0=Crop(image=IMAGE, box=BOX0)",),
)
def crop(ctx: ToolContext, image: Image, box: Region, margin: float = 0.0) -> Image:
    """Cut out the region of an object (the first one of a list), optionally enlarged.

    Args:
        image: the picture to cut from
        box: the object or box to cut out
        margin: extra border, as a fraction of the box size on each side
    """
    b = region_box(ctx, image, box)
    if margin:
        b = Box(
            b.x0 - b.width * margin,
            b.y0 - b.height * margin,
            b.x1 + b.width * margin,
            b.y1 + b.height * margin,
        )
    return _cut(image, b, "")


Corner = tuple[float, float]


def _beside(
    name: str, aliases: tuple[str, ...], where: str, half: str, keep: Callable[[Image, Corner], Box]
) -> FunctionTool:
    """A tool that keeps the part of the image ``where`` (e.g. 'left of') an object's centre;
    ``keep(image, centre)`` is that part's box."""

    def crop_beside(ctx: ToolContext, image: Image, box: Region) -> Image:
        return _cut(image, keep(image, region_box(ctx, image, box).center), f"{where} the object")

    crop_beside.__doc__ = f"""The part of the image {where} an object's centre (the {half} half if
    there is none).

    Args:
        image: the picture to cut from
        box: the object that marks the edge
    """
    example = f"IMAGE1={name}(image=IMAGE, box=BOX0)"
    return tool(name=name, aliases=aliases, examples=(example,))(crop_beside)


crop_left = _beside("CropLeft", ("CropLeftOf", "CROP_LEFTOF"), "left of", "left",
                    lambda im, c: Box(0, 0, c[0], im.height))  # fmt: skip
crop_right = _beside("CropRight", ("CropRightOf", "CROP_RIGHTOF"), "right of", "right",
                     lambda im, c: Box(c[0], 0, im.width, im.height))  # fmt: skip
crop_above = _beside("CropAbove", ("CropTop", "CROP_ABOVE"), "above", "top",
                     lambda im, c: Box(0, 0, im.width, c[1]))  # fmt: skip
crop_below = _beside("CropBelow", ("CropBottom", "CROP_BELOW"), "below", "bottom",
                     lambda im, c: Box(0, c[1], im.width, im.height))  # fmt: skip


# VisProg's names for relations in depth; a 2-D crop cannot separate what is in front of an
# object from what is behind it, so (as in VisProg) they all cut out the object's
# surroundings.
DEPTH_RELATIONS = ("CROP_BEHIND", "CROP_FRONTOF", "CROP_INFRONTOF", "CROP_INFRONT", "CROP_AHEAD")


@tool(
    name="CropAround",
    aliases=("CropBehind", "CropFrontOf", "CropInFrontOf", *DEPTH_RELATIONS),
    examples=("IMAGE1=CropAround(image=IMAGE, box=BOX0)",),
)
def crop_around(ctx: ToolContext, image: Image, box: Region, factor: float = 1.5) -> Image:
    """The surroundings of an object: its box enlarged `factor` times about its centre,
    clipped to the image (the whole image if there is no object). Use it for things in
    front of or behind an object.

    Args:
        image: the picture to cut from
        box: the object whose surroundings to cut out
        factor: how many times wider and taller than the object's box (at least 1)
    """
    if not 1.0 <= factor <= 100.0:
        raise ToolError(f"CropAround: factor must be between 1 and 100, got {factor}")
    b = region_box(ctx, image, box)
    cx, cy = b.center
    half_w, half_h = b.width * factor / 2, b.height * factor / 2
    return _cut(image, Box(cx - half_w, cy - half_h, cx + half_w, cy + half_h), "around the object")


def object_region(
    image: Image, obj: Object, *, pad: float = 0.1, mask_background: bool = True
) -> tuple[tuple[int, int, int, int], np.ndarray | None]:
    """The pixels CLIP scores an object by: its box grown by ``pad`` of its longer side,
    clipped to the image (the whole image if nothing is left), as integer corners
    (x0, y0, x1, y1); and its mask where it has one of the image's size (pixels outside it
    are to be greyed, so CLIP scores the object rather than its surroundings)."""
    b = obj.box.expanded(max(obj.box.width, obj.box.height) * pad).clip(image.width, image.height)
    if b.width < 1 or b.height < 1:
        b = Box(0, 0, image.width, image.height)
    r = b.rounded()  # the pixels Image.crop would keep
    corners = (int(r.x0), int(r.y0), int(r.x1), int(r.y1))
    mask = obj.mask
    if mask_background and mask is not None and mask.shape == (image.height, image.width):
        return corners, mask.array
    return corners, None


def object_crop(
    image: Image, obj: Object, *, pad: float = 0.1, mask_background: bool = True
) -> Image:
    """The object cut out with a little context; outside its mask (if any) greyed, so CLIP
    scores the object rather than what surrounds it (as in VisProg's Select)."""
    (x0, y0, x1, y1), mask = object_region(image, obj, pad=pad, mask_background=mask_background)
    if mask is None:
        return image.crop(Box(x0, y0, x1, y1))
    arr = image.array[y0:y1, x0:x1].copy()  # grey only the crop, not a copy of the picture
    arr[~mask[y0:y1, x0:x1]] = 127
    origin = (image.origin[0] + x0, image.origin[1] + y0)
    return Image(PILImage.fromarray(arr), name=image.name, origin=origin)
