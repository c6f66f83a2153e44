"""Conversions at the edges: anything a user hands us becomes an :class:`Image`, and images,
masks and boxes leave as PIL, numpy or torch values. Nothing else in VisChain converts."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from .errors import ImageLoadError
from .types import Box, Image, Mask

SAMPLE_PREFIX = "sample:"
MAX_PIXELS = 100_000_000  # refuse decompression bombs before decoding


def sample_names() -> list[str]:
    """Photos that ship inside scikit-image (usable offline): ``sample:astronaut`` etc."""
    return ["astronaut", "coffee", "chelsea", "cat", "rocket", "horse", "camera",
            "motorcycle", "page", "text"]  # fmt: skip


def _sample(name: str) -> PILImage.Image:
    from skimage import data

    loaders = {
        "motorcycle": lambda: data.stereo_motorcycle()[0],
    }
    if name not in sample_names():
        raise ImageLoadError(f"unknown sample image '{name}' (known: {', '.join(sample_names())})")
    array = loaders[name]() if name in loaders else getattr(data, name)()
    return array_to_pil(np.asarray(array))


def to_image(value: Any, *, name: str | None = None) -> Image:
    """Accept an Image, PIL image, numpy array (H×W, H×W×3/4, uint8 or float 0–1), torch
    tensor (C×H×W or H×W×C), bytes, a file path, or ``sample:<name>``."""
    if isinstance(value, Image):
        return value
    try:
        if isinstance(value, PILImage.Image):
            return Image(value, name=name)
        if isinstance(value, (str, Path)):
            text = str(value)
            if text.startswith(SAMPLE_PREFIX):
                return Image(_sample(text[len(SAMPLE_PREFIX) :]), name=text)
            return Image(_open(Path(text)), name=name or Path(text).name)
        if isinstance(value, (bytes, bytearray, memoryview)):
            return Image(_decode(bytes(value), "bytes"), name=name)
        if isinstance(value, np.ndarray):
            return Image(array_to_pil(value), name=name)
        if _is_tensor(value):
            return Image(array_to_pil(tensor_to_array(value)), name=name)
    except ImageLoadError:
        raise
    except (ValueError, TypeError, OSError) as exc:
        raise ImageLoadError(f"cannot use {type(value).__name__} as an image: {exc}") from exc
    raise ImageLoadError(f"cannot use a {type(value).__name__} as an image")


def _open(path: Path) -> PILImage.Image:
    if not path.exists():
        raise ImageLoadError(f"image file not found: {path}")
    if not path.is_file():
        raise ImageLoadError(f"not a file: {path}")
    return _decode(path.read_bytes(), str(path))


def _decode(data: bytes, where: str) -> PILImage.Image:
    try:
        with PILImage.open(io.BytesIO(data)) as im:
            if im.width * im.height > MAX_PIXELS:
                raise ImageLoadError(f"{where}: image too large ({im.width}x{im.height})")
            im.load()
            return im.convert("RGB")
    except ImageLoadError:
        raise
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        PILImage.DecompressionBombError,
    ) as exc:
        raise ImageLoadError(f"{where}: not a readable image ({exc})") from exc


def array_to_pil(array: np.ndarray) -> PILImage.Image:
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise ValueError(f"unsupported image array shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("empty image array")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise ValueError("image array has NaN or infinite values")
        scale = 255.0 if arr.max(initial=0.0) <= 1.0 else 1.0
        arr = np.clip(arr * scale, 0, 255).astype(np.uint8)
    elif arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return PILImage.fromarray(arr).convert("RGB")


def _is_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def tensor_to_array(tensor: Any) -> np.ndarray:
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
