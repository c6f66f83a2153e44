"""Conversions at the edges: anything a user hands us becomes an :class:`Image` (or a
:class:`~tools.video.Video`), and images, masks and boxes leave as PIL, numpy or torch
values. Nothing else in VisChain converts."""

from __future__ import annotations

import functools
import importlib.util
import io
import os
import re
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from .errors import ImageLoadError
from .types import Box, Image, Mask
from .video import Video, is_video_like, to_video

SAMPLE_PREFIX = "sample:"


@dataclass(frozen=True)
class ImageLimits:
    """What an input image may be, checked before its pixels are decoded: the file's size,
    the pixel count, the longer side and the aspect ratio (a 2000×1 strip would make a
    detector tile it into a huge array), and the file formats PIL may parse (no EPS/PS,
    which would run Ghostscript)."""

    max_bytes: int = 256 * 2**20
    max_pixels: int = 64_000_000
    max_side: int = 16_384
    max_aspect: float = 64.0
    formats: tuple[str, ...] = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM", "ICO")

    def check_size(self, width: int, height: int, where: str) -> None:
        """Raise :class:`ImageLoadError` unless a ``width``×``height`` image is admissible."""
        if width < 1 or height < 1:
            raise ImageLoadError(f"{where}: empty image ({width}x{height})")
        if width * height > self.max_pixels:
            raise ImageLoadError(
                f"{where}: image too large ({width}x{height} = {width * height:,} pixels; "
                f"the limit is {self.max_pixels:,})"
            )
        if max(width, height) > self.max_side:
            raise ImageLoadError(
                f"{where}: image too large ({width}x{height}; the longer side may be at most "
                f"{self.max_side:,} pixels)"
            )
        if max(width, height) / min(width, height) > self.max_aspect:
            raise ImageLoadError(
                f"{where}: image too elongated ({width}x{height}; the aspect ratio may be at "
                f"most {self.max_aspect:g}:1)"
            )


IMAGE_LIMITS = ImageLimits()
MAX_PIXELS = IMAGE_LIMITS.max_pixels  # refuse decompression bombs before decoding


def sample_names() -> list[str]:
    """Photos that ship inside scikit-image (usable offline): ``sample:astronaut`` etc."""
    return ["astronaut", "coffee", "chelsea", "cat", "rocket", "horse", "camera",
            "motorcycle", "page", "text"]  # fmt: skip


# the samples whose picture is their file's pixels, read like any file (tested equal to
# scikit-image's loaders); horse's is built from its file's alpha, so scikit-image makes it
_SAMPLE_FILES = {
    "astronaut": "astronaut.png", "coffee": "coffee.png", "chelsea": "chelsea.png",
    "cat": "chelsea.png", "rocket": "rocket.jpg", "camera": "camera.png",
    "motorcycle": "motorcycle_left.png", "page": "page.png", "text": "text.png",
}  # fmt: skip


def _sample(name: str, limits: ImageLimits = IMAGE_LIMITS) -> PILImage.Image:
    if name not in sample_names():
        raise ImageLoadError(f"unknown sample image '{name}' (known: {', '.join(sample_names())})")
    path = _sample_file(name)
    if path is not None:
        return _open(path, limits)
    from skimage import data

    loaders = {
        "motorcycle": lambda: data.stereo_motorcycle()[0],
    }
    array = loaders[name]() if name in loaders else getattr(data, name)()
    return array_to_pil(np.asarray(array), limits)


def _sample_file(name: str) -> Path | None:
    """The file scikit-image ships ``name``'s picture in (None: not a plain picture file,
    or not shipped by this version)."""
    folder = _sample_folder()
    if name not in _SAMPLE_FILES or folder is None:
        return None
    path = folder / _SAMPLE_FILES[name]
    return path if path.is_file() else None


@functools.cache
def _sample_folder() -> Path | None:
    """scikit-image's data folder, found once and without importing scikit-image."""
    spec = importlib.util.find_spec("skimage")
    return None if spec is None or spec.origin is None else Path(spec.origin).parent / "data"


def to_image(value: Any, *, name: str | None = None, limits: ImageLimits = IMAGE_LIMITS) -> Image:
    """Accept an Image, PIL image, numpy array (H×W, H×W×3/4: bool, uint8, uint16, other
    integers within 0–255, float in 0–1 or 0–255), torch tensor (C×H×W or H×W×C), bytes, a
    file path, or ``sample:<name>``. Sizes, formats and dtypes are checked against
    ``limits`` before any pixel is decoded or copied; anything unusable raises
    :class:`ImageLoadError` saying why."""
    if isinstance(value, Image):
        return value
    kind = type(value).__name__
    where = f"{name}: " if name else ""
    try:
        if isinstance(value, PILImage.Image):
            limits.check_size(value.width, value.height, name or "image")
            return Image(value, name=name)
        if isinstance(value, (str, Path)):
            text = str(value)
            if text.startswith(SAMPLE_PREFIX):
                return Image(_sample(text[len(SAMPLE_PREFIX) :], limits), name=text)
            return Image(_open(Path(text), limits), name=name or Path(text).name)
        if isinstance(value, (bytes, bytearray, memoryview)):
            data = memoryview(value)
            if data.nbytes > limits.max_bytes:
                raise ImageLoadError(_too_many_bytes("bytes", data.nbytes, limits))
            return Image(_decode(io.BytesIO(data), "bytes", limits), name=name)
        if isinstance(value, np.ndarray):
            return Image(array_to_pil(value, limits), name=name)
        if _is_tensor(value):
            return Image(array_to_pil(tensor_to_array(value, limits), limits), name=name)
    except ImageLoadError:
        raise
    except (ValueError, TypeError, OSError, RuntimeError, MemoryError) as exc:
        raise ImageLoadError(f"{where}cannot use {kind} as an image: {_message(exc)}") from exc
    a = "an" if kind[:1].lower() in "aeiou" else "a"
    if isinstance(value, (list, tuple)):
        raise ImageLoadError(f"{where}cannot use {a} {kind} as an image (give one image, or a "
                             "dict of named images as images=)")  # fmt: skip
    raise ImageLoadError(f"{where}cannot use {a} {kind} as an image")


def to_input(
    value: Any, *, name: str | None = None, limits: ImageLimits = IMAGE_LIMITS
) -> Image | Video:
    """A program input: a :class:`Video` for anything that reads as one (a video file, a
    list of pictures, a T×H×W×3 array; see :func:`tools.video.to_video`), else an Image.
    ``limits`` apply to the picture or to each frame."""
    if is_video_like(value):
        return to_video(value, name=name, limits=limits)
    return to_image(value, name=name, limits=limits)


def to_inputs(
    values: Mapping[str, Any],
    *,
    limits: ImageLimits = IMAGE_LIMITS,
    on_loaded: Callable[[str, Image | Video], None] | None = None,
) -> dict[str, Image | Video]:
    """Every named program input through :func:`to_input`, in the given order, each image
    with its content hash computed. Two or more that still need decoding are decoded at the
    same time, the first on the calling thread and the others on a shared pool with a
    thread per core (PIL's decoders and the hash release the interpreter lock): a pair of
    NLVR photos takes about the time of the larger one. ``on_loaded(name, value)`` is
    called for each in the given order (a trace records them). A failure raises the first
    failing input's :class:`ImageLoadError` in the given order, after ``on_loaded`` has
    seen every input before it, as converting one after another would."""
    pending = [name for name, value in values.items() if not isinstance(value, Image | Video)]
    futures: dict[str, Future[Image | Video]] = {}
    if len(pending) > 1:
        pool = _decoders()
        futures = {name: pool.submit(_loaded, values[name], name, limits) for name in pending[1:]}
    loaded: dict[str, Image | Video] = {}
    for name, value in values.items():  # the first is decoded here while the pool does the rest
        loaded[name] = futures[name].result() if name in futures else _loaded(value, name, limits)
        if on_loaded is not None:
            on_loaded(name, loaded[name])
    return loaded


def _loaded(value: Any, name: str, limits: ImageLimits) -> Image | Video:
    """One input converted, an image's content hash computed on the same thread."""
    converted = to_input(value, name=name, limits=limits)
    if isinstance(converted, Image):
        converted.hash  # noqa: B018 -- computed here, beside the decoding, not later in turn
    return converted


_DECODERS: ThreadPoolExecutor | None = None
_DECODERS_LOCK = threading.Lock()


def _decoders() -> ThreadPoolExecutor:
    """The process's input-decoding threads (created on first use, one per core)."""
    global _DECODERS
    with _DECODERS_LOCK:
        if _DECODERS is None:
            workers = os.cpu_count() or 1
            _DECODERS = ThreadPoolExecutor(workers, thread_name_prefix="vischain-decode")
        return _DECODERS


def _forget_decoders() -> None:
    """In a forked child the parent's threads do not exist: start a pool of its own."""
    global _DECODERS, _DECODERS_LOCK
    _DECODERS, _DECODERS_LOCK = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_decoders)


def _past_pil_bound(exc: PILImage.DecompressionBombError, limits: ImageLimits) -> str:
    """Which bound an image PIL refused on opening is past: ours where the count its header
    declares is over it, else PIL's (twice ``PIL.Image.MAX_IMAGE_PIXELS``, when a
    configured limit is above that)."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    declared = int(found.group(1)) if found else None
    if declared is None or declared > limits.max_pixels:
        count = "" if declared is None else f"{declared:,} pixels; "
        return f"{count}the limit is {limits.max_pixels:,}"
    bound = 2 * (PILImage.MAX_IMAGE_PIXELS or 0)
    return (
        f"{declared:,} pixels; within the configured limit, but PIL refuses "
        f"more than {bound:,}: raise PIL.Image.MAX_IMAGE_PIXELS to admit it"
    )


def _message(exc: BaseException) -> str:
    try:
        return f"{type(exc).__name__}: {exc}"
    except Exception:
        return type(exc).__name__


def _too_many_bytes(where: str, size: int, limits: ImageLimits) -> str:
    return f"{where}: file too large ({size:,} bytes; the limit is {limits.max_bytes:,})"


def _open(path: Path, limits: ImageLimits = IMAGE_LIMITS) -> PILImage.Image:
    """Decode the file at ``path``, streamed from disk, after its size and header pass."""
    if not path.exists():
        raise ImageLoadError(f"image file not found: {path}")
    if not path.is_file():
        raise ImageLoadError(f"not a file: {path}")
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise ImageLoadError(_too_many_bytes(str(path), size, limits))
    with path.open("rb") as f:
        return _decode(f, str(path), limits)


def _decode(stream: BinaryIO, where: str, limits: ImageLimits = IMAGE_LIMITS) -> PILImage.Image:
    """Read the header, check format and size, then decode (only the allowed formats'
    parsers ever see the bytes)."""
    try:
        with PILImage.open(stream, formats=list(limits.formats)) as im:
            limits.check_size(im.width, im.height, where)
            im.load()
            return im.convert("RGB")
    except ImageLoadError:
        raise
    except PILImage.DecompressionBombError as exc:  # PIL's own bound, before ours saw it
        raise ImageLoadError(f"{where}: image too large ({_past_pil_bound(exc, limits)})") from exc
    except UnidentifiedImageError as exc:
        raise ImageLoadError(
            f"{where}: not a readable image in an allowed format ({', '.join(limits.formats)})"
        ) from exc
    except (
        OSError,
        SyntaxError,
        ValueError,
        MemoryError,
    ) as exc:
        raise ImageLoadError(f"{where}: not a readable image ({_message(exc)})") from exc


def array_to_pil(array: np.ndarray, limits: ImageLimits = IMAGE_LIMITS) -> PILImage.Image:
    """An RGB PIL image from an H×W or H×W×C (or C×H×W) array; dtypes convert explicitly:
    bool to 0/255, uint16 scaled to 8 bits, other integers only within 0–255, floats from
    0–1 (or 0–255); anything else is refused with ``ValueError``."""
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise ValueError(f"unsupported image array shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("empty image array")
    limits.check_size(int(arr.shape[1]), int(arr.shape[0]), "array")
    return PILImage.fromarray(_to_uint8(arr)).convert("RGB")


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if arr.dtype == np.uint16:  # 16-bit images use the full range: keep the top 8 bits
        return (arr >> 8).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        low, high = int(arr.min()), int(arr.max())
        if low < 0 or high > 255:
            raise ValueError(
                f"{arr.dtype} image values must lie in 0–255 (found {low}–{high}); "
                "scale them to uint8 first"
            )
        return arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise ValueError("image array has NaN or infinite values")
        low, high = float(arr.min()), float(arr.max())
        if low < 0 or high > 255:
            raise ValueError(
                f"float image values must lie in 0–1 or 0–255 (found {low:g}–{high:g})"
            )
        scale = 255.0 if high <= 1.0 else 1.0
        return (arr * scale).astype(np.uint8)
    raise ValueError(f"unsupported image dtype {arr.dtype}")


def _is_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def tensor_to_array(tensor: Any, limits: ImageLimits | None = None) -> np.ndarray:
    """A numpy copy of a dense tensor's data; meta, nested and sparse tensors (which have
    no plain data) raise ``ValueError``, as do ones over ``limits`` (checked first)."""
    if getattr(tensor, "is_meta", False):
        raise ValueError("a meta tensor has no data")
    if getattr(tensor, "is_nested", False):
        raise ValueError("a nested tensor has no single shape")
    layout = str(getattr(tensor, "layout", "torch.strided"))
    if layout != "torch.strided":
        raise ValueError(f"a {layout} tensor is not a dense array")
    if limits is not None and tensor.dim() in (2, 3):
        shape = tuple(int(d) for d in tensor.shape)
        h, w = shape[-3:-1] if len(shape) == 3 and shape[0] not in (1, 3, 4) else shape[-2:]
        limits.check_size(int(w), int(h), "tensor")
    if tensor.dtype.is_complex:
        raise ValueError(f"unsupported image dtype {tensor.dtype}")
    return (
        tensor.detach().to("cpu").float().numpy()
        if tensor.dtype.is_floating_point
        else tensor.detach().cpu().numpy()
    )


def image_to_tensor(image: Image) -> Any:
    """C×H×W float tensor in [0, 1]."""
    import torch

    return torch.from_numpy(np.array(image.array, copy=True)).permute(2, 0, 1).float() / 255.0


def to_mask(value: Any, size: tuple[int, int] | None = None) -> Mask:
    """A Mask from a Mask, bool/0-1 array or tensor (H×W or 1×H×W); resized to ``size``
    (width, height) with nearest neighbour when given."""
    if isinstance(value, Mask):
        mask = value
    else:
        arr = tensor_to_array(value) if _is_tensor(value) else np.asarray(value)
        arr = np.squeeze(arr)
        if arr.dtype != bool:
            arr = arr > (0.5 if np.issubdtype(arr.dtype, np.floating) else 0)
        mask = Mask(arr)
    if size is not None and (mask.shape[1], mask.shape[0]) != tuple(size):
        pil = PILImage.fromarray(mask.array.astype(np.uint8) * 255).resize(size, PILImage.NEAREST)
        mask = Mask(np.asarray(pil) > 127)
    return mask


def box_mask(box: Box, size: tuple[int, int]) -> Mask:
    """A filled rectangle mask of ``size`` (width, height)."""
    w, h = size
    arr = np.zeros((h, w), dtype=bool)
    b = box.clip(w, h).rounded()
    arr[int(b.y0) : int(b.y1), int(b.x0) : int(b.x1)] = True
    return Mask(arr)


def encode_png(image: Image | PILImage.Image, *, max_side: int | None = None) -> bytes:
    """PNG bytes, optionally downscaled so the longer side is at most ``max_side``."""
    pil = image.pil if isinstance(image, Image) else image
    if max_side and max(pil.size) > max_side:
        pil = pil.copy()
        pil.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    pil.save(buf, format="PNG", optimize=False)
    return buf.getvalue()
