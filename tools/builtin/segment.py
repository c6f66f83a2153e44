"""Seg: masks for everything (SAM's automatic masks) or for given boxes or points."""

from __future__ import annotations

from tools.base import Tool, ToolContext
from tools.types import Box, Image, Object, ObjectList, PointList


class Seg(Tool):
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

    def run(
        self, ctx: ToolContext, image: Image, object: ObjectList | PointList | None = None
    ) -> ObjectList:
        """Args:
        image: the picture to segment
        object: optional boxes or points that say what to segment
        """
        sam = ctx.model("sam")
        ctx.note(model=sam.spec.label(), device=sam.device)
        if object is None:
            return sam.automatic(image).found_in(image)
        if not object:
            return ObjectList().found_in(image)
        predictor, cached = sam.predictor(image)
        ctx.note(cache_hit=cached)
        if isinstance(object, PointList):
            points = object.on(image)
            masks = predictor.predict_points([(p.x, p.y) for p in points])
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
        boxes = object.on(image)
        masks = predictor.predict_boxes([o.box for o in boxes])
        return boxes.with_items(
            o.with_(mask=mask, box=mask.box() or o.box)
            for o, (mask, _score) in zip(boxes, masks, strict=True)
        )
