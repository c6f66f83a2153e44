"""A VLM's picture inputs, picture by picture: split, joined, and preprocessed once.

A transformers image processor turns a list of pictures into one batch of tensors. How a
picture's part of that batch is laid out is the family's business (a
:class:`PictureLayout`):

* :data:`PER_PICTURE` — one entry per picture along every output's first axis (LLaVA's
  ``pixel_values`` [N, 3, H, W]);
* :data:`MOLMO2_CROPS` — Molmo2 concatenates each picture's crops ``pixel_values``
  [C, P, D] (``image_num_crops`` [N] says how many are whose) and pooling rows
  ``image_token_pooling`` [R, K] (``h·w + h'·w'`` of the picture's ``image_grids`` row
  [N, 4]), and each pooling entry indexes a patch of the whole concatenation (−1: none).

``layout.split(outputs, n)`` gives each picture's share (None when the outputs are not laid
out as the layout knows: a key or a size it does not expect); ``layout.join(shares)``
builds the outputs the image processor gives those pictures together, in that order.

Two uses. A VLM's rows carry their share of the processor's outputs to the vision
encoder, which then never preprocesses a picture again. And a batch often asks several
things about one photo (an NLVR program asks three questions of each of its two photos):
:class:`DistinctPictures` wraps a processor's image processor so that, given a list of PIL
images in which the same object appears more than once, it preprocesses each object once
and joins the shares in the list's order. A batch-level choice such as padding to the
largest picture cannot differ, since the distinct pictures are the same set. When the
outputs are not laid out as the layout knows, that batch is preprocessed again as given
and the wrapper passes every later call straight through.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image as PILImage


class PictureLayout(Protocol):
    """How an image processor's outputs hold each picture's part."""

    def split(self, outputs: Mapping[str, Any], n: int) -> list[Any] | None:
        """Each of ``n`` pictures' share of ``outputs``, or None when they are not laid
        out as this layout knows."""
        ...

    def join(self, shares: Sequence[Any]) -> dict[str, Any]:
        """The outputs the image processor gives the shares' pictures together."""
        ...


class _PerPicture:
    """One entry per picture along every output's first axis (tensors, arrays, lists)."""

    def split(self, outputs: Mapping[str, Any], n: int) -> list[dict[str, Any]] | None:
        if not all(_rows(value) == n for value in outputs.values()):
            return None
        return [{key: value[i] for key, value in outputs.items()} for i in range(n)]

    def join(self, shares: Sequence[dict[str, Any]]) -> dict[str, Any]:
        joined: dict[str, Any] = {}
        for key, first in shares[0].items():
            parts = [share[key] for share in shares]
            if isinstance(first, torch.Tensor):
                joined[key] = torch.stack(parts)
            elif isinstance(first, np.ndarray):
                joined[key] = np.stack(parts)
            else:
                joined[key] = parts
        return joined


def _rows(value: Any) -> int | None:
    if isinstance(value, torch.Tensor | np.ndarray):
        return int(value.shape[0]) if value.ndim else None
    return len(value) if isinstance(value, list) else None


@dataclass(frozen=True)
class Molmo2Picture:
    """One picture's share of Molmo2's image inputs: its crops [C, P, D], its pooling rows
    [R, K] indexing its own crops' patches (−1: none), its grid row [1, 4] and its crop
    count [1]."""

    crops: torch.Tensor
    pooling: torch.Tensor
    grid: torch.Tensor
    count: torch.Tensor


class _Molmo2Crops:
    KEYS = frozenset({"pixel_values", "image_token_pooling", "image_grids", "image_num_crops"})

    def split(self, outputs: Mapping[str, Any], n: int) -> list[Molmo2Picture] | None:
        if set(outputs) != self.KEYS:
            return None
        pixels, pooling = outputs["pixel_values"], outputs["image_token_pooling"]
        grids, counts = outputs["image_grids"], outputs["image_num_crops"]
        if (
            not all(isinstance(t, torch.Tensor) for t in (pixels, pooling, grids, counts))
            or not len(grids) == len(counts) == n
            or grids.ndim != 2
            or grids.shape[1] != 4
            or pixels.ndim < 2
        ):
            return None
        rows = (grids[:, 0] * grids[:, 1] + grids[:, 2] * grids[:, 3]).tolist()
        if sum(rows) != len(pooling) or int(counts.sum()) != len(pixels):
            return None
        patches = pixels.shape[1]
        shares, crop, row = [], 0, 0
        for i, (c, r) in enumerate(zip(counts.tolist(), rows, strict=True)):
            own = pooling[row : row + r]
            own = torch.where(own >= 0, own - crop * patches, own)
            shares.append(
                Molmo2Picture(pixels[crop : crop + c], own, grids[i : i + 1], counts[i : i + 1])
            )
            crop, row = crop + c, row + r
        return shares

    def join(self, shares: Sequence[Molmo2Picture]) -> dict[str, Any]:
        pools, offset = [], 0
        for share in shares:
            pools.append(torch.where(share.pooling >= 0, share.pooling + offset, share.pooling))
            offset += share.crops.shape[0] * share.crops.shape[1]
        return {
            "pixel_values": torch.cat([s.crops for s in shares]),
            "image_token_pooling": torch.cat(pools),
            "image_grids": torch.cat([s.grid for s in shares]),
            "image_num_crops": torch.cat([s.count for s in shares]),
        }


PER_PICTURE: PictureLayout = _PerPicture()
MOLMO2_CROPS: PictureLayout = _Molmo2Crops()


class DistinctPictures:
    """A callable image processor that preprocesses each distinct picture of a call once.

    Attribute reads go to the wrapped processor (``model_input_names``, ``patch_size``...).
    """

    def __init__(self, inner: Any, layout: PictureLayout = PER_PICTURE) -> None:
        self.inner = inner
        self.layout = layout
        self.per_picture = True  # False once an output was found not laid out as expected

    def __getattr__(self, name: str) -> Any:
        if name in ("inner", "layout"):  # not set yet (copy, pickle): never recurse
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __call__(self, images: Any = None, *args: Any, **kwargs: Any) -> Any:
        if not (self.per_picture and _flat_pictures(images)):
            return self.inner(images, *args, **kwargs)
        slots: dict[int, int] = {}
        order = [slots.setdefault(id(picture), len(slots)) for picture in images]
        if len(slots) == len(images):
            return self.inner(images, *args, **kwargs)
        distinct = list({id(picture): picture for picture in images}.values())
        out = self.inner(distinct, *args, **kwargs)
        data = out if isinstance(out, dict) else getattr(out, "data", None)
        shares = self.layout.split(data, len(distinct)) if isinstance(data, dict) else None
        joined = None if shares is None else self.layout.join([shares[i] for i in order])
        if joined is None or set(joined) != set(data):
            self.per_picture = False
            return self.inner(images, *args, **kwargs)
        return joined if isinstance(out, dict) else type(out)(data=joined)


def with_distinct_pictures(processor: Any, layout: PictureLayout = PER_PICTURE) -> Any:
    """A shallow copy of a transformers processor whose image processor is wrapped in
    :class:`DistinctPictures` (the caller's processor is left as it is). A processor
    without an image processor comes back unchanged."""
    inner = getattr(processor, "image_processor", None)
    if inner is None or isinstance(inner, DistinctPictures):
        return processor
    wrapped = copy.copy(processor)
    wrapped.image_processor = DistinctPictures(inner, layout)
    return wrapped


def _flat_pictures(images: Any) -> bool:
    return (
        isinstance(images, list)
        and len(images) > 1
        and all(isinstance(picture, PILImage.Image) for picture in images)
    )
