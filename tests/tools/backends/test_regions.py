"""Regions of one picture prepared for CLIP in one tensor op: which preprocessings qualify,
closeness to the crop-by-crop path (pixels and embeddings), caching, and Select/Classify
through it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from open_clip.transform import PreprocessCfg, image_transform_v2

from tests.support.backends import CPU
from tools.backends.clip import OpenClipBackend
from tools.backends.regions import RegionPlan, plan_of, region_pixels
from tools.base import ToolContext
from tools.builtin.crop import object_crop, object_region
from tools.builtin.match import Classify, Select
from tools.cache import ByteLRU
from tools.convert import to_image
from tools.settings import ModelSettings, ModelSpec
from tools.types import Box, Mask, Object, ObjectList

FAMILIES = [OpenClipBackend]
MEAN, STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
# Bilinear area sampling against PIL's bicubic filter: the mean absolute difference per
# region, in normalised units (1/255 of the range is about 0.015 of them). Measured on the
# photo below: 0.005-0.036 for regions of 30 px and more, 0.058 for a 6 px one blown up 37x.
PIXEL_TOLERANCE = 0.05
TINY_REGION_TOLERANCE = 0.1


def transform(size: int, mode: str = "shortest", interpolation: str = "bicubic") -> object:
    cfg = PreprocessCfg(
        size=size, mean=MEAN, std=STD, interpolation=interpolation, resize_mode=mode
    )
    return image_transform_v2(cfg, is_train=False)


def test_plans_for_open_clips_resize_modes() -> None:
    assert plan_of(transform(224)) == RegionPlan(224, True, MEAN, STD)
    assert plan_of(transform(32, "squash")) == RegionPlan(32, False, MEAN, STD)
    assert plan_of(transform(224, "longest")) is None  # pads: not a plain resize
    assert plan_of(transform(224, interpolation="bilinear")) is None
    assert plan_of(lambda image: image) is None


def objects(image) -> list[Object]:
    """Boxes small (upsampled) and large (shrunk), square and not, at the border, each
    with and without a mask covering its upper half."""
    out = []
    h, w = image.height, image.width
    for x0, y0, x1, y1 in [(10, 10, 60, 50), (100, 40, 400, 300), (0, 0, w, h),
                           (200, 300, 230, 500), (150, 20, 290, 190), (w - 5, h - 5, w, h)]:  # fmt: skip
        mask = np.zeros((h, w), bool)
        mask[y0 : (y0 + y1) // 2 + 1, x0:x1] = True
        out += [Object(Box(x0, y0, x1, y1)), Object(Box(x0, y0, x1, y1), mask=Mask(mask))]
    return out


@pytest.mark.parametrize("mode", ["shortest", "squash"])
def test_pixels_are_close_to_crop_by_crop(mode: str) -> None:
    pp = transform(224, mode)
    photo = to_image("sample:astronaut")
    objs = objects(photo)
    regions = [object_region(photo, o) for o in objs]
    fast = region_pixels(photo.array, [b for b, _ in regions], [m for _, m in regions], plan_of(pp))
    slow = torch.stack([pp(object_crop(photo, o).pil) for o in objs])
    assert fast.shape == slow.shape == (len(objs), 3, 224, 224)
    diff = (fast - slow).abs().mean(dim=(1, 2, 3))
    tiny = [min(b[2] - b[0], b[3] - b[1]) < 10 for b, _ in regions]
    for d, small in zip(diff.tolist(), tiny, strict=True):
        assert d < (TINY_REGION_TOLERANCE if small else PIXEL_TOLERANCE), diff.tolist()
    # a mask matters: greyed pixels differ from the unmasked region's
    assert float((fast[1] - fast[0]).abs().mean()) > 10 * PIXEL_TOLERANCE


@pytest.fixture(scope="module")
def clip(specs: dict[str, ModelSpec], settings: ModelSettings) -> OpenClipBackend:
    spec = specs["open_clip"]
    spec = spec.model_copy(update={"options": {**spec.options, "region_batching": True}})
    backend = OpenClipBackend.load(spec, CPU, settings)
    backend.cache = ByteLRU(2**26, "features")
    return backend


def test_embeddings_are_close_to_crop_by_crop(clip: OpenClipBackend) -> None:
    photo = to_image("sample:astronaut")
    objs = objects(photo)
    regions = [object_region(photo, o) for o in objs]
    fast = clip.region_features(photo, [b for b, _ in regions], [m for _, m in regions])
    slow = clip.image_features([object_crop(photo, o) for o in objs])
    cosine = F.cosine_similarity(fast, slow, dim=1)
    assert float(cosine.min()) > 0.98, cosine.tolist()


def test_regions_are_encoded_once_and_cached(clip: OpenClipBackend) -> None:
    photo = to_image("sample:chelsea")
    objs = objects(photo)[:6]
    regions = [object_region(photo, o) for o in objs]
    boxes, masks = [b for b, _ in regions], [m for _, m in regions]
    before = clip.stats["image_encoder"]
    first = clip.region_features(photo, boxes, masks)
    assert clip.stats["image_encoder"] == before + 1  # one forward for all six
    again = clip.region_features(photo, boxes, masks)
    assert clip.stats["image_encoder"] == before + 1 and torch.equal(first, again)


def test_select_and_classify_use_one_region_op_per_picture(
    clip: OpenClipBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tools.backends.clip as clip_module

    calls: list[int] = []
    real = clip_module.region_pixels

    def counted(picture, boxes, masks, plan, device="cpu"):
        calls.append(len(boxes))
        return real(picture, boxes, masks, plan, device)

    monkeypatch.setattr(clip_module, "region_pixels", counted)
    photo = to_image("sample:coffee")
    objs = ObjectList(tuple(objects(photo)[:8]))

    class Models:
        def get(self, role: str) -> OpenClipBackend:
            return clip

        def resolve(self, role: str) -> tuple[ModelSpec, None]:
            return clip.spec, None

        def unavailable(self, role: str) -> None:
            return None

    ctx = ToolContext(models=Models())
    chosen = Select().run_batch(ctx, [{"image": photo, "object": objs, "query": "a cup"}])[0]
    assert len(chosen) == 1
    labelled = Classify().run_batch(
        ctx, [{"image": photo, "object": objs, "categories": ["cup", "spoon"], "per_object": True}]
    )[0]
    assert all(o.label in ("cup", "spoon") for o in labelled)
    assert calls == [8]  # one op for Select's eight regions; Classify's were cached
