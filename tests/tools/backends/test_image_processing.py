"""Each distinct picture of a VLM batch preprocessed once, on the tiny LLaVA (one entry per
picture) and Molmo2 (crops concatenated) processors."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from tests.support.backends import CountingImageProcessor, noise_image
from tools.backends.image_processing import (
    MOLMO2_CROPS,
    PER_PICTURE,
    DistinctPictures,
    with_distinct_pictures,
)
from tools.backends.vlm import LlavaBackend, Molmo2Backend
from tools.types import Image

FAMILIES = [LlavaBackend, Molmo2Backend]

PICTURES = [noise_image(10, 50, 40), noise_image(11, 64, 100)]
ROWS = [0, 1, 0, 0, 1, 1]  # six questions over two photos, as an NLVR program asks them


def _processors(backend: Any) -> tuple[Any, Any, CountingImageProcessor]:
    """(wrapped, plain, counter): copies of the backend's processor, the wrapped one's
    image processor counting what reaches the real one."""
    inner = backend.processor.image_processor
    assert isinstance(inner, DistinctPictures)
    counter = CountingImageProcessor(inner.inner)
    wrapped = copy.copy(backend.processor)
    wrapped.image_processor = DistinctPictures(counter, inner.layout)
    plain = copy.copy(backend.processor)
    plain.image_processor = inner.inner
    return wrapped, plain, counter


def _same(a: Any, b: Any) -> None:
    assert set(a.keys()) == set(b.keys())
    for key in a:
        left, right = a[key], b[key]
        if isinstance(left, torch.Tensor):
            assert torch.equal(left, right), key
        elif isinstance(left, np.ndarray):
            assert np.array_equal(left, right), key
        else:
            assert left == right, key


@pytest.mark.parametrize("cls", FAMILIES)
def test_a_batch_with_repeated_pictures_gets_the_processors_own_inputs(
    cls: type, loaded: dict[str, object]
) -> None:
    backend = loaded[cls.family]
    wrapped, plain, counter = _processors(backend)
    pils = [PICTURES[i].pil for i in ROWS]
    prompts = [backend.chat_prompt(f"question {i}?") for i in range(len(ROWS))]
    for _ in range(2):
        ours = wrapped(images=pils, text=prompts, padding=True, return_tensors="pt")
        _same(ours, plain(images=pils, text=prompts, padding=True, return_tensors="pt"))
    assert counter.calls == [2, 2]  # the two photos, for each batch
    assert wrapped.image_processor.per_picture


def test_outputs_not_laid_out_as_the_layout_knows_are_made_as_given(
    loaded: dict[str, object],
) -> None:
    """Molmo2's crops read as if one entry per picture: the first batch with repeats is
    found out and done again as given, and later calls pass straight through."""
    backend = loaded["molmo2"]
    _, plain, counter = _processors(backend)
    wrapped = copy.copy(plain)
    wrapped.image_processor = DistinctPictures(counter)  # the default layout, PER_PICTURE
    pils = [PICTURES[i].pil for i in ROWS]
    prompts = [backend.chat_prompt(f"question {i}?") for i in range(len(ROWS))]
    for _ in range(2):
        ours = wrapped(images=pils, text=prompts, padding=True, return_tensors="pt")
        _same(ours, plain(images=pils, text=prompts, padding=True, return_tensors="pt"))
    assert counter.calls == [2, 6, 6]
    assert not wrapped.image_processor.per_picture


def test_pictures_without_repeats_and_other_inputs_pass_straight_through(
    loaded: dict[str, object],
) -> None:
    wrapped, plain, counter = _processors(loaded["llava"])
    image_processor = wrapped.image_processor
    distinct = [picture.pil for picture in PICTURES]
    _same(
        image_processor(distinct, return_tensors="pt"),
        plain.image_processor(distinct, return_tensors="pt"),
    )
    single = PICTURES[0].pil
    _same(
        image_processor(single, return_tensors="pt"),
        plain.image_processor(single, return_tensors="pt"),
    )
    arrays = [np.asarray(PICTURES[0].pil)] * 2  # not PIL pictures: not looked into
    _same(
        image_processor(arrays, return_tensors="pt"),
        plain.image_processor(arrays, return_tensors="pt"),
    )
    assert counter.calls == [2, 1, 2]
    assert image_processor.model_input_names == plain.image_processor.model_input_names


def test_equal_pixels_in_different_images_are_preprocessed_once(
    loaded: dict[str, object],
) -> None:
    """The backend gives the processor one PIL object per distinct content hash."""
    backend = loaded["llava"]
    wrapped, _, counter = _processors(backend)
    source = PICTURES[0]
    twin = Image(PILImage.fromarray(np.array(source.pil)))  # same pixels, another object
    assert twin.pil is not source.pil and twin.hash == source.hash
    requests = [(source, "What is it?"), (twin, "What is it?"), (PICTURES[1], "Is it red?")]
    expected = backend.answer(requests, max_new_tokens=6)
    backend.processor, kept = wrapped, backend.processor
    try:
        assert backend.answer(requests, max_new_tokens=6) == expected
    finally:
        backend.processor = kept
    assert counter.calls == [2]


@pytest.mark.parametrize("cls", FAMILIES)
def test_answers_over_repeated_pictures_equal_each_alone(
    cls: type, loaded: dict[str, object]
) -> None:
    backend = loaded[cls.family]
    requests = [(PICTURES[i], f"How many things are in picture {n}?") for n, i in enumerate(ROWS)]
    batch = backend.answer(requests, max_new_tokens=6)
    assert batch == [backend.answer([r], max_new_tokens=6)[0] for r in requests]


def test_the_callers_processor_is_left_as_it_was(loaded: dict[str, object]) -> None:
    source = loaded["llava"]
    plain = copy.copy(source.processor)
    plain.image_processor = source.processor.image_processor.inner
    backend = LlavaBackend.from_objects(source.model, plain)
    assert isinstance(backend.processor.image_processor, DistinctPictures)
    assert not isinstance(plain.image_processor, DistinctPictures)
    assert with_distinct_pictures(backend.processor) is backend.processor  # not twice


def test_molmo2_layout_refuses_outputs_it_does_not_know(loaded: dict[str, object]) -> None:
    inner = loaded["molmo2"].processor.image_processor.inner
    outputs = dict(inner(images=[p.pil for p in PICTURES], return_tensors="pt"))
    shares = MOLMO2_CROPS.split(outputs, 2)
    assert shares is not None
    joined = MOLMO2_CROPS.join(shares)
    assert all(torch.equal(joined[key], outputs[key]) for key in outputs)
    assert MOLMO2_CROPS.split({**outputs, "image_sizes": torch.ones(2, 2)}, 2) is None
    assert MOLMO2_CROPS.split(outputs, 3) is None  # not that many pictures
    fewer = {**outputs, "image_num_crops": outputs["image_num_crops"] - 1}
    assert MOLMO2_CROPS.split(fewer, 2) is None  # the crops do not add up
    assert PER_PICTURE.split(outputs, 2) is None  # crops, not pictures, on the first axis
