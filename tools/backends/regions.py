"""CLIP input for many regions of one picture in one tensor op, on the model's device.

Select and Classify score every object of a picture: each object's box cut out (with its
mask, pixels outside it grey) and prepared as CLIP's preprocessing would — resize the
shorter side to S and take the centre S × S (open_clip's ``shortest`` mode), or squash the
box to S × S. Done crop by crop in Python that is N PIL crops and resizes; here it is one
``torchvision.ops.roi_align`` over the picture for all N boxes (each output pixel the mean
of the picture's pixels it covers, so shrinking is anti-aliased like PIL's resize), one more
over the masks for their coverage, then grey outside the mask and normalise, as batched
tensor ops. The result is close to the crop-by-crop path, not bit-equal: bilinear area
sampling instead of PIL's bicubic filter (the tests bound the difference).

Shapes: the picture H × W × 3 uint8; boxes N × 4 integer pixel corners (x0, y0, x1, y1),
each covering pixels x0..x1-1, y0..y1-1; masks H × W bool (or None); output N × 3 × S × S
float32, normalised.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

GREY = 127.0  # what pixels outside an object's mask become (as in the crop path)
MASK_CHUNK_BYTES = 256 * 2**20  # float masks per roi_align call, at most


@dataclass(frozen=True)
class RegionPlan:
    """What a preprocessing does to a crop, when it is a plain resize (and centre crop)."""

    size: int  # S: the model's input side
    centre_crop: bool  # resize the shorter side to S, then the centre S x S; else squash
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def plan_of(preprocess: Callable[[Any], torch.Tensor]) -> RegionPlan | None:
    """The :class:`RegionPlan` of a torchvision ``Compose`` that is ``Resize(S)`` +
    ``CenterCrop(S)`` or ``Resize((S, S))``, then RGB conversion, to-tensor and normalise
    (open_clip's eval transforms); None for anything else."""
    steps = list(getattr(preprocess, "transforms", None) or [])
    names = [type(s).__name__ for s in steps]
    if len(steps) < 3 or names[-1] != "Normalize" or names[-2] not in ("ToTensor", "MaybeToTensor"):
        return None
    middle = [s for s in steps[:-2] if not _converts_mode(s)]
    if not middle or type(middle[0]).__name__ != "Resize":
        return None
    resize = middle[0]
    if "bicubic" not in str(getattr(resize, "interpolation", "")).lower():
        return None
    size = resize.size
    size = [size] if isinstance(size, int) else list(size)
    normalize = steps[-1]
    mean, std = tuple(float(v) for v in normalize.mean), tuple(float(v) for v in normalize.std)
    if len(mean) != 3 or len(std) != 3:
        return None
    if len(size) == 1 and len(middle) == 2 and type(middle[1]).__name__ == "CenterCrop":
        crop = middle[1].size
        crop = [crop] if isinstance(crop, int) else list(crop)
        if len(crop) in (1, 2) and all(c == size[0] for c in crop):
            return RegionPlan(int(size[0]), True, mean, std)  # type: ignore[arg-type]
        return None
    if len(size) == 2 and size[0] == size[1] and len(middle) == 1:
        return RegionPlan(int(size[0]), False, mean, std)  # type: ignore[arg-type]
    return None


def _converts_mode(step: Any) -> bool:
    """A step that only makes the picture RGB (open_clip's, old and new)."""
    return type(step).__name__ == "MaybeConvertMode" or getattr(step, "__name__", "") in (
        "_convert_to_rgb",
        "convert_to_rgb",
    )


def sample_boxes(boxes: Sequence[tuple[int, int, int, int]], plan: RegionPlan) -> torch.Tensor:
    """N × 4 float boxes of the picture that end up in the model's input: the whole crop
    when squashing, its centred square when resizing the shorter side and cropping."""
    out = torch.tensor([list(b) for b in boxes], dtype=torch.float64).reshape(-1, 4)
    if plan.centre_crop:
        w, h = out[:, 2] - out[:, 0], out[:, 3] - out[:, 1]
        side = torch.minimum(w, h)
        out[:, 0] += (w - side) / 2
        out[:, 1] += (h - side) / 2
        out[:, 2] = out[:, 0] + side
        out[:, 3] = out[:, 1] + side
    return out.float()


def region_pixels(
    picture: np.ndarray,
    boxes: Sequence[tuple[int, int, int, int]],
    masks: Sequence[np.ndarray | None],
    plan: RegionPlan,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """N × 3 × S × S normalised model input for ``boxes`` of ``picture`` (see the module
    docstring), computed on ``device``."""
    from torchvision.ops import roi_align

    if len(boxes) != len(masks):
        raise ValueError(f"{len(boxes)} boxes but {len(masks)} masks")
    n, s = len(boxes), plan.size
    if n == 0:
        return torch.zeros((0, 3, s, s), dtype=torch.float32)
    image = torch.tensor(picture, device=device)  # a copy: pictures are read-only arrays
    image = image.permute(2, 0, 1).unsqueeze(0).float()  # 1 x 3 x H x W, 0-255
    where = sample_boxes(boxes, plan).to(device)
    rois = torch.cat([torch.zeros((n, 1), device=device), where], dim=1)
    out = roi_align(image, rois, (s, s), spatial_scale=1.0, sampling_ratio=-1, aligned=True)
    masked = [i for i, m in enumerate(masks) if m is not None]
    if masked:
        h, w = picture.shape[:2]
        per_chunk = max(1, MASK_CHUNK_BYTES // max(1, h * w * 4))
        for start in range(0, len(masked), per_chunk):
            index = masked[start : start + per_chunk]
            stack = np.stack([masks[i] for i in index])  # type: ignore[misc]
            m = torch.as_tensor(stack, device=device).unsqueeze(1).float()  # k x 1 x H x W
            k = len(index)
            own = torch.cat([torch.arange(k, device=device).unsqueeze(1).float(), where[index]], 1)
            cover = roi_align(m, own, (s, s), spatial_scale=1.0, sampling_ratio=-1, aligned=True)
            rows = torch.tensor(index, device=device)
            out[rows] = out[rows] * cover + GREY * (1.0 - cover)
    mean = torch.tensor(plan.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(plan.std, device=device).view(1, 3, 1, 1)
    return out.div_(255.0).sub_(mean).div_(std)
