"""Open-vocabulary detectors (Grounding DINO, OWL-ViT, OWLv2) on tiny random-weight
checkpoints written by each family's tiny_spec and loaded through the real loader."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from tests.support.backends import CPU, noise_image
from tools.backends import backend_class
from tools.backends.base import Placement
from tools.backends.detection import (
    GroundingDinoBackend,
    Owlv2Backend,
    OwlVitBackend,
    class_nms,
    clean_query,
)
from tools.errors import ModelError
from tools.pool import ModelPool
from tools.settings import ModelSettings, ModelSpec
from tools.types import ObjectList

FAMILIES = [GroundingDinoBackend, OwlVitBackend, Owlv2Backend]


IMAGES = [noise_image(0, 80, 60), noise_image(1, 90, 80), noise_image(2, 100, 100)]
QUERIES = [["cat", "dog"], ["a red car"], ["tree", "person", "cat"]]


def _same(a: ObjectList, b: ObjectList) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if x.label != y.label or abs(x.score - y.score) > 1e-5:
            return False
        if max(abs(p - q) for p, q in zip(x.box.as_tuple(), y.box.as_tuple(), strict=True)) > 1e-3:
            return False
    return True


# --- registry, files, locate, load -----------------------------------------------------------


@pytest.mark.parametrize("cls", FAMILIES)
def test_registry_names_the_class(cls: type) -> None:
    assert backend_class(cls.family) is cls


@pytest.mark.parametrize("cls", FAMILIES)
def test_tiny_spec_is_a_save_pretrained_directory(
    cls: type, specs: dict[str, ModelSpec], settings: ModelSettings
) -> None:
    spec = specs[cls.family]
    directory = Path(spec.model)
    assert spec.family == cls.family
    assert (directory / "config.json").is_file()
    assert (directory / "model.safetensors").is_file()
    assert (directory / "tokenizer_config.json").is_file()
    assert (directory / "processor_config.json").is_file() or (
        directory / "preprocessor_config.json"
    ).is_file()
    located = cls.locate(spec, settings)
    assert located.present and located.where == str(directory)
    size = cls.estimate_bytes(spec, settings)
    assert size is not None and 10_000 < size < 5_000_000


@pytest.mark.parametrize("cls", FAMILIES)
def test_tiny_spec_is_deterministic(cls: type, specs: dict[str, ModelSpec], tmp_path: Path) -> None:
    again = cls.tiny_spec(tmp_path)

    def digest(spec: ModelSpec) -> str:
        return hashlib.sha256((Path(spec.model) / "model.safetensors").read_bytes()).hexdigest()

    assert digest(again) == digest(specs[cls.family])


@pytest.mark.parametrize("cls", FAMILIES)
def test_locate_missing_weights(cls: type, settings: ModelSettings, tmp_path: Path) -> None:
    missing_dir = cls.locate(ModelSpec(family=cls.family, model=str(tmp_path / "nope")), settings)
    assert not missing_dir.present
    not_cached = cls.locate(ModelSpec(family=cls.family, model="vischain-test/not-there"), settings)
    assert not not_cached.present
    assert "not in the Hugging Face cache" in not_cached.hint
    # an empty directory has no config.json
    assert not cls.locate(ModelSpec(family=cls.family, model=str(tmp_path)), settings).present


@pytest.mark.parametrize("cls", FAMILIES)
def test_load_of_missing_weights_raises_model_error(
    cls: type, settings: ModelSettings, tmp_path: Path
) -> None:
    with pytest.raises(ModelError, match=cls.family):
        cls.load(ModelSpec(family=cls.family, model=str(tmp_path)), CPU, settings)


@pytest.mark.parametrize("cls", FAMILIES)
def test_loaded_on_the_placement(cls: type, loaded: dict[str, object]) -> None:
    backend = loaded[cls.family]
    params = list(backend.model.parameters())
    assert {p.device.type for p in params} == {"cpu"}
    assert {p.dtype for p in params} == {torch.float32}
    assert not backend.model.training
    assert backend.memory_bytes() > 10_000
    assert backend.describe()["family"] == cls.family


@pytest.mark.parametrize("cls", FAMILIES)
def test_half_precision_placement(
    cls: type, specs: dict[str, ModelSpec], settings: ModelSettings
) -> None:
    backend = cls.load(specs[cls.family], Placement("cpu", torch.bfloat16), settings)
    assert {p.dtype for p in backend.model.parameters()} == {torch.bfloat16}
    found = backend.detect(IMAGES[:2], QUERIES[:2], threshold=0.0)
    assert [isinstance(f, ObjectList) for f in found] == [True, True]
    assert all(0.0 <= o.score <= 1.0 for f in found for o in f)


# --- detect ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", FAMILIES)
def test_detect_shapes_labels_boxes_order(cls: type, loaded: dict[str, object]) -> None:
    backend = loaded[cls.family]
    found = backend.detect(IMAGES, QUERIES, threshold=0.0)
    assert len(found) == len(IMAGES)
    for image, queries, objects in zip(IMAGES, QUERIES, found, strict=True):
        assert isinstance(objects, ObjectList)
        assert len(objects) > 0  # threshold 0: every surviving box is reported
        assert len(objects) <= backend.max_detections
        assert set(objects.labels) <= set(queries)
        scores = [o.score for o in objects]
        assert scores == sorted(scores, reverse=True)
        assert all(0.0 < s <= 1.0 for s in scores)
        for o in objects:
            b = o.box
            assert 0 <= b.x0 < b.x1 <= image.width
            assert 0 <= b.y0 < b.y1 <= image.height


@pytest.mark.parametrize("cls", FAMILIES)
def test_threshold_filters(cls: type, loaded: dict[str, object]) -> None:
    backend = loaded[cls.family]
    everything = backend.detect(IMAGES, QUERIES, threshold=0.0)
    scores = sorted(o.score for objects in everything for o in objects)
    cut = scores[len(scores) // 2]
    some = backend.detect(IMAGES, QUERIES, threshold=cut)
    assert 0 < sum(map(len, some)) < sum(map(len, everything))
    assert all(o.score > cut for objects in some for o in objects)
    assert backend.detect(IMAGES, QUERIES, threshold=1.0) == [ObjectList()] * 3


@pytest.mark.parametrize("cls", FAMILIES)
def test_batch_equals_singles(cls: type, loaded: dict[str, object]) -> None:
    """Different image sizes and different query lists in one batch."""
    backend = loaded[cls.family]
    batch = backend.detect(IMAGES, QUERIES, threshold=0.0)
    singles = [
        backend.detect([i], [q], threshold=0.0)[0] for i, q in zip(IMAGES, QUERIES, strict=True)
    ]
    for b, s in zip(batch, singles, strict=True):
        assert _same(b, s)


@pytest.mark.parametrize("cls", FAMILIES)
def test_empty_and_invalid_requests(cls: type, loaded: dict[str, object]) -> None:
    backend = loaded[cls.family]
    assert backend.detect([], []) == []
    assert backend.detect([IMAGES[0]], [[]]) == [ObjectList()]
    assert backend.detect([IMAGES[0]], [[" . "]]) == [ObjectList()]
    mixed = backend.detect([IMAGES[0], IMAGES[1]], [[], ["cat"]], threshold=0.0)
    assert mixed[0] == ObjectList() and len(mixed[1]) > 0
    with pytest.raises(ValueError):
        backend.detect([IMAGES[0]], [["cat"], ["dog"]])


@pytest.mark.parametrize("cls", FAMILIES)
def test_detect_output_passes_through_nms(
    cls: type, specs: dict[str, ModelSpec], settings: ModelSettings
) -> None:
    """The backend's last step (clip, NMS per label, best first) on constructed boxes, and
    the NMS property on what the model itself returns."""
    spec = specs[cls.family].model_copy(update={"options": {"nms_iou": 0.3}})
    backend = cls.load(spec, CPU, settings)
    image = IMAGES[0]  # 80 x 60
    boxes = torch.tensor(
        [[10, 10, 30, 30], [11, 11, 31, 31], [11, 11, 31, 31], [-5, 40, 20, 90], [70, 0, 95, 5]],
        dtype=torch.float32,
    )
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5])
    classes = torch.tensor([0, 0, 1, 0, 1])
    objects = backend._finish(image, ["cat", "dog"], boxes, scores, classes)
    assert [(o.label, round(o.score, 2)) for o in objects] == [
        ("cat", 0.9), ("dog", 0.7), ("cat", 0.6), ("dog", 0.5)
    ]  # fmt: skip
    assert objects[2].box.as_tuple() == (0.0, 40.0, 20.0, 60.0)  # clipped to the image
    assert objects[3].box.as_tuple() == (70.0, 0.0, 80.0, 5.0)
    found = backend.detect(IMAGES, QUERIES, threshold=0.0)
    for objects in found:
        for i, a in enumerate(objects):
            for b in objects.items[i + 1 :]:
                assert a.label != b.label or a.box.iou(b.box) <= 0.3 + 1e-6


def test_class_nms_on_constructed_boxes() -> None:
    boxes = torch.tensor(
        [
            [0, 0, 10, 10],  # 0: best "cat"
            [1, 1, 11, 11],  # 1: duplicate of 0 (IoU 0.68), same class -> removed
            [1, 1, 11, 11],  # 2: same place, other class -> kept
            [50, 50, 60, 60],  # 3: elsewhere, same class as 0 -> kept
            [0, 0, 10, 12],  # 4: duplicate of 0 (IoU 0.83) but better score -> keeps, 0 goes
        ],
        dtype=torch.float32,
    )
    scores = torch.tensor([0.8, 0.7, 0.6, 0.5, 0.9])
    classes = torch.tensor([0, 0, 1, 0, 0])
    assert class_nms(boxes, scores, classes, 0.5).tolist() == [4, 2, 3]
    assert class_nms(boxes, scores, classes, 0.95).tolist() == [4, 0, 1, 2, 3]
    assert class_nms(boxes, scores, torch.zeros(5, dtype=torch.long), 0.5).tolist() == [4, 3]
    assert (
        class_nms(
            torch.zeros((0, 4)), torch.zeros(0), torch.zeros(0, dtype=torch.long), 0.5
        ).numel()
        == 0
    )


def test_clean_query() -> None:
    assert clean_query("  a red\ncar. ") == "a red car"
    assert clean_query("...") == ""


# --- caching ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [OwlVitBackend, Owlv2Backend])
def test_owl_caches_image_side_across_calls(
    cls: type, specs: dict[str, ModelSpec], tmp_path: Path
) -> None:
    spec = specs[cls.family]
    pool = ModelPool(ModelSettings(cache_dir=tmp_path, roles={"detector": [spec]}))
    detector = pool.get("detector")
    assert isinstance(detector, cls) and detector.cache is pool.features
    first = detector.detect(IMAGES, QUERIES, threshold=0.0)
    assert detector.stats["image_encoder"] == 3
    again = detector.detect(IMAGES, QUERIES, threshold=0.0)
    other = detector.detect(IMAGES[:1], [["tree"]], threshold=0.0)
    assert detector.stats["image_encoder"] == 3  # no image was encoded again
    assert all(_same(a, b) for a, b in zip(first, again, strict=True))
    assert set(other[0].labels) == {"tree"}
    # a duplicate image inside one batch is encoded once
    fresh = cls.load(spec, CPU, ModelSettings(cache_dir=tmp_path))
    fresh.detect([IMAGES[0], IMAGES[0], IMAGES[1]], [["cat"], ["dog"], ["cat"]])
    assert fresh.stats["image_encoder"] == 2


@pytest.mark.parametrize("cls", [OwlVitBackend, Owlv2Backend])
def test_owl_split_forward_matches_the_model_forward(cls: type, loaded: dict[str, object]) -> None:
    """The cached image side + text side + heads equal transformers' own forward."""
    backend = loaded[cls.family]
    images, queries = (
        IMAGES,
        [["cat", "dog", "car"], ["a red car", "tree", "person"], ["cat", "x", "y"]],
    )
    with torch.inference_mode():
        ours = backend._predict(images, queries, 0.0)
        inputs = backend.processor(
            text=queries, images=[i.pil for i in images], return_tensors="pt"
        )
        outputs = backend.model(**inputs)
        theirs = backend.processor.post_process_grounded_object_detection(
            outputs=outputs, threshold=0.0, target_sizes=[(i.height, i.width) for i in images]
        )
    for (boxes, scores, labels), ref in zip(ours, theirs, strict=True):
        torch.testing.assert_close(boxes, ref["boxes"], atol=1e-3, rtol=1e-4)
        torch.testing.assert_close(scores, ref["scores"], atol=1e-5, rtol=1e-4)
        assert labels.tolist() == ref["labels"].tolist()


def test_grounding_dino_reencodes_every_call(loaded: dict[str, object]) -> None:
    backend = loaded["grounding_dino"]
    before = backend.stats["image_encoder"]
    backend.detect(IMAGES[:2], QUERIES[:2])
    assert backend.stats["image_encoder"] == before + 2


# --- Grounding DINO prompts and label mapping -----------------------------------------------


def test_grounding_dino_prompt_spans() -> None:
    text, spans = GroundingDinoBackend.prompt(["Red Car", "dog.", "  big   tree "])
    assert text == "red car. dog. big tree."
    assert [text[a:b] for a, b in spans] == ["red car", "dog", "big tree"]


def test_grounding_dino_phrase_scores_follow_their_tokens(loaded: dict[str, object]) -> None:
    """Each box's label is the phrase whose own tokens score highest, computed here
    independently by walking the tokenized prompt phrase by phrase."""
    backend = loaded["grounding_dino"]
    phrases = ["red car", "car", "a dog"]
    image = IMAGES[1]
    text, _ = GroundingDinoBackend.prompt(phrases)
    tokenizer = backend.processor.tokenizer
    inputs = backend.processor(images=[image.pil], text=[text], return_tensors="pt")
    with torch.inference_mode():
        outputs = backend.model(**inputs)
    probs = outputs.logits[0].sigmoid()
    position, per_phrase = 1, []  # after [CLS]
    for phrase in phrases:
        n = len(tokenizer.tokenize(phrase))
        per_phrase.append(probs[:, position : position + n].amax(-1))
        position += n + 1  # the phrase, then "."
    expected_scores, expected_labels = torch.stack(per_phrase, -1).max(-1)
    found = backend._predict([image], [phrases], 0.0)[0]
    torch.testing.assert_close(found[1], expected_scores, atol=1e-5, rtol=1e-5)
    assert found[2].tolist() == expected_labels.tolist()
    labels = backend.detect([image], [phrases], threshold=0.0)[0].labels
    assert set(labels) <= set(phrases) and len(set(labels)) > 1


def test_grounding_dino_single_padded_forward(
    specs: dict[str, ModelSpec], settings: ModelSettings
) -> None:
    spec = specs["grounding_dino"].model_copy(update={"options": {"batching": "pad"}})
    backend = GroundingDinoBackend.load(spec, CPU, settings)
    found = backend.detect(IMAGES, QUERIES, threshold=0.0)
    for image, queries, objects in zip(IMAGES, QUERIES, found, strict=True):
        assert len(objects) > 0 and set(objects.labels) <= set(queries)
        assert all(o.box.x1 <= image.width and o.box.y1 <= image.height for o in objects)
    # images of one size need no padding: the single forward equals single calls
    same = [IMAGES[0], noise_image(7, 80, 60)]
    batch = backend.detect(same, [["cat"], ["dog", "tree"]], threshold=0.0)
    singles = [
        backend.detect([i], [q], threshold=0.0)[0]
        for i, q in zip(same, [["cat"], ["dog", "tree"]], strict=True)
    ]
    assert all(_same(b, s) for b, s in zip(batch, singles, strict=True))


@pytest.mark.parametrize("cls", FAMILIES)
def test_from_objects_wraps_models_in_memory(cls: type, loaded: dict[str, object]) -> None:
    source = loaded[cls.family]
    wrapped = cls.from_objects(source.model, source.processor)
    assert wrapped.device == "cpu" and wrapped.dtype == torch.float32
    assert wrapped.family == cls.family
    assert all(
        _same(a, b)
        for a, b in zip(
            wrapped.detect(IMAGES, QUERIES, threshold=0.0),
            source.detect(IMAGES, QUERIES, threshold=0.0),
            strict=True,
        )
    )
