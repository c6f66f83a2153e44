"""Drawing boxes, labels, masks and points on images: used by the Tag tool and by traces."""

from __future__ import annotations

import colorsys
from functools import cache

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont

from .types import Image, Object, ObjectList, PointList


def palette(i: int) -> tuple[int, int, int]:
    """Distinct, stable colours (golden-ratio hues)."""
    h = (i * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


@cache
def font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def draw_objects(
    image: Image,
    objects: ObjectList | list[Object],
    *,
    labels: bool = True,
    masks: bool = True,
    scores: bool = False,
) -> PILImage.Image:
    """The image with each object's mask tinted, its box outlined and its label written."""
    base = image.pil.copy()
    items = list(objects)
    if masks:
        overlay = np.array(base, dtype=np.float32)
        for i, obj in enumerate(items):
            if obj.mask is not None and obj.mask.shape == (image.height, image.width):
                color = np.array(palette(i), dtype=np.float32)
                m = obj.mask.array
                overlay[m] = overlay[m] * 0.45 + color * 0.55
        base = PILImage.fromarray(overlay.astype(np.uint8))
    draw = ImageDraw.Draw(base)
    width = max(2, round(min(image.size) / 200))
    text_size = max(12, round(min(image.size) / 28))
    f = font(text_size)
    for i, obj in enumerate(items):
        color = palette(i)
        b = obj.box.clip(image.width, image.height)
        draw.rectangle((b.x0, b.y0, b.x1, b.y1), outline=color, width=width)
        text = (obj.label or "") if labels else ""
        if scores and obj.score is not None:
            text = f"{text} {obj.score:.2f}".strip()
        if text:
            _label(draw, (b.x0, b.y0), text, color, f)
    return base


def draw_points(image: Image, points: PointList) -> PILImage.Image:
    base = image.pil.copy()
    draw = ImageDraw.Draw(base)
    r = max(4, round(min(image.size) / 80))
    f = font(max(12, round(min(image.size) / 28)))
    for i, p in enumerate(points):
        color = palette(i)
        draw.ellipse((p.x - r, p.y - r, p.x + r, p.y + r), fill=color, outline=(255, 255, 255))
        if p.label:
            _label(draw, (p.x + r, p.y - r), p.label, color, f)
    return base


def _label(
    draw: ImageDraw.ImageDraw,
    xy: tuple[float, float],
    text: str,
    color: tuple[int, int, int],
    f: ImageFont.ImageFont | ImageFont.FreeTypeFont,
) -> None:
    x, y = xy
    left, top, right, bottom = draw.textbbox((0, 0), text, font=f)
    h = bottom - top + 4
    y = y - h if y - h >= 0 else y
    draw.rectangle((x, y, x + right - left + 6, y + h), fill=color)
    luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    ink = (0, 0, 0) if luminance > 150 else (255, 255, 255)
    draw.text((x + 3, y + 2 - top), text, fill=ink, font=f)
