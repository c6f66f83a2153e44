"""Finding things: Loc (open-vocabulary boxes) and FaceDet (faces)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tools.base import BatchTool, ToolContext
from tools.types import Box, Image, Object, ObjectList

# VisProg programs use these names for halves of the image rather than for objects.
HALVES = {
    "top": (0.0, 0.0, 1.0, 0.5),
    "bottom": (0.0, 0.5, 1.0, 1.0),
    "left": (0.0, 0.0, 0.5, 1.0),
    "right": (0.5, 0.0, 1.0, 1.0),
}


def half(image: Image, name: str) -> ObjectList:
    fx0, fy0, fx1, fy1 = HALVES[name]
    w, h = image.size
    found = ObjectList((Object(Box(fx0 * w, fy0 * h, fx1 * w, fy1 * h), label=name, score=1.0),))
    return found.found_in(image)


def _note_model(ctx: ToolContext, backend: Any) -> None:
    ctx.note(model=backend.spec.label(), device=backend.device)


class Loc(BatchTool):
    """Find every instance of an object (open-vocabulary detection), best first. The
    names TOP, BOTTOM, LEFT and RIGHT give that half of the image instead."""

    name = "Loc"
    aliases = ("Detect", "Locate")
    examples = ("BOX0=Loc(image=IMAGE, object='dog')", "BOX1=Loc(image=IMAGE, object='TOP')")
    requires = ("detector",)
    max_batch = 16

    def signature(self, image: Image, object: str) -> ObjectList:
        """Args:
        image: the picture to search
        object: what to find, e.g. 'red car' (or TOP/BOTTOM/LEFT/RIGHT)
        """

    def run_batch(self, ctx: ToolContext, calls: Sequence[dict[str, Any]]) -> list[Any]:
        results: list[Any] = [None] * len(calls)
        todo = []
        for i, call in enumerate(calls):
            key = call["object"].strip().lower()
            if key in HALVES:
                results[i] = half(call["image"], key)
            else:
                todo.append(i)
        if todo:
            detector = ctx.model("detector")
            _note_model(ctx, detector)
            threshold = ctx.option(self.name, "threshold")
            found = detector.detect(
                [calls[i]["image"] for i in todo],
                [[calls[i]["object"].strip()] for i in todo],
                threshold=threshold,
            )
            for i, objects in zip(todo, found, strict=True):
                label = calls[i]["object"].strip()
                ordered = sorted(objects, key=lambda o: -(o.score or 0.0))
                found_here = ObjectList(tuple(o.with_(label=label) for o in ordered))
                results[i] = found_here.found_in(calls[i]["image"])
        return results


class FaceDet(BatchTool):
    """Find the faces in an image, best first."""

    name = "FaceDet"
    aliases = ("FaceDetect", "DetectFaces")
    examples = ("OBJ0=FaceDet(image=IMAGE)",)
    requires = ("face",)
    max_batch = 16

    def signature(self, image: Image) -> ObjectList:
        """Args:
        image: the picture to search for faces
        """

    def run_batch(self, ctx: ToolContext, calls: Sequence[dict[str, Any]]) -> list[Any]:
        detector = ctx.model("face")
        _note_model(ctx, detector)
        found = detector.detect_faces([c["image"] for c in calls])
        out = []
        for call, objs in zip(calls, found, strict=True):
            ranked = sorted(objs, key=lambda o: -(o.score or 0.0))
            faces = ObjectList(tuple(o.with_(label=o.label or "face") for o in ranked))
            out.append(faces.found_in(call["image"]))
        return out
