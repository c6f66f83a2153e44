"""How step values look in a trace: a JSON summary for every type, a picture where one helps
(images, boxes and masks drawn on the step's input image, points, crops). Files are the
writer's business (``orchestrator.writer``)."""

from __future__ import annotations

import reprlib
from typing import Any

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw

from sandbox import to_text
from tools.draw import draw_objects, draw_points
from tools.types import Box, Image, Mask, Object, ObjectList, Point, PointList, value_type
from tools.video import FrameResults, Video

MAX_TEXT = 2000
MAX_ITEMS = 50
STRIP_FRAMES = 8
STRIP_HEIGHT = 96
STRIP_MAX_WIDTH = 1600  # a strip's picture may be wider than other thumbnails


def _box(b: Box) -> list[float]:
    return [round(v, 1) for v in b.as_tuple()]


def _object(o: Object) -> dict[str, Any]:
    return {
        "box": _box(o.box),
        "label": o.label,
        "score": None if o.score is None else round(float(o.score), 4),
        "mask_area": None if o.mask is None else o.mask.area,
    }


def summarize(value: Any) -> dict[str, Any]:
    """A JSON-friendly description of a value, with a one-line ``text``."""
    basic = _BASIC.get(type(value))  # exactly a bool, number or text: most step values
    if basic is not None:
        return basic(value)
    if value is None:
        return {"type": "None", "text": "none"}
    if isinstance(value, Image):
        size = f"{value.width}×{value.height}"
        return {"type": "Image", "text": f"image {size}", "width": value.width,
                "height": value.height, "hash": value.hash}  # fmt: skip
    if isinstance(value, Video):
        first = value.frames[0] if value.frames else None
        size = f", {first.width}×{first.height}" if first is not None else ""
        fps = f", {value.fps:g} fps" if value.fps else ""
        return {"type": "Video", "text": f"video of {value.num_frames} frame(s){size}{fps}",
                "frames": value.num_frames, "start": value.start, "fps": value.fps,
                "shown": strip_indices(value.num_frames)}  # fmt: skip
    if isinstance(value, FrameResults):
        items = [summarize(v)["text"][:200] for v in value[:MAX_ITEMS]]
        text = f"{len(value)} per-frame result(s): " + "; ".join(items)
        return {"type": "FrameResults", "count": len(value), "items": items,
                "text": text[:MAX_TEXT]}  # fmt: skip
    if isinstance(value, ObjectList):
        objs = [_object(o) for o in value.items[:MAX_ITEMS]]
        shown = ", ".join(str(o) for o in value.items[:5]) + (" …" if len(value) > 5 else "")
        return {"type": "ObjectList", "count": len(value), "objects": objs,
                "text": f"{len(value)} object(s)" + (f": {shown}" if shown else "")}  # fmt: skip
    if isinstance(value, Object):
        return {"type": "Object", "text": str(value), **_object(value)}
    if isinstance(value, PointList):
        pts = [
            {"x": round(p.x, 1), "y": round(p.y, 1), "label": p.label}
            for p in value.items[:MAX_ITEMS]
        ]
        return {
            "type": "PointList",
            "count": len(value),
            "points": pts,
            "text": f"{len(value)} point(s)",
        }
    if isinstance(value, Point):
        return {
            "type": "Point",
            "text": str(value),
            "x": value.x,
            "y": value.y,
            "label": value.label,
        }
    if isinstance(value, Box):
        return {"type": "Box", "text": str(_box(value)), "box": _box(value)}
    if isinstance(value, Mask):
        return {"type": "Mask", "text": repr(value), "area": value.area}
    if isinstance(value, bool):
        return _bool(value)
    if isinstance(value, (int, float)):
        return _number(value)
    if isinstance(value, str):
        return _text(value)
    kind = value_type(value)
    if kind == "TextList":
        items = [str(v)[:200] for v in list(value)[:MAX_ITEMS]]
        return {
            "type": "TextList",
            "count": len(value),
            "items": items,
            "text": ", ".join(items)[:MAX_TEXT],
        }
    text = _SHORT.repr(value) if isinstance(value, _CONTAINERS) else str(value)
    return {"type": kind if kind != "Any" else type(value).__name__, "text": text[:MAX_TEXT]}


_CONTAINERS = (list, tuple, dict, set, frozenset)
# a container's text is written only as far as it is shown: str() of ``[a] * 30`` with
# ``a = [[0] * 1000] * 1000`` would write 30 million numbers to show 2,000 characters
_SHORT = reprlib.Repr()
_SHORT.maxlevel = 6
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = _SHORT.maxfrozenset = MAX_ITEMS
_SHORT.maxstring = _SHORT.maxother = 200


def _bool(value: bool) -> dict[str, Any]:
    return {"type": "Bool", "text": to_text(value), "value": value}


def _number(value: float) -> dict[str, Any]:
    return {"type": "Number", "text": to_text(value), "value": value}


def _text(value: str) -> dict[str, Any]:
    return {"type": "Text", "text": value[:MAX_TEXT], "truncated": len(value) > MAX_TEXT}


_BASIC = {bool: _bool, int: _number, float: _number, str: _text}


def picture(value: Any, context: Image | None) -> PILImage.Image | None:
    """A picture of ``value`` (drawn on ``context``, the step's input image, when needed)."""
    if isinstance(value, Image):
        return value.pil
    if isinstance(value, Video):
        return frame_strip(value)
    if isinstance(value, FrameResults) and value and all(isinstance(v, Image) for v in value):
        return frame_strip(Video(value))
    if isinstance(value, Object):
        value = ObjectList((value,))
    if isinstance(value, ObjectList) and context is not None:
        return draw_objects(context, value.on(context), scores=True)
    if isinstance(value, Point):
        value = PointList((value,))
    if isinstance(value, PointList) and context is not None:
        return draw_points(context, value.on(context))
    if isinstance(value, Box) and context is not None:
        return draw_objects(context, [Object(value)])
    if isinstance(value, Mask):
        if context is not None and value.shape == (context.height, context.width):
            return draw_objects(context, [Object(value.box() or Box(0, 0, 1, 1), mask=value)])
        return PILImage.fromarray(value.array.astype(np.uint8) * 255)
    return None


def strip_indices(count: int, most: int = STRIP_FRAMES) -> list[int]:
    """Which frames a strip shows: all of a short clip, else ``most`` spread evenly."""
    if count <= most:
        return list(range(count))
    return sorted({round(i * (count - 1) / (most - 1)) for i in range(most)})


def frame_strip(video: Video, height: int = STRIP_HEIGHT) -> PILImage.Image | None:
    """The clip's frames side by side (evenly sampled), each ``height`` pixels high with its
    frame number in the corner."""
    if not video.frames:
        return None
    shown = [(i, video.frames[i]) for i in strip_indices(video.num_frames)]
    tiles = []
    for i, frame in shown:
        width = max(1, round(frame.width * height / frame.height))
        tile = frame.pil.resize((width, height))
        ImageDraw.Draw(tile).text((3, 2), str(video.start + i), fill=(255, 255, 0))
        tiles.append(tile)
    gap = 4
    strip = PILImage.new("RGB", (sum(t.width for t in tiles) + gap * (len(tiles) - 1), height))
    x = 0
    for tile in tiles:
        strip.paste(tile, (x, 0))
        x += tile.width + gap
    return strip
