"""Seg: masks for everything (SAM's automatic masks) or for given boxes or points.

Seg batches: the calls of a batch (from one program's steps or many programs) that prompt
the same picture with boxes share one image embedding and one mask-decoder call for all
their boxes; the same for points."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tools.base import BatchTool, ToolContext
from tools.types import Box, Image, Object, ObjectList, PointList


class Seg(BatchTool):
    """Segment the image. Without `object`, return a mask for every region (class-agnostic);
    with boxes (from Loc/FaceDet) or points (from Point), return one mask per box or point."""

    name = "Seg"
    aliases = ("Segment",)
    examples = (
        "OBJ0=Seg(image=IMAGE)",
        "OBJ1=Seg(image=IMAGE, object=BOX0)",
        "OBJ2=Seg(image=IMAGE, object=POINTS0)",
    )
    requires = ("sam",)
    max_batch = 16

    def signature(self, image: Image, object: ObjectList | PointList | None = None) -> ObjectList:
        """Args:
        image: the picture to segment
        object: optional boxes or points that say what to segment
        """

    def run_batch(self, ctx: ToolContext, calls: Sequence[dict[str, Any]]) -> list[Any]:
        sam = ctx.model("sam")
        ctx.note(model=sam.spec.label(), device=sam.device)
        results: list[Any] = [None] * len(calls)
        prompted: dict[tuple[Any, ...], list[int]] = {}  # (picture, where, points?) -> calls
        for i, call in enumerate(calls):
            image, prompts = call["image"], call.get("object")
            if prompts is None:
                results[i] = _guarded(lambda image=image: sam.automatic(image).found_in(image))
            elif not prompts:
                results[i] = ObjectList().found_in(image)
            else:
                key = (image.hash, image.origin, isinstance(prompts, PointList))
                prompted.setdefault(key, []).append(i)
        for (*_, points), members in prompted.items():
            image = calls[members[0]]["image"]
            try:
                ctx.check()
                predictor, cached = sam.predictor(image)
                ctx.note(cache_hit=cached)
                on_image = [calls[i]["object"].on(image) for i in members]
                if points:
                    flat = [(p.x, p.y) for group in on_image for p in group]
                    masks = predictor.predict_points(flat)
                else:
                    masks = predictor.predict_boxes([o.box for group in on_image for o in group])
            except Exception as exc:  # this picture's calls fail; the others go on
                for i in members:
                    results[i] = exc
                continue
            start = 0
            for i, group in zip(members, on_image, strict=True):
                own = masks[start : start + len(group)]
                start += len(group)
                results[i] = (
                    _points_result(group, own, image) if points else _boxes_result(group, own)
                )
        return results


def _guarded(fn: Any) -> Any:
    try:
        return fn()
    except Exception as exc:
        return exc


def _points_result(points: PointList, masks: list[tuple[Any, float]], image: Image) -> ObjectList:
    found = [
        Object(
            box=mask.box() or Box(p.x, p.y, p.x + 1, p.y + 1),
            mask=mask,
            label=p.label,
            score=score,
        )
        for p, (mask, score) in zip(points, masks, strict=True)
    ]
    return ObjectList(tuple(found)).found_in(image)


def _boxes_result(boxes: ObjectList, masks: list[tuple[Any, float]]) -> ObjectList:
    return boxes.with_items(
        o.with_(mask=mask, box=mask.box() or o.box)
        for o, (mask, _score) in zip(boxes, masks, strict=True)
    )
