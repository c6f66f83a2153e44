"""Value types and the type rules between them."""

from __future__ import annotations

import typing

import numpy as np
import pytest
from PIL import Image as PILImage

from sandbox import BoundExpression
from tools.types import (
    Box,
    Image,
    Mask,
    Object,
    ObjectList,
    Point,
    PointList,
    assignable,
    coerce,
    literal_error,
    type_name,
    value_type,
)


def test_type_names_from_annotations() -> None:
    assert type_name(str) == "Text"
    assert type_name(int) == "Number" and type_name(float) == "Number"
    assert type_name(list[str]) == "TextList"
    assert type_name(ObjectList | PointList) == "ObjectList|PointList"
    assert type_name(ObjectList | None) == "ObjectList"
    assert type_name(typing.Annotated[Image, "doc"]) == "Image"
    assert type_name(BoundExpression) == "Expression"
    assert type_name(typing.Any) == "Any"
    with pytest.raises(TypeError):
        type_name(dict)


def test_assignability() -> None:
    assert assignable("Image", "Image")
    assert not assignable("Image", "Text")
    assert not assignable("ObjectList", "Image")
    assert assignable("Object", "ObjectList")
    assert assignable("Number", "Text") and assignable("Bool", "Text")
    assert assignable("Text", "TextList")
    assert assignable("Any", "Image") and assignable("Image", "Any")
    assert assignable("ObjectList", "Box|Object|ObjectList")
    assert not assignable("Text|Image", "Text")


def test_literal_rules() -> None:
    assert literal_error("boat", "Text") is None
    assert literal_error(3, "Number") is None and literal_error("3", "Number") is None
    assert literal_error(True, "Number") is not None
    assert (
        literal_error(("a", "b"), "TextList") is None and literal_error("a,b", "TextList") is None
    )
    assert literal_error((0, 0, 10, 10), "Box|ObjectList") is None
    assert "must come from a variable" in (literal_error("IMAGE", "Image") or "")


def test_coercion_at_run_time() -> None:
    box = Box(0, 0, 1, 1)
    assert coerce(Object(box), "ObjectList") == ObjectList((Object(box),))
    assert coerce(True, "Text") == "yes" and coerce(3.0, "Text") == "3"
    assert coerce("4", "Number") == 4
    assert coerce("dog, cat ,", "TextList") == ["dog", "cat"]
    assert coerce((1, 2, 3, 4), "Box") == Box(1, 2, 3, 4)
    with pytest.raises(TypeError, match="expected Image, got Text"):
        coerce("x", "Image")
    assert value_type(["a"]) == "TextList" and value_type(True) == "Bool"


def test_a_list_a_program_built_is_the_list_of_its_kind() -> None:
    objects = [Object(Box(0, 0, 1, 1), label="cup"), Object(Box(2, 2, 3, 3), label="cup")]
    assert coerce(objects, "ObjectList|PointList") == ObjectList(tuple(objects))
    assert coerce(tuple(objects), "ObjectList") == ObjectList(tuple(objects))
    assert coerce([Point(1, 2)], "ObjectList|PointList") == PointList((Point(1, 2),))
    assert coerce([], "ObjectList|PointList") == ObjectList(())
    assert coerce((), "PointList") == PointList(())
    assert coerce([], "TextList") == []
    with pytest.raises(TypeError, match="expected ObjectList, got Any"):
        coerce([objects[0], Point(1, 2)], "ObjectList")


def test_image_hash_depends_on_pixels_only() -> None:
    a = Image(PILImage.new("RGB", (8, 8), (10, 20, 30)), name="a")
    b = Image(PILImage.new("RGBA", (8, 8), (10, 20, 30, 255)), name="b")
    c = Image(PILImage.new("RGB", (8, 8), (10, 20, 31)))
    assert a.hash == b.hash and a == b
    assert a.hash != c.hash
    assert a.array.shape == (8, 8, 3) and not a.array.flags.writeable


def test_crop_keeps_origin_and_rejects_empty() -> None:
    img = Image(PILImage.new("RGB", (100, 50)))
    crop = img.crop(Box(10.2, 5.7, 40, 30))
    assert crop.size == (30, 25) and crop.origin == (10, 5)
    inner = crop.crop(Box(5, 5, 10, 10))
    assert inner.origin == (15, 10)
    with pytest.raises(ValueError):
        img.crop(Box(200, 200, 300, 300))


def test_box_geometry() -> None:
    a, b = Box(0, 0, 10, 10), Box(5, 5, 15, 15)
    assert a.area == 100 and a.center == (5, 5)
    assert a.iou(b) == pytest.approx(25 / 175)
    assert Box.of([10, 10, 0, 0]) == a
    with pytest.raises(ValueError):
        Box(5, 0, 0, 1)
    with pytest.raises(ValueError):
        Box(0, 0, float("nan"), 1)


def test_mask_box_and_area() -> None:
    arr = np.zeros((20, 30), bool)
    arr[5:10, 7:12] = True
    m = Mask(arr)
    assert m.area == 25 and m.box() == Box(7, 5, 12, 10)
    assert Mask(np.zeros((4, 4))).box() is None
    with pytest.raises(ValueError):
        Mask(np.zeros((2, 2, 2)))


def test_lists_behave_like_sequences() -> None:
    objs = ObjectList([Object(Box(0, 0, 1, 1), label="a"), Object(Box(0, 0, 2, 2), label="b")])
    assert len(objs) == 2 and objs[1].label == "b" and objs.labels == ["a", "b"]
    assert "a" in str(objs)
    pts = PointList([Point(1, 2, "x")])
    assert len(pts) == 1 and bool(pts) and not PointList()


def test_objects_found_in_a_crop_move_onto_the_whole_picture() -> None:
    whole = Image(PILImage.new("RGB", (100, 80)))
    crop = whole.crop(Box(50, 20, 100, 80))  # origin (50, 20)
    arr = np.zeros((60, 50), bool)
    arr[10:20, 5:15] = True
    found = ObjectList((Object(Box(5, 10, 15, 20), mask=Mask(arr)),)).found_in(crop)
    on_whole = found.on(whole)
    assert on_whole.origin == (0, 0)
    assert on_whole[0].box == Box(55, 30, 65, 40)
    assert on_whole[0].mask.shape == (80, 100) and on_whole[0].mask.box() == Box(55, 30, 65, 40)
    back = on_whole.on(crop)
    assert back[0].box == Box(5, 10, 15, 20) and back[0].mask.area == 100
    assert found.on(crop) is found
    pts = PointList((Point(1, 2),)).found_in(crop).on(whole)
    assert (pts[0].x, pts[0].y) == (51, 22)
