"""SamBackend on a tiny random SAM built from segment_anything.modeling and saved as a
checkpoint; references are segment-anything's own SamPredictor on the same model."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor

from tests.support.backends import CPU
from tools.backends.base import Placement
from tools.backends.sam import ImagePredictor, SamBackend
from tools.cache import ByteLRU
from tools.convert import to_image
from tools.pool import ModelPool
from tools.settings import ModelSettings, ModelSpec
from tools.types import Box, Image, Mask, ObjectList


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sam")


@pytest.fixture(scope="module")
def spec(tiny_dir: Path) -> ModelSpec:
    return SamBackend.tiny_spec(tiny_dir)


@pytest.fixture(scope="module")
def loaded(spec: ModelSpec, settings: ModelSettings) -> SamBackend:
    backend = SamBackend.load(spec, CPU, settings)
    assert isinstance(backend, SamBackend)
    return backend


@pytest.fixture
def sam(loaded: SamBackend) -> SamBackend:
    loaded.cache = ByteLRU(256 * 2**20)
    loaded.stats.clear()
    return loaded


@pytest.fixture(scope="module")
def photo() -> Image:
    return to_image("sample:astronaut")  # 512x512


@pytest.fixture(scope="module")
def wide() -> Image:
    return to_image(to_image("sample:coffee").pil.resize((200, 150)))  # not square


def reference(backend: SamBackend, image: Image) -> SamPredictor:
    predictor = SamPredictor(backend.model)
    predictor.set_image(np.asarray(image.array))
    return predictor


# --- locating and loading ---------------------------------------------------------------------


def test_tiny_spec_writes_a_checkpoint_and_is_located(spec: ModelSpec, settings: ModelSettings):
    assert spec.model == "tiny" and "architecture" in spec.options
    checkpoint = Path(spec.weights or "")
    assert checkpoint.is_file() and checkpoint.suffix == ".pth"
    state = torch.load(checkpoint, weights_only=True)
    assert "image_encoder.patch_embed.proj.weight" in state
    located = SamBackend.locate(spec, settings)
    assert located.present and located.where == str(checkpoint)
    assert SamBackend.estimate_bytes(spec, settings) == checkpoint.stat().st_size


def test_locate_missing_and_relative_to_cache_dir(settings: ModelSettings, tmp_path: Path):
    vit_h = ModelSpec(family="sam", model="vit_h", weights="sam_vit_h_4b8939.pth")
    located = SamBackend.locate(vit_h, settings)
    assert not located.present
    assert "sam_vit_h_4b8939.pth" in located.hint and str(settings.cache_dir) in located.hint
    other = ModelSettings(cache_dir=tmp_path)
    (tmp_path / "sam_vit_h_4b8939.pth").write_bytes(b"x")  # locate only checks the file
    assert SamBackend.locate(vit_h, other).where == str(tmp_path / "sam_vit_h_4b8939.pth")
    unknown = ModelSpec(family="sam", model="vit_q", weights=str(tmp_path / "x.pth"))
    assert "unknown SAM variant" in SamBackend.locate(unknown, other).hint
    no_file = ModelSpec(family="sam", model="vit_b", weights=str(tmp_path / "absent.pth"))
    assert not SamBackend.locate(no_file, other).present
    assert not SamBackend.locate(ModelSpec(family="sam", model="vit_b"), other).present


def test_load_restores_the_saved_weights(loaded: SamBackend, spec: ModelSpec):
    state = torch.load(spec.weights, weights_only=True)
    ours = loaded.model.state_dict()
    assert set(ours) == set(state)
    for key, value in state.items():
        assert torch.equal(ours[key], value), key
    assert torch.allclose(
        loaded.model.pixel_mean.flatten(), torch.tensor([123.675, 116.28, 103.53])
    )
    assert not any(t.is_meta for t in [*loaded.model.parameters(), *loaded.model.buffers()])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_image_encoder_follows_the_placement(
    dtype: torch.dtype, spec: ModelSpec, settings: ModelSettings, loaded: SamBackend, photo: Image
):
    backend = SamBackend.load(spec, Placement("cpu", dtype), settings)
    assert {p.dtype for p in backend.model.image_encoder.parameters()} == {dtype}
    # segment-anything's prompt encoder hard-codes float32 coordinates: the decoder stays fp32
    assert {p.dtype for p in backend.model.mask_decoder.parameters()} == {torch.float32}
    assert {p.device.type for p in backend.model.parameters()} == {"cpu"}
    box = Box(100, 50, 300, 400)
    [(mask, score)] = backend.predictor(photo)[0].predict_boxes([box])
    loaded.cache = None
    [(ref_mask, ref_score)] = loaded.predictor(photo)[0].predict_boxes([box])
    agree = (mask.array == ref_mask.array).mean()
    assert agree > (0.999 if dtype != torch.bfloat16 else 0.95)
    assert abs(score - ref_score) < (1e-4 if dtype != torch.bfloat16 else 0.05)


# --- the predictor and its embedding cache --------------------------------------------------


def test_predictor_caches_the_embedding(sam: SamBackend, photo: Image, wide: Image):
    first, cached = sam.predictor(photo)
    assert isinstance(first, ImagePredictor) and not cached
    assert sam.stats["image_encoder"] == 1
    second, cached = sam.predictor(to_image(photo.pil.copy()))  # equal pixels, new object
    assert cached and sam.stats["image_encoder"] == 1
    assert second.embedding is first.embedding
    _, cached = sam.predictor(wide)
    assert not cached and sam.stats["image_encoder"] == 2


def test_embedding_matches_segment_anything(sam: SamBackend, wide: Image):
    predictor, _ = sam.predictor(wide)
    ref = reference(sam, wide)
    assert torch.allclose(predictor.embedding, ref.features, atol=1e-5)
    assert predictor._predictor.input_size == ref.input_size
    assert predictor._predictor.original_size == ref.original_size


def test_predict_boxes_full_size_and_like_sam(sam: SamBackend, wide: Image):
    boxes = [Box(20, 10, 120, 100), Box(0, 0, 200, 150), Box(150.5, 80.2, 190.7, 140.9)]
    predictor, _ = sam.predictor(wide)
    results = predictor.predict_boxes(boxes)
    assert len(results) == 3
    ref = reference(sam, wide)
    for box, (mask, score) in zip(boxes, results, strict=True):
        assert isinstance(mask, Mask) and mask.shape == (150, 200)
        assert mask.array.dtype == bool
        assert isinstance(score, float)
        masks, scores, _ = ref.predict(box=np.array(box.as_tuple()), multimask_output=False)
        assert (masks[0] == mask.array).mean() > 0.999
        assert abs(float(scores[0]) - score) < 1e-4
    assert predictor.predict_boxes([]) == []


def test_predict_boxes_batch_equals_singles(sam: SamBackend, photo: Image):
    boxes = [Box(100, 50, 300, 400), Box(0, 0, 64, 64), Box(250, 250, 500, 510)]
    predictor, _ = sam.predictor(photo)
    batch = predictor.predict_boxes(boxes)
    for box, (mask, score) in zip(boxes, batch, strict=True):
        [(single, single_score)] = predictor.predict_boxes([box])
        assert (single.array == mask.array).mean() > 0.999
        assert abs(single_score - score) < 1e-4
    assert sam.stats["mask_decoder"] == 1 + len(boxes)  # the batch was one decoder call


def test_predict_points_keeps_the_best_of_three(sam: SamBackend, wide: Image):
    points = [(50.0, 40.0), (180.0, 120.0), (5.0, 140.0)]
    predictor, _ = sam.predictor(wide)
    results = predictor.predict_points(points)
    ref = reference(sam, wide)
    for point, (mask, score) in zip(points, results, strict=True):
        assert mask.shape == (150, 200) and mask.array.dtype == bool
        masks, scores, _ = ref.predict(
            point_coords=np.array([point]), point_labels=np.array([1]), multimask_output=True
        )
        best = int(np.argmax(scores))
        assert abs(score - float(scores[best])) < 1e-4
        assert (masks[best] == mask.array).mean() > 0.999
    singles = [predictor.predict_points([p])[0] for p in points]
    for (m1, s1), (m2, s2) in zip(results, singles, strict=True):
        assert (m1.array == m2.array).mean() > 0.999 and abs(s1 - s2) < 1e-4
    assert predictor.predict_points([]) == []


def test_threads_get_independent_predictors(sam: SamBackend, photo: Image, wide: Image):
    images = [photo, wide, to_image("sample:chelsea"), to_image("sample:rocket")]
    box = Box(10, 10, 120, 140)

    def masks_for(image: Image) -> tuple[np.ndarray, float]:
        predictor, _ = sam.predictor(image)
        [(mask, score)] = predictor.predict_boxes([box])
        return mask.array, score

    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(masks_for, images * 2))
    assert sam.stats["image_encoder"] == 4  # each image encoded once, even when racing
    sequential = [masks_for(im) for im in images * 2]
    for (m1, s1), (m2, s2) in zip(parallel, sequential, strict=True):
        assert m1.shape == m2.shape and (m1 == m2).mean() > 0.999 and abs(s1 - s2) < 1e-4


# --- automatic masks ------------------------------------------------------------------------


def test_automatic_masks(sam: SamBackend):
    image = to_image(to_image("sample:chelsea").pil.resize((120, 90)))
    sam.predictor(image)
    objects = sam.automatic(image)
    assert sam.stats["image_encoder"] == 1  # reused the cached embedding
    assert isinstance(objects, ObjectList) and len(objects) >= 1
    areas = [o.mask.area for o in objects]
    assert areas == sorted(areas, reverse=True)
    for obj in objects:
        assert obj.mask is not None and obj.mask.shape == (90, 120)
        assert obj.box == obj.mask.box()
        assert isinstance(obj.score, float)
        assert obj.mask.area >= 0.001 * 120 * 90
    assert len(sam.automatic(image, max_masks=1)) == 1
    assert len(sam.automatic(image, min_area_fraction=1.01)) == 0


def test_automatic_points_per_side_comes_from_options(
    spec: ModelSpec, settings: ModelSettings, monkeypatch: pytest.MonkeyPatch
):
    import segment_anything.automatic_mask_generator as amg

    seen = []
    original = amg.SamAutomaticMaskGenerator._process_batch

    def spy(self, points, *args, **kwargs):
        seen.append(len(points))
        return original(self, points, *args, **kwargs)

    monkeypatch.setattr(amg.SamAutomaticMaskGenerator, "_process_batch", spy)
    options = {**spec.options, "points_per_side": 3}
    backend = SamBackend.load(spec.model_copy(update={"options": options}), CPU, settings)
    backend.automatic(to_image(to_image("sample:coffee").pil.resize((64, 48))))
    assert sum(seen) == 9


# --- the pool -------------------------------------------------------------------------------


def test_pool_shares_one_sam_and_its_cache(spec: ModelSpec, tiny_dir: Path, photo: Image):
    pool = ModelPool(ModelSettings(roles={"sam": [spec]}, cache_dir=tiny_dir))
    first, second = pool.get("sam"), pool.get("sam")
    assert first is second and pool.load_counts[spec.key()] == 1
    assert first.predictor(photo)[1] is False
    assert second.predictor(photo)[1] is True
    assert first.stats["image_encoder"] == 1


def test_from_objects(loaded: SamBackend, photo: Image):
    backend = SamBackend.from_objects(loaded.model, cache=ByteLRU(2**26))
    assert backend.device == "cpu" and backend.dtype == torch.float32
    assert backend.spec.key() != loaded.spec.key()
    assert backend.predictor(photo)[1] is False and backend.predictor(photo)[1] is True
    [(mask, _)] = backend.predictor(photo)[0].predict_boxes([Box(10, 10, 300, 300)])
    assert mask.shape == (512, 512)
