"""Tag, ColorPop and BgBlur on a real photo (scikit-image's astronaut)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tools import Box, Object, ObjectList, ToolContext
from tools.builtin.edit import bg_blur, color_pop, tag
from tools.convert import to_image
from tools.masks import grabcut, object_mask

FACE = Box(170, 40, 270, 170)  # the astronaut's face in skimage.data.astronaut()


@pytest.fixture(scope="module")
def astronaut():
    return to_image("sample:astronaut")


def sharpness(arr: np.ndarray) -> float:
    grey = cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def test_tag_draws_boxes_and_labels(astronaut) -> None:
    out = tag(astronaut, ObjectList((Object(FACE, label="Eileen Collins", score=0.9),)))
    diff = np.any(out.array != astronaut.array, axis=2)
    assert out.size == astronaut.size
    assert diff[int(FACE.y0) + 5 : int(FACE.y1) - 5, int(FACE.x0)].any()  # left edge of the box
    assert diff[int(FACE.y0) - 20 : int(FACE.y0), int(FACE.x0) : int(FACE.x0) + 60].any()  # label
    assert not diff[400:, 400:].any()  # far away: untouched


def test_grabcut_refines_a_box_into_a_mask(astronaut) -> None:
    mask = grabcut(astronaut, FACE)
    assert mask is not None
    inside = mask.array[int(FACE.y0) : int(FACE.y1), int(FACE.x0) : int(FACE.x1)].mean()
    assert 0.3 < inside < 0.99
    assert not mask.array[:, :100].any()  # nothing far outside the box
    region, source = object_mask(astronaut, Object(Box(0, 0, 3, 3)))
    assert source == "box" and region.area == 9


def test_bg_blur_keeps_the_object_sharp(astronaut) -> None:
    ctx = ToolContext()
    out = bg_blur(astronaut, ObjectList((Object(FACE),)), ctx=ctx)
    assert ctx.meta["mask_sources"] == ["grabcut"]
    face = (slice(80, 140), slice(190, 250))
    background = (slice(300, 500), slice(350, 500))
    assert sharpness(out.array[background]) < 0.3 * sharpness(astronaut.array[background])
    assert sharpness(out.array[face]) > 0.7 * sharpness(astronaut.array[face])


def test_color_pop_greys_the_rest(astronaut) -> None:
    out = color_pop(
        astronaut,
        ObjectList((Object(FACE),)),
        ctx=ToolContext(options={"masks": {"grabcut": False}}),
    )
    far = out.array[400:, 400:].astype(int)
    assert np.abs(far[..., 0] - far[..., 1]).max() <= 1  # grey: R == G
    inside = out.array[100:120, 200:230].astype(int)
    original = astronaut.array[100:120, 200:230].astype(int)
    assert np.abs(inside - original).max() <= 2  # kept in colour
