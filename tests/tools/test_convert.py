"""Image admission: sizes, shapes, formats and dtypes are checked before any pixel is
decoded or copied, and every unusable input is an ImageLoadError saying why."""

from __future__ import annotations

import io
import multiprocessing
import struct
import threading
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import EpsImagePlugin
from PIL import Image as PILImage

from tools import convert
from tools.convert import IMAGE_LIMITS, ImageLimits, to_image, to_inputs
from tools.errors import ImageLoadError
from tools.types import Image


def _png(width: int, height: int, rows: int | None = None) -> bytes:
    """A valid grey PNG of any size, built row by row (never the whole pixel buffer); with
    ``rows``, only that many rows of pixel data follow the header (enough to open it)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    z = zlib.compressobj()
    row = b"\x00" + bytes(width)
    data = b"".join(z.compress(row) for _ in range(height if rows is None else rows)) + z.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


def test_a_small_png_is_admitted() -> None:
    image = to_image(_png(40, 30))
    assert image.size == (40, 30)


def test_a_long_strip_is_refused_before_decoding() -> None:
    with pytest.raises(ImageLoadError, match=r"too elongated \(2000x1"):
        to_image(_png(2000, 1))


def test_a_hundred_million_pixel_strip_is_refused_by_its_header() -> None:
    data = _png(100_000_000, 1)
    with pytest.raises(ImageLoadError, match="too large"):
        to_image(data)


def test_a_header_past_pils_own_bound_is_refused_with_our_limit() -> None:
    # 20000x20000: PIL refuses it on opening (over twice its MAX_IMAGE_PIXELS), before the
    # limits see its size; the message is still ours, with the declared count
    data = _png(20_000, 20_000, rows=1)
    with pytest.raises(
        ImageLoadError, match=r"image too large \(400,000,000 pixels; the limit is 64,000,000\)"
    ):
        to_image(data)


def test_a_configured_limit_above_pils_bound_names_pils() -> None:
    limits = ImageLimits(max_pixels=500_000_000, max_side=30_000)
    with pytest.raises(ImageLoadError, match=r"400,000,000 pixels; within the configured limit, but PIL refuses more than"):  # fmt: skip
        to_image(_png(20_000, 20_000, rows=1), limits=limits)


def test_an_oversized_file_is_refused_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = tmp_path / "huge.png"
    with big.open("wb") as f:  # a sparse 7 GiB file: nothing is really written
        f.write(_png(8, 8))
        f.truncate(7 * 2**30)

    def no_whole_reads(self: Path) -> bytes:
        raise AssertionError("the whole file was read")

    monkeypatch.setattr(Path, "read_bytes", no_whole_reads)
    with pytest.raises(ImageLoadError, match="file too large"):
        to_image(big)


def test_files_are_decoded_from_a_stream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ok.png"
    path.write_bytes(_png(16, 12))
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail("read whole"))
    assert to_image(path).size == (16, 12)


def test_postscript_never_reaches_ghostscript(monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    original = EpsImagePlugin.EpsImageFile._open

    def spy(self: EpsImagePlugin.EpsImageFile) -> None:
        opened.append("eps")
        original(self)

    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", spy)
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n%%EOF\n"
    with pytest.raises(ImageLoadError, match="allowed format"):
        to_image(eps)
    assert opened == []
    assert "EPS" not in IMAGE_LIMITS.formats


def test_uint16_is_scaled_not_saturated() -> None:
    arr = np.array([[0, 100 * 256, 65535]], dtype=np.uint16).repeat(3, axis=0)
    image = to_image(arr)
    assert image.array[0, :, 0].tolist() == [0, 100, 255]


def test_integers_out_of_range_are_refused_not_clipped() -> None:
    with pytest.raises(ImageLoadError, match="int32 image values must lie in 0–255"):
        to_image(np.full((4, 4), 300, dtype=np.int32))
    with pytest.raises(ImageLoadError, match="float image values"):
        to_image(np.full((4, 4), -0.5, dtype=np.float32))
    assert to_image(np.full((4, 4), 7, dtype=np.int64)).array[0, 0, 0] == 7


def test_a_meta_tensor_is_refused() -> None:
    with pytest.raises(ImageLoadError, match="meta tensor has no data"):
        to_image(torch.empty(3, 8, 8, device="meta"))


def test_a_nested_tensor_is_refused() -> None:
    nested = torch.nested.nested_tensor([torch.zeros(3, 4, 4), torch.zeros(3, 5, 5)])
    with pytest.raises(ImageLoadError, match="nested tensor"):
        to_image(nested)


def test_tensor_sizes_are_checked_before_the_copy() -> None:
    huge = torch.zeros(1, 3, dtype=torch.uint8).expand(10_000, 3)  # a view: no memory
    with pytest.raises(ImageLoadError, match="too elongated"):
        to_image(huge)


def test_limits_can_be_tightened() -> None:
    strict = ImageLimits(max_pixels=100)
    with pytest.raises(ImageLoadError, match="the limit is 100"):
        to_image(_png(20, 20), limits=strict)
    with pytest.raises(ImageLoadError, match="file too large"):
        to_image(_png(20, 20), limits=ImageLimits(max_bytes=10))


def test_a_pil_image_is_checked_too() -> None:
    with pytest.raises(ImageLoadError, match="too elongated"):
        to_image(PILImage.new("RGB", (3000, 2)))


def test_a_list_is_not_an_image_and_the_message_says_what_to_do() -> None:
    with pytest.raises(ImageLoadError, match="images="):
        to_image([io.BytesIO()])


def _color_png(color: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def test_several_inputs_are_decoded_at_the_same_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Three inputs, each waiting at a barrier for the other two: one after another the
    barrier would break."""
    barrier = threading.Barrier(3, timeout=30)
    threads: dict[str, str] = {}
    real = convert.to_input

    def meeting(value: object, **kwargs: object) -> object:
        threads[str(kwargs["name"])] = threading.current_thread().name
        barrier.wait()
        return real(value, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(convert, "to_input", meeting)
    colors = {"LEFT": (255, 0, 0), "RIGHT": (0, 0, 255), "THIRD": (0, 255, 0)}
    loaded = to_inputs({name: _color_png(color) for name, color in colors.items()})
    assert list(loaded) == list(colors)  # the given order
    for name, color in colors.items():
        image = loaded[name]
        assert isinstance(image, Image) and image.name == name
        assert image.pil.getpixel((0, 0)) == color
        assert image._hash == Image(PILImage.new("RGB", (40, 30), color)).hash  # computed
    assert threads["LEFT"] == threading.current_thread().name  # the first: on the caller
    assert len(set(threads.values())) == 3


def test_one_input_to_decode_is_decoded_on_the_calling_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[str] = []
    real = convert.to_input

    def recording(value: object, **kwargs: object) -> object:
        seen.append(threading.current_thread().name)
        return real(value, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(convert, "to_input", recording)
    given = Image(PILImage.new("RGB", (8, 8)))
    loaded = to_inputs({"IMAGE": _color_png((1, 2, 3)), "MASK": given})
    assert set(seen) == {threading.current_thread().name}
    assert loaded["MASK"] is given


def test_the_first_failing_input_in_order_is_the_error(tmp_path: Path) -> None:
    """A later input failing at once does not hide an earlier one's failure, and every
    input is tried: the error is the one converting one after another raises."""
    missing = tmp_path / "gone.png"
    with pytest.raises(ImageLoadError, match=r"image file not found: .*gone\.png"):
        to_inputs({"A": _color_png((9, 9, 9)), "B": missing, "C": b"not an image"})
    with pytest.raises(ImageLoadError, match="bytes: not a readable image"):
        to_inputs({"A": b"not an image", "B": missing})


def test_each_input_is_handed_on_in_order_up_to_the_first_failing_one(tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []
    values = {"A": _color_png((1, 1, 1)), "B": _color_png((2, 2, 2)), "C": tmp_path / "gone.png",
              "D": _color_png((4, 4, 4))}  # fmt: skip
    with pytest.raises(ImageLoadError, match="gone"):
        to_inputs(values, on_loaded=lambda name, value: seen.append((name, value.name)))
    assert seen == [("A", "A"), ("B", "B")]
    seen.clear()
    del values["C"]
    loaded = to_inputs(values, on_loaded=lambda name, value: seen.append((name, value.name)))
    assert seen == [("A", "A"), ("B", "B"), ("D", "D")] and list(loaded) == ["A", "B", "D"]


def _decode_two_in_child(results: Any) -> None:
    loaded = to_inputs({"A": _color_png((1, 1, 1)), "B": _color_png((2, 2, 2))})
    results.put([loaded["A"].pil.getpixel((0, 0)), loaded["B"].pil.getpixel((0, 0))])


def test_a_forked_child_decodes_with_threads_of_its_own() -> None:
    """The parent's pool has threads; a forked child has none of them and must not wait
    on them forever."""
    to_inputs({"A": _color_png((5, 5, 5)), "B": _color_png((6, 6, 6))})  # the parent's pool exists
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    child = context.Process(target=_decode_two_in_child, args=(results,))
    child.start()
    child.join(timeout=120)
    if child.is_alive():
        child.kill()
    assert child.exitcode == 0
    assert results.get(timeout=5) == [(1, 1, 1), (2, 2, 2)]


@pytest.mark.parametrize("name", convert.sample_names())
def test_each_sample_picture_is_scikit_images_own(name: str) -> None:
    """Samples read from their files (like any file, through the same checks) have
    exactly the pixels scikit-image's loaders give."""
    from skimage import data

    loaded = to_image(f"sample:{name}")
    expected = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
    assert np.array_equal(loaded.array, np.asarray(convert.array_to_pil(np.asarray(expected))))
    assert loaded.name == f"sample:{name}"
    assert (convert._sample_file(name) is None) == (name == "horse")


def test_an_unknown_sample_names_the_known_ones() -> None:
    with pytest.raises(ImageLoadError, match=r"unknown sample image 'zebra' .*coffee"):
        to_image("sample:zebra")


def test_samples_meet_the_limits_like_any_file() -> None:
    tight = ImageLimits(max_pixels=100_000)
    with pytest.raises(ImageLoadError, match="image too large"):
        to_image("sample:astronaut", limits=tight)  # 512 x 512
    with pytest.raises(ImageLoadError, match="image too large"):
        to_image("sample:horse", limits=tight)  # 400 x 328, made by scikit-image
    assert to_image("sample:chelsea", limits=ImageLimits(max_pixels=200_000)).size == (451, 300)
