"""RapidOCR with the PP-OCR models bundled in the rapidocr wheel, on pictures rendered here
and on scikit-image's photo of a printed page. The network is blocked while it loads and
reads, so a download attempt fails the test."""

from __future__ import annotations

import math
import socket
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont

from tools.backends import backend_class
from tools.backends.base import Placement
from tools.backends.ocr import MAX_ASPECT, RapidOcrBackend, reading_order
from tools.cache import ByteLRU
from tools.convert import to_image
from tools.settings import ModelSettings, ModelSpec
from tools.types import Box, Image, Object, ObjectList

BANNER_AT = (40, 120)


def _no_network(*args: object, **kwargs: object) -> None:
    raise AssertionError(f"RapidOCR tried to reach the network: {args!r}")


@pytest.fixture(scope="module")
def no_network() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", _no_network)
        mp.setattr(socket, "create_connection", _no_network)
        from rapidocr.utils.download_file import DownloadFile

        mp.setattr(DownloadFile, "run", classmethod(_no_network))
        yield


@pytest.fixture(scope="module")
def ocr(settings: ModelSettings, no_network: None) -> RapidOcrBackend:
    return RapidOcrBackend.load(
        ModelSpec(family="rapidocr"), Placement("cpu", torch.float32), settings
    )


def banner() -> tuple[Image, Box]:
    """Black capitals on white, and where they were drawn."""
    pil = PILImage.new("RGB", (640, 320), "white")
    draw = ImageDraw.Draw(pil)
    font = ImageFont.load_default(size=72)
    draw.text(BANNER_AT, "VISCHAIN 2026", fill="black", font=font)
    return Image(pil, name="banner"), Box.of(draw.textbbox(BANNER_AT, "VISCHAIN 2026", font=font))


def sign() -> Image:
    """A green road sign with white text on a dark background."""
    pil = PILImage.new("RGB", (640, 480), (40, 60, 50))
    draw = ImageDraw.Draw(pil)
    draw.rounded_rectangle((60, 120, 580, 360), 20, fill=(20, 110, 50), outline="white", width=8)
    draw.text((110, 150), "EXIT 12", fill="white", font=ImageFont.load_default(size=72))
    draw.text((110, 250), "Main Street", fill="white", font=ImageFont.load_default(size=56))
    return Image(pil, name="sign")


@pytest.fixture(scope="module")
def pictures() -> dict[str, Image]:
    return {
        "banner": banner()[0],
        "sign": sign(),
        "page": to_image("sample:page"),
        "blank": Image(PILImage.new("RGB", (320, 200), "white"), name="blank"),
    }


@pytest.fixture(scope="module")
def singles(ocr: RapidOcrBackend, pictures: dict[str, Image]) -> dict[str, ObjectList]:
    return {name: ocr.read([img])[0] for name, img in pictures.items()}


def _text(found: ObjectList) -> str:
    return " ".join(o.label or "" for o in found)


def test_registry_and_locate(settings: ModelSettings) -> None:
    assert backend_class("rapidocr") is RapidOcrBackend and RapidOcrBackend.offline_capable
    found = RapidOcrBackend.locate(ModelSpec(family="rapidocr"), settings)
    assert found.present and found.where.endswith("rapidocr/models")
    assert (RapidOcrBackend.estimate_bytes(ModelSpec(family="rapidocr"), settings) or 0) > 10e6
    missing = RapidOcrBackend.locate(
        ModelSpec(family="rapidocr", options={"det_model": "/nonexistent/det.onnx"}), settings
    )
    assert not missing.present and "/nonexistent/det.onnx" in missing.hint


def test_reads_a_rendered_banner(singles: dict[str, ObjectList]) -> None:
    found = singles["banner"]
    assert _text(found).replace(" ", "") == "VISCHAIN2026"
    assert all(o.score is not None and 0.9 < o.score <= 1.0 for o in found)
    drawn = banner()[1]
    union = Box(
        min(o.box.x0 for o in found),
        min(o.box.y0 for o in found),
        max(o.box.x1 for o in found),
        max(o.box.y1 for o in found),
    )
    # pixel coordinates of the picture: the lines cover the drawn text, with the margin
    # PP-OCR's detector adds around text, and are centred on it
    assert union.intersection(drawn) > 0.95 * drawn.area
    assert union.area < 3 * drawn.area
    assert abs(union.center[0] - drawn.center[0]) < 20
    assert abs(union.center[1] - drawn.center[1]) < 20


def test_reads_a_sign_on_a_dark_background(singles: dict[str, ObjectList]) -> None:
    found = singles["sign"]
    assert [o.label for o in found] == ["EXIT 12", "Main Street"]  # top to bottom
    assert found[0].box.y1 <= found[1].box.y0 + 5
    assert all(isinstance(o.extra["quad"], list) and len(o.extra["quad"]) == 4 for o in found)


def test_reads_the_printed_page(singles: dict[str, ObjectList]) -> None:
    found = singles["page"]
    assert found[0].label == "Region-based segmentation"
    words = _text(found).lower()
    for word in ("markers", "background", "unambiguously", "histogram"):
        assert word in words
    tops = [o.box.y0 for o in found]
    assert tops == sorted(tops)  # one line per row here, so reading order is top-down
    page = to_image("sample:page")
    assert all(0 <= o.box.x0 < o.box.x1 <= page.width for o in found)


def test_blank_picture_has_no_text(singles: dict[str, ObjectList]) -> None:
    assert len(singles["blank"]) == 0


def test_batch_equals_singles_and_caches(
    ocr: RapidOcrBackend, pictures: dict[str, Image], singles: dict[str, ObjectList]
) -> None:
    names = list(pictures)
    batch = ocr.read([pictures[n] for n in names])
    for name, got in zip(names, batch, strict=True):
        want = singles[name]
        assert [o.label for o in got] == [o.label for o in want]
        assert [o.box for o in got] == [o.box for o in want]

    ocr.cache = ByteLRU(2**20)
    try:
        ocr.read([pictures["sign"]])
        runs = ocr.stats["ocr"]
        again = ocr.read([pictures["sign"], pictures["sign"]])
        assert ocr.stats["ocr"] == runs  # served from the cache
        assert [o.label for o in again[1]] == ["EXIT 12", "Main Street"]
    finally:
        ocr.cache = None


def test_reading_order_rows_then_columns() -> None:
    def line(text: str, x0: float, y0: float) -> Object:
        return Object(box=Box(x0, y0, x0 + 80, y0 + 20), label=text)

    shuffled = [line("d", 10, 60), line("b", 120, 12), line("a", 10, 10), line("c", 120, 58)]
    assert [o.label for o in reading_order(shuffled)] == ["a", "b", "d", "c"]


def test_describe_reports_cpu(ocr: RapidOcrBackend) -> None:
    info = ocr.describe()
    assert info["device"] == "cpu" and info["family"] == "rapidocr"
    assert ocr.memory_bytes() > 10e6


class ShapeWatch:
    """The real engine, refusing (before any work) an array RapidOCR would blow up: a strip
    more than MAX_ASPECT times longer one way than the other."""

    def __init__(self, engine: object) -> None:
        self.engine = engine
        self.shapes: list[tuple[int, ...]] = []

    def __call__(self, array: np.ndarray) -> object:
        height, width = array.shape[:2]
        assert max(height, width) <= MAX_ASPECT * min(height, width), array.shape
        self.shapes.append(array.shape)
        return self.engine(array)  # type: ignore[operator]


@pytest.mark.parametrize("size", [(2000, 1), (1, 2000), (3, 1)])
def test_a_strip_is_padded_before_rapidocr_sees_it(
    ocr: RapidOcrBackend, size: tuple[int, int]
) -> None:
    # issue 14 item 6: a 2000x1 picture (a Crop's output is not admitted like an input) made
    # RapidOCR scale its short side up and pad it into a 10 GiB array
    watch = ShapeWatch(ocr.engine)
    ocr.engine, real = watch, ocr.engine
    try:
        found = ocr.read([Image(PILImage.new("RGB", size, "white"), name="strip")])[0]
    finally:
        ocr.engine = real
    width, height = size
    assert len(found) == 0 and watch.shapes[0][:2] == (
        max(height, math.ceil(width / MAX_ASPECT)),
        max(width, math.ceil(height / MAX_ASPECT)),
    )


def test_a_wide_crop_of_text_is_still_read_in_its_own_coordinates(ocr: RapidOcrBackend) -> None:
    picture, drawn = banner()
    strip = picture.crop(Box(0, drawn.y0 - 4, picture.width, drawn.y1 + 4))  # a wide strip
    assert strip.width > MAX_ASPECT * strip.height
    found = ocr.read([strip])[0]
    assert _text(found).replace(" ", "") == "VISCHAIN2026"
    assert all(0 <= o.box.y0 < o.box.y1 <= strip.height for o in found)
    assert all(0 <= o.box.x0 < o.box.x1 <= strip.width for o in found)
