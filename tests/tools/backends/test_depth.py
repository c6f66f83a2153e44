"""Monocular depth (Depth Anything / DPT through transformers) on a tiny random-weight
checkpoint written by tiny_spec and loaded through the real loader; the Depth tool and the
offline profile's honest 'unavailable'."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.support.backends import CPU, noise_image
from tools.backends import backend_class
from tools.backends.depth import DepthBackend, DptDepthBackend, inverse_to_depth, region_median
from tools.cache import ByteLRU
from tools.errors import ModelError
from tools.pool import ModelPool
from tools.settings import ModelSettings, ModelSpec
from tools.types import Box, Image


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> ModelSpec:
    return DepthBackend.tiny_spec(tmp_path_factory.mktemp("depth"))


@pytest.fixture(scope="module")
def model(spec: ModelSpec, settings: ModelSettings) -> DepthBackend:
    backend = DepthBackend.load(spec, CPU, settings)
    backend.cache = ByteLRU(10_000_000)
    return backend


def test_families_are_registered() -> None:
    assert backend_class("depth_anything") is DepthBackend
    assert backend_class("dpt") is DptDepthBackend


def test_tiny_spec_is_a_save_pretrained_directory(spec: ModelSpec, settings: ModelSettings) -> None:
    directory = Path(spec.model)
    assert (directory / "config.json").is_file()
    assert (directory / "model.safetensors").is_file()
    assert (directory / "preprocessor_config.json").is_file()
    assert DepthBackend.locate(spec, settings).present


def test_missing_weights_are_reported_not_downloaded(
    settings: ModelSettings, tmp_path: Path
) -> None:
    hub = DepthBackend.locate(ModelSpec(family="depth_anything"), settings)
    assert not hub.present and "not in the Hugging Face cache" in hub.hint
    with pytest.raises(ModelError, match="depth_anything"):
        DepthBackend.load(ModelSpec(family="depth_anything", model=str(tmp_path)), CPU, settings)


def test_depth_maps_have_each_image_size_and_median_one(model: DepthBackend) -> None:
    images = [noise_image(0, 40, 30), noise_image(1, 64, 48)]
    maps = model.depth_maps(images)
    assert [m.shape for m in maps] == [(30, 40), (48, 64)]
    for m in maps:
        assert m.dtype == np.float32 and np.isfinite(m).all() and (m > 0).all()
        assert float(np.median(m)) == pytest.approx(1.0, rel=1e-3)
    assert model.stats["depth_forward"] == 2


def test_depth_maps_are_cached_per_picture(model: DepthBackend) -> None:
    picture = noise_image(7, 32, 32)
    before = model.stats["depth_forward"]
    first = model.depth_maps([picture])[0]
    again = model.depth_maps([Image(picture.pil.copy()), picture])
    assert model.stats["depth_forward"] == before + 1
    assert np.array_equal(again[0], first) and np.array_equal(again[1], first)


def test_inverse_depth_becomes_depth_that_grows_with_distance() -> None:
    inverse = np.array([[10.0, 5.0], [2.0, 1.0]])  # nearer pixels have larger inverse depth
    depth = inverse_to_depth(inverse)
    assert depth[0, 0] < depth[0, 1] < depth[1, 0] < depth[1, 1]
    assert float(np.median(depth)) == pytest.approx(1.0, rel=1e-6)


def test_region_median_uses_the_box_or_the_whole_map() -> None:
    depth = np.arange(16, dtype=np.float32).reshape(4, 4)
    assert region_median(depth) == pytest.approx(7.5)
    assert region_median(depth, (0, 0, 2, 2)) == pytest.approx(2.5)  # 0, 1, 4, 5
    assert region_median(depth, (3.5, 3.5, 9, 9)) == pytest.approx(15.0)
    assert region_median(depth, (10, 10, 12, 12)) == pytest.approx(7.5)  # outside: whole map


def test_depth_tool_measures_an_object_on_the_tiny_profile(tiny) -> None:
    source = """BOX0=LOC(image=IMAGE,object='LEFT')
DEPTH0=Depth(image=IMAGE,object=BOX0)
DEPTH1=Depth(image=IMAGE)
FINAL_RESULT=RESULT(var=DEPTH0)"""
    result = tiny.execute(source, image="sample:coffee")
    assert result.ok, result.error
    left = result.values["DEPTH0"]
    assert isinstance(left, float) and left > 0
    assert result.values["DEPTH1"] == pytest.approx(1.0, rel=1e-3)
    depth = tiny.pool.get("depth").depth_maps([result.trace.inputs[0].value])[0]
    h, w = depth.shape
    assert left == pytest.approx(region_median(depth, Box(0, 0, w / 2, h).as_tuple()), rel=1e-5)


def test_offline_profile_has_no_depth_model(tmp_path: Path) -> None:
    pool = ModelPool(ModelSettings(profile="offline", cache_dir=tmp_path))
    reason = pool.unavailable("depth")
    assert reason is not None and "depth" in reason


def test_depth_picture_is_brighter_where_nearer() -> None:
    from tools.builtin.depth import depth_picture

    depth = np.array([[0.5, 1.0], [2.0, 4.0]], dtype=np.float32)
    grey = depth_picture(depth)
    assert grey.shape == (2, 2, 3) and grey.dtype == np.uint8
    assert grey[0, 0, 0] > grey[0, 1, 0] > grey[1, 0, 0] >= grey[1, 1, 0]
    assert depth_picture(np.ones((3, 3), np.float32)).max() == 0  # flat: no contrast


def test_depth_map_step_shows_the_depth_in_the_trace(tiny, tmp_path: Path) -> None:
    from tools.builtin.depth import depth_picture

    source = "IMAGE0=DepthMap(image=IMAGE)\nDEPTH0=Depth(image=IMAGE)\nRESULT=IMAGE0"
    result = tiny.execute(source, image="sample:chelsea", trace_dir=tmp_path)
    assert result.ok, result.error
    picture = result.output
    assert picture.size == result.trace.inputs[0].value.size
    depth = tiny.pool.get("depth").depth_maps([result.trace.inputs[0].value])[0]
    assert np.array_equal(picture.array, depth_picture(depth))
    step = result.trace.step("IMAGE0")
    assert step.artifact and (tmp_path / step.artifact).is_file()
    assert 'alt="IMAGE0"' in (tmp_path / "index.html").read_text()
