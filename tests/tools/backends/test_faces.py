"""MTCNN and Haar face detection with the real weights that ship in facenet-pytorch and
OpenCV, on photos that ship in scikit-image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from PIL import ImageOps

from tests.support.backends import CPU
from tools.backends import backend_class
from tools.backends.base import Placement
from tools.backends.faces import HaarBackend, MtcnnBackend
from tools.cache import ByteLRU
from tools.convert import to_image
from tools.errors import ModelError
from tools.settings import ModelSettings, ModelSpec
from tools.types import Box, Image

# The astronaut's face (brows to chin, ear to ear), read off the 512×512 picture.
ASTRONAUT_FACE = Box(180, 70, 268, 175)


@pytest.fixture(scope="module")
def photos() -> dict[str, Image]:
    names = ("astronaut", "coffee", "rocket")
    found = {n: to_image(f"sample:{n}") for n in names}
    found["mirrored"] = Image(ImageOps.mirror(found["astronaut"].pil), name="mirrored")
    return found


@pytest.fixture(scope="module")
def mtcnn(settings: ModelSettings) -> MtcnnBackend:
    backend = MtcnnBackend.load(ModelSpec(family="mtcnn"), CPU, settings)
    assert isinstance(backend, MtcnnBackend)
    return backend


@pytest.fixture(scope="module")
def haar(settings: ModelSettings) -> HaarBackend:
    backend = HaarBackend.load(ModelSpec(family="haar"), CPU, settings)
    assert isinstance(backend, HaarBackend)
    return backend


def _boxes(found: list) -> list[list[tuple[float, ...]]]:
    return [[o.box.as_tuple() for o in objs] for objs in found]


def test_registry_names_these_classes() -> None:
    assert backend_class("mtcnn") is MtcnnBackend
    assert backend_class("haar") is HaarBackend
    assert MtcnnBackend.offline_capable and HaarBackend.offline_capable


def test_locate_finds_weights_inside_the_packages(settings: ModelSettings, tmp_path) -> None:
    found = MtcnnBackend.locate(ModelSpec(family="mtcnn"), settings)
    assert found.present and found.where.endswith("facenet_pytorch/data")
    missing = MtcnnBackend.locate(ModelSpec(family="mtcnn", weights=str(tmp_path)), settings)
    assert not missing.present and "pnet.pt" in missing.hint
    assert (MtcnnBackend.estimate_bytes(ModelSpec(family="mtcnn"), settings) or 0) > 1_000_000

    cascade = HaarBackend.locate(ModelSpec(family="haar"), settings)
    assert cascade.present and cascade.where.endswith("haarcascade_frontalface_default.xml")
    absent = HaarBackend.locate(ModelSpec(family="haar", model="no_such_cascade.xml"), settings)
    assert not absent.present and "no_such_cascade.xml" in absent.hint


def test_loading_without_weights_is_a_model_error_saying_what_to_do(
    settings: ModelSettings, tmp_path
) -> None:
    with pytest.raises(ModelError, match=r"MTCNN weights not found: .*pnet\.pt"):
        MtcnnBackend.load(ModelSpec(family="mtcnn", weights=str(tmp_path)), CPU, settings)
    with pytest.raises(ModelError, match=r"Haar cascade not found: .*no_such_cascade\.xml"):
        HaarBackend.load(ModelSpec(family="haar", model="no_such_cascade.xml"), CPU, settings)


def test_mtcnn_finds_the_astronaut(mtcnn: MtcnnBackend, photos: dict[str, Image]) -> None:
    [faces] = mtcnn.detect_faces([photos["astronaut"]])
    assert len(faces) == 1
    face = faces[0]
    assert face.label == "face" and face.score is not None and face.score > 0.99
    assert face.box.iou(ASTRONAUT_FACE) > 0.6
    marks = face.extra["landmarks"]
    assert len(marks) == 5
    assert all(
        face.box.x0 <= x <= face.box.x1 and face.box.y0 <= y <= face.box.y1 for x, y in marks
    )


def test_mtcnn_finds_no_face_in_coffee_or_rocket(
    mtcnn: MtcnnBackend, photos: dict[str, Image]
) -> None:
    assert [len(f) for f in mtcnn.detect_faces([photos["coffee"], photos["rocket"]])] == [0, 0]


def test_mtcnn_batch_equals_singles_and_groups_by_size(
    mtcnn: MtcnnBackend, photos: dict[str, Image]
) -> None:
    images = [photos[n] for n in ("astronaut", "coffee", "mirrored")]
    singles = [mtcnn.detect_faces([img])[0] for img in images]
    calls = mtcnn.stats["detector"]
    batch = mtcnn.detect_faces(images)
    # two sizes (512², 600×400): one MTCNN call each
    assert mtcnn.stats["detector"] - calls == 2
    assert [len(b) for b in batch] == [len(s) for s in singles]
    for got, want in zip(batch, singles, strict=True):
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g.box.as_tuple(), w.box.as_tuple(), atol=1e-3)
            assert g.score == pytest.approx(w.score, abs=1e-5)
    # the mirrored astronaut's face is mirrored too
    mirrored = batch[2][0].box
    assert mirrored.iou(Box(512 - ASTRONAUT_FACE.x1, 70, 512 - ASTRONAUT_FACE.x0, 175)) > 0.6


def test_pictures_too_small_for_a_face(mtcnn: MtcnnBackend, haar: HaarBackend) -> None:
    tiny = [Image(PILImage.new("RGB", size, "gray")) for size in ((8, 8), (2000, 12), (30, 25))]
    assert [len(f) for f in mtcnn.detect_faces(tiny)] == [0, 0, 0]
    assert [len(f) for f in haar.detect_faces(tiny)] == [0, 0, 0]


def test_mtcnn_options_and_cache(settings: ModelSettings, photos: dict[str, Image]) -> None:
    big_only = MtcnnBackend.load(
        ModelSpec(family="mtcnn", options={"min_face_size": 200}), CPU, settings
    )
    assert len(big_only.detect_faces([photos["astronaut"]])[0]) == 0  # the face is ~90 px

    big_only.cache = ByteLRU(2**20)
    big_only.detect_faces([photos["coffee"]])
    calls = big_only.stats["detector"]
    big_only.detect_faces([photos["coffee"], photos["coffee"]])
    assert big_only.stats["detector"] == calls  # served from the cache


def test_mtcnn_placement_and_memory(settings: ModelSettings, photos: dict[str, Image]) -> None:
    auto = MtcnnBackend.load(ModelSpec(family="mtcnn"), Placement("cpu", torch.bfloat16), settings)
    assert auto.dtype == torch.float32  # auto dtype: MTCNN stays fp32 (no bf16 nms kernel)
    params = list(auto.mtcnn.parameters())
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in params)
    assert 1_500_000 < auto.memory_bytes() < 3_000_000

    f64 = MtcnnBackend.load(
        ModelSpec(family="mtcnn", dtype="float64"), Placement("cpu", torch.float64), settings
    )
    assert all(p.dtype == torch.float64 for p in f64.mtcnn.parameters())
    [faces] = f64.detect_faces([photos["astronaut"]])
    assert len(faces) == 1 and faces[0].box.iou(ASTRONAUT_FACE) > 0.6


def test_mtcnn_from_objects(photos: dict[str, Image]) -> None:
    from facenet_pytorch import MTCNN

    backend = MtcnnBackend.from_objects(MTCNN(keep_all=True))
    [faces] = backend.detect_faces([photos["astronaut"]])
    assert len(faces) == 1 and faces[0].box.iou(ASTRONAUT_FACE) > 0.6


def test_haar_finds_the_astronaut(haar: HaarBackend, photos: dict[str, Image]) -> None:
    [faces] = haar.detect_faces([photos["astronaut"]])
    assert len(faces) == 1
    face = faces[0]
    assert face.label == "face" and face.score is not None and 0.5 < face.score <= 1.0
    assert face.box.iou(ASTRONAUT_FACE) > 0.6
    assert face.score == pytest.approx(1 / (1 + np.exp(-face.extra["level_weight"])))


def test_haar_finds_no_face_in_coffee_or_rocket(
    haar: HaarBackend, photos: dict[str, Image]
) -> None:
    assert [len(f) for f in haar.detect_faces([photos["coffee"], photos["rocket"]])] == [0, 0]


def test_haar_batch_equals_singles_and_caches(
    settings: ModelSettings, photos: dict[str, Image]
) -> None:
    backend = HaarBackend.load(ModelSpec(family="haar"), CPU, settings)
    images = [photos[n] for n in ("astronaut", "coffee", "mirrored")]
    singles = [backend.detect_faces([img])[0] for img in images]
    assert _boxes(backend.detect_faces(images)) == _boxes(singles)
    assert backend.memory_bytes() == 0 and backend.device == "cpu"

    backend.cache = ByteLRU(2**20)
    backend.detect_faces(images)
    calls = backend.stats["detector"]
    again = backend.detect_faces(images)
    assert backend.stats["detector"] == calls
    assert _boxes(again) == _boxes(singles)


def test_haar_min_score_option(settings: ModelSettings, photos: dict[str, Image]) -> None:
    strict = HaarBackend.load(
        ModelSpec(family="haar", options={"min_score": 0.999999}), CPU, settings
    )
    assert len(strict.detect_faces([photos["astronaut"]])[0]) == 0
