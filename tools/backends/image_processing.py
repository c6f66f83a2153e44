"""Preprocessing each distinct picture once in a batch that names some several times.

A batch of VLM questions often asks several things about one photo (an NLVR program asks
three questions of each of its two photos). A transformers processor preprocesses the
picture of every row — resize, rescale, normalise — so six rows over two photos did the
work six times. :class:`DistinctPictures` wraps a processor's image processor: given a list
of PIL images in which the same object appears more than once, it preprocesses each object
once and repeats the results in the list's order.

That is only sound when every output holds one entry per picture along its first axis
(LLaVA's ``pixel_values`` (N, 3, H, W), ``image_sizes`` (N, 2), ...), and a batch-level
choice such as padding to the largest picture cannot differ, since the distinct pictures
are the same set. An image processor whose outputs are laid out otherwise — Molmo2
concatenates each picture's crops, so ``pixel_values`` has one entry per crop — is detected
on its first batch with repeats: that batch is preprocessed again as given and the wrapper
passes every later call straight through.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from PIL import Image as PILImage


class DistinctPictures:
    """A callable image processor that preprocesses each distinct picture of a call once.

    Attribute reads go to the wrapped processor (``model_input_names``, ``patch_size``...).
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.per_picture = True  # False once an output was found not laid out per picture

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (copy, pickle): never recurse
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
        repeated = _repeat(out, order, len(distinct))
        if repeated is None:
            self.per_picture = False
            return self.inner(images, *args, **kwargs)
        return repeated


def with_distinct_pictures(processor: Any) -> Any:
    """A shallow copy of a transformers processor whose image processor is wrapped in
    :class:`DistinctPictures` (the caller's processor is left as it is). A processor
    without an image processor comes back unchanged."""
    inner = getattr(processor, "image_processor", None)
    if inner is None or isinstance(inner, DistinctPictures):
        return processor
    wrapped = copy.copy(processor)
    wrapped.image_processor = DistinctPictures(inner)
    return wrapped


def _flat_pictures(images: Any) -> bool:
    return (
        isinstance(images, list)
        and len(images) > 1
        and all(isinstance(picture, PILImage.Image) for picture in images)
    )


def _repeat(out: Any, order: list[int], n: int) -> Any:
    """``out`` (a BatchFeature over ``n`` pictures) with each entry repeated as ``order``
    says, or None when some output does not hold one entry per picture."""
    data = out if isinstance(out, dict) else getattr(out, "data", None)
    if not isinstance(data, dict):
        return None
    index = torch.tensor(order)
    repeated: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, torch.Tensor) and value.ndim and value.shape[0] == n:
            repeated[key] = value[index]
        elif isinstance(value, np.ndarray) and value.ndim and value.shape[0] == n:
            repeated[key] = value[np.asarray(order)]
        elif isinstance(value, list) and len(value) == n:
            repeated[key] = [value[i] for i in order]
        else:
            return None
    return repeated if isinstance(out, dict) else type(out)(data=repeated)
