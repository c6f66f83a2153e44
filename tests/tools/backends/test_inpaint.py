"""Inpainting backends: OpenCV on real photos, Stable Diffusion on a tiny random pipeline."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from tests.support.backends import CPU
from tools.backends.base import Placement
from tools.backends.inpaint import DiffusersInpaintBackend, OpenCVInpaintBackend
from tools.convert import box_mask, to_image, to_mask
from tools.settings import ModelSettings, ModelSpec
from tools.types import Box, Image, Mask


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("inpaint")


@pytest.fixture(scope="module")
def photo() -> Image:
    return to_image("sample:chelsea")  # 451x300, a cat


@pytest.fixture(scope="module")
def blob_mask(photo: Image) -> Mask:
    """An irregular region: an ellipse and a stroke, like a user-drawn removal mask."""
    arr = np.zeros((photo.height, photo.width), np.uint8)
    cv2.ellipse(arr, (300, 120), (45, 30), 25, 0, 360, 1, -1)
    cv2.line(arr, (60, 250), (200, 200), 1, 9)
    return Mask(arr.astype(bool))


def defaced(photo: Image, mask: Mask) -> Image:
    """The photo with the masked region painted magenta: a defect to remove."""
    arr = photo.array.copy()
    arr[mask.array] = (255, 0, 255)
    return Image(PILImage.fromarray(arr))


def opencv(settings: ModelSettings, method: str = "telea", **options: object):
    spec = ModelSpec(family="cv2_inpaint", model=method, options=options)
    assert OpenCVInpaintBackend.locate(spec, settings).present
    return OpenCVInpaintBackend.load(spec, CPU, settings)


def dilated(mask: Mask, radius: int) -> np.ndarray:
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(mask.array.astype(np.uint8), kernel).astype(bool)


# --- OpenCV --------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["telea", "ns"])
def test_opencv_removes_a_defect_from_a_real_photo(
    method: str, settings: ModelSettings, photo: Image, blob_mask: Mask
):
    backend = opencv(settings, method)
    assert backend.kind == "classical" and backend.offline_capable
    damaged = defaced(photo, blob_mask)
    out = backend.inpaint(damaged, blob_mask, "remove it")
    assert out.size == photo.size
    inside = blob_mask.array
    changed = (out.array != damaged.array).any(axis=2)
    assert changed[inside].mean() > 0.99  # the magenta is gone...
    before = np.abs(damaged.array[inside].astype(int) - photo.array[inside]).mean()
    after = np.abs(out.array[inside].astype(int) - photo.array[inside]).mean()
    assert after < 0.25 * before  # ...replaced by something close to the real cat
    radius = max(2, round(min(photo.size) / 100))
    outside = ~dilated(blob_mask, radius)
    assert np.array_equal(out.array[outside], damaged.array[outside])


def test_opencv_without_dilation_changes_only_the_mask(
    settings: ModelSettings, photo: Image, blob_mask: Mask
):
    out = opencv(settings, dilate=0).inpaint(defaced(photo, blob_mask), blob_mask, "")
    changed = (out.array != defaced(photo, blob_mask).array).any(axis=2)
    assert not changed[~blob_mask.array].any()
    assert changed[blob_mask.array].any()


def test_opencv_resizes_masks_and_downscales_large_images(settings: ModelSettings, photo: Image):
    half = Mask(box_mask(Box(100, 50, 180, 100), (225, 150)).array)  # half-resolution mask
    backend = opencv(settings, max_side=200, dilate=0)
    out = backend.inpaint(photo, half, "")
    full = to_mask(half, photo.size).array  # nearest-neighbour upscaling, as documented
    assert abs(full.sum() - 160 * 100) < 600
    changed = (out.array != photo.array).any(axis=2)
    assert not changed[~full].any() and changed[full].mean() > 0.5
    assert out.size == photo.size


def test_opencv_empty_mask_returns_the_image(settings: ModelSettings, photo: Image):
    empty = Mask(np.zeros((photo.height, photo.width), bool))
    assert opencv(settings).inpaint(photo, empty, "x") is photo


def test_opencv_locate(settings: ModelSettings):
    assert OpenCVInpaintBackend.locate(ModelSpec(family="cv2_inpaint"), settings).present
    bad = OpenCVInpaintBackend.locate(ModelSpec(family="cv2_inpaint", model="magic"), settings)
    assert not bad.present and "magic" in bad.hint


# --- Stable Diffusion (tiny) -----------------------------------------------------------------


@pytest.fixture(scope="module")
def sd_spec(tiny_dir: Path) -> ModelSpec:
    return DiffusersInpaintBackend.tiny_spec(tiny_dir)


@pytest.fixture(scope="module")
def sd(sd_spec: ModelSpec, settings: ModelSettings) -> DiffusersInpaintBackend:
    backend = DiffusersInpaintBackend.load(sd_spec, CPU, settings)
    assert isinstance(backend, DiffusersInpaintBackend)
    return backend


def test_tiny_pipeline_is_a_save_pretrained_folder(sd_spec: ModelSpec, settings: ModelSettings):
    folder = Path(sd_spec.model)
    for part in ("model_index.json", "unet/config.json", "vae/config.json",
                 "text_encoder/config.json", "tokenizer/vocab.json", "tokenizer/merges.txt",
                 "scheduler/scheduler_config.json"):  # fmt: skip
        assert (folder / part).is_file(), part
    located = DiffusersInpaintBackend.locate(sd_spec, settings)
    assert located.present and located.where == str(folder)
    assert DiffusersInpaintBackend.estimate_bytes(sd_spec, settings) > 0


def test_sd_locate_missing(settings: ModelSettings, monkeypatch: pytest.MonkeyPatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    hub = ModelSpec(family="sd_inpaint", model="stable-diffusion-v1-5/stable-diffusion-inpainting")
    located = DiffusersInpaintBackend.locate(hub, settings)
    assert not located.present and "huggingface-cli download" in located.hint
    assert not DiffusersInpaintBackend.locate(ModelSpec(family="sd_inpaint"), settings).present
    empty = tmp_path / "empty"
    empty.mkdir()
    folder = ModelSpec(family="sd_inpaint", model=str(empty))
    assert "model_index.json" in DiffusersInpaintBackend.locate(folder, settings).hint
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "diffusers" else real(name, *args),
    )
    located = DiffusersInpaintBackend.locate(hub, settings)
    assert not located.present and "pip install vischain[inpaint]" in located.hint


def test_sd_inpaint_changes_only_the_masked_region(
    sd: DiffusersInpaintBackend, photo: Image, blob_mask: Mask
):
    assert sd.kind == "diffusion"
    out = sd.inpaint(photo, blob_mask, "a red ball", seed=0)
    assert out.size == photo.size
    changed = (out.array != photo.array).any(axis=2)
    assert changed[blob_mask.array].mean() > 0.5
    radius = max(2, round(min(photo.size) / 100))
    assert not changed[~dilated(blob_mask, radius)].any()
    assert sd.stats["inpaint"] >= 1


def test_sd_seed_makes_it_reproducible(sd: DiffusersInpaintBackend, photo: Image):
    mask = box_mask(Box(40, 40, 200, 160), photo.size)
    a = sd.inpaint(photo, mask, "grass", seed=1)
    b = sd.inpaint(photo, mask, "grass", seed=1)
    c = sd.inpaint(photo, mask, "grass", seed=2)
    assert np.array_equal(a.array, b.array)
    assert not np.array_equal(a.array, c.array)


def test_sd_odd_sizes_and_no_dilation(sd_spec: ModelSpec, settings: ModelSettings):
    options = {**sd_spec.options, "dilate": 0}
    backend = DiffusersInpaintBackend.load(
        sd_spec.model_copy(update={"options": options}), CPU, settings
    )
    image = to_image(to_image("sample:coffee").pil.resize((101, 67)))  # not multiples of 8
    mask = box_mask(Box(30, 20, 70, 50), image.size)
    out = backend.inpaint(image, mask, "a spoon", seed=None)
    assert out.size == (101, 67)
    changed = (out.array != image.array).any(axis=2)
    assert not changed[~mask.array].any() and changed[mask.array].any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_sd_parameters_follow_the_placement(
    dtype: torch.dtype, sd_spec: ModelSpec, settings: ModelSettings, photo: Image
):
    backend = DiffusersInpaintBackend.load(sd_spec, Placement("cpu", dtype), settings)
    dtypes = {p.dtype for m in backend.modules() for p in m.parameters()}
    assert dtypes == {dtype}
    assert {p.device.type for m in backend.modules() for p in m.parameters()} == {"cpu"}
    assert len(backend.modules()) == 3  # unet, vae, text encoder
    assert backend.memory_bytes() > 0
    out = backend.inpaint(photo, box_mask(Box(10, 10, 90, 90), photo.size), "sky")
    assert out.size == photo.size


def test_sd_from_objects(sd: DiffusersInpaintBackend, photo: Image):
    bare = DiffusersInpaintBackend.from_objects(sd.pipeline)
    assert bare.device == "cpu" and bare.dtype == torch.float32
    assert bare.spec.key() != sd.spec.key()  # its own cache identity
    # the same options as the tiny spec (the defaults, 30 steps at 512 px, are for real SD)
    spec = sd.spec.model_copy(update={"model": "in-memory"})
    wrapped = DiffusersInpaintBackend.from_objects(sd.pipeline, spec=spec)
    mask = box_mask(Box(40, 40, 120, 120), photo.size)
    assert np.array_equal(
        wrapped.inpaint(photo, mask, "a hat", seed=3).array,
        sd.inpaint(photo, mask, "a hat", seed=3).array,
    )
