"""Crop and its spatial variants cut the correct side."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image as PILImage

from tools import Box, Image, Object, ObjectList, ToolContext
from tools.builtin.crop import crop, crop_above, crop_below, crop_left, crop_right, object_crop


def quadrants() -> Image:
    """200×100 image: left half red, right half blue; bottom rows green."""
    arr = np.zeros((100, 200, 3), np.uint8)
    arr[:, :100] = (255, 0, 0)
    arr[:, 100:] = (0, 0, 255)
    arr[80:, :] = (0, 255, 0)
    return Image(PILImage.fromarray(arr))


BOX = ObjectList((Object(Box(90, 30, 110, 50), label="thing", score=0.9),))


def mean_colour(img: Image) -> tuple[int, ...]:
    return tuple(int(v) for v in img.array.reshape(-1, 3).mean(axis=0))


def test_crop_takes_the_first_objects_box() -> None:
    ctx = ToolContext()
    out = crop(quadrants(), ObjectList((*BOX, Object(Box(0, 0, 10, 10)))), ctx=ctx)
    assert out.size == (20, 20) and out.origin == (90, 30)
    assert "2 objects" in ctx.meta["note"]
    assert crop(quadrants(), BOX, margin=0.5).size == (40, 40)
    assert crop(quadrants(), Box(0, 0, 10, 10)).size == (10, 10)


def test_spatial_crops_take_the_correct_side() -> None:
    img = quadrants()
    left = crop_left(img, BOX)
    right = crop_right(img, BOX)
    above = crop_above(img, BOX)
    below = crop_below(img, BOX)
    assert left.size == (100, 100) and mean_colour(left)[0] > 150 and mean_colour(left)[2] == 0
    assert right.size == (100, 100) and mean_colour(right)[2] > 150 and mean_colour(right)[0] == 0
    assert above.size == (200, 40) and above.origin == (0, 0)
    assert below.size == (200, 60) and below.origin == (0, 40)
    assert mean_colour(below)[1] > mean_colour(above)[1]


def test_no_object_means_the_whole_image_and_its_halves() -> None:
    img = quadrants()
    ctx = ToolContext()
    assert crop(img, ObjectList(), ctx=ctx).size == (200, 100)
    assert "whole image" in ctx.meta["warning"]
    assert crop_left(img, ObjectList()).size == (100, 100)
    assert mean_colour(crop_left(img, ObjectList()))[0] > 150  # the LEFT half, not the right
    assert crop_below(img, ObjectList()).origin == (0, 50)


def test_nothing_beyond_the_edge_is_an_error() -> None:
    from tools.errors import ToolError

    edge = ObjectList((Object(Box(0, 0, 0.4, 100)),))
    with pytest.raises(ToolError, match="nothing to crop left"):
        crop_left(quadrants(), edge)


def test_object_crop_greys_outside_the_mask() -> None:
    from tools.types import Mask

    arr = np.zeros((100, 200), bool)
    arr[40:60, 95:105] = True
    obj = Object(Box(95, 40, 105, 60), mask=Mask(arr))
    out = object_crop(quadrants(), obj, pad=0.5)
    corner = out.array[0, 0]
    assert tuple(corner) == (127, 127, 127)
    assert out.size[0] > 10


@pytest.mark.parametrize("pad", [0.0, 0.1, 0.5])
def test_object_crop_equals_greying_the_whole_picture_then_cropping(pad: float) -> None:
    """The crop is greyed on its own pixels only; the result is what greying a copy of the
    whole picture and cropping it gives (pixels, size and origin), for boxes at the edges,
    fractional boxes and masks that spill outside their box."""
    from tools.types import Mask

    rng = np.random.default_rng(0)
    picture = Image(PILImage.fromarray(rng.integers(0, 256, (90, 130, 3), dtype=np.uint8)))
    picture = picture.crop(Box(3, 5, 128, 88))  # a picture with an origin of its own
    for box in [Box(0, 0, 20, 30), Box(10.4, 7.6, 60.5, 41.2), Box(100, 50, 125, 83)]:
        mask = rng.random((picture.height, picture.width)) > 0.4
        obj = Object(box, mask=Mask(mask))
        whole = picture.array.copy()
        whole[~mask] = 127
        greyed = Image(PILImage.fromarray(whole), origin=picture.origin)
        b = box.expanded(max(box.width, box.height) * pad).clip(picture.width, picture.height)
        expected = greyed.crop(b)
        out = object_crop(picture, obj, pad=pad)
        assert out.origin == expected.origin and out.size == expected.size
        assert np.array_equal(out.array, expected.array)


def test_boxes_found_in_a_crop_are_used_in_the_right_place() -> None:
    img = quadrants()
    right_half = crop_right(img, ObjectList())  # origin (100, 0)
    found = ObjectList((Object(Box(10, 10, 30, 30)),)).found_in(right_half)
    cut = crop(img, found)  # cropping the WHOLE image with a box found in the right half
    assert cut.origin == (110, 10) and mean_colour(cut)[2] > 150  # blue: the right half
