"""OpenClipBackend on a tiny random open_clip model written in open_clip's own HF layout."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image as PILImage

from tests.support.backends import CPU
from tools.backends.base import Placement
from tools.backends.clip import DEFAULT_TEMPLATES, TINY_CONFIG, OpenClipBackend
from tools.backends.clip_weights import WeightsMissing, resolve
from tools.cache import ByteLRU
from tools.convert import to_image
from tools.pool import ModelPool
from tools.settings import ModelSettings, ModelSpec
from tools.types import Image


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clip")


@pytest.fixture(scope="module")
def spec(tiny_dir: Path) -> ModelSpec:
    return OpenClipBackend.tiny_spec(tiny_dir)


@pytest.fixture(scope="module")
def loaded(spec: ModelSpec, settings: ModelSettings) -> OpenClipBackend:
    backend = OpenClipBackend.load(spec, CPU, settings)
    assert isinstance(backend, OpenClipBackend)
    return backend


@pytest.fixture
def clip(loaded: OpenClipBackend) -> OpenClipBackend:
    """The shared model with a fresh feature cache (as the pool would attach)."""
    loaded.cache = ByteLRU(64 * 2**20)
    return loaded


@pytest.fixture(scope="module")
def photos() -> list[Image]:
    return [to_image(f"sample:{n}") for n in ("astronaut", "coffee", "chelsea", "rocket")]


def plant(cache: Path, repo: str, files: dict[str, Path | bytes]) -> Path:
    """Put files into a Hugging Face cache layout (refs/main -> snapshots/<commit>/...)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    root = cache / ("models--" + repo.replace("/", "--"))
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        if isinstance(content, Path):
            shutil.copy(content, snapshot / name)
        else:
            (snapshot / name).write_bytes(content)
    return snapshot


# --- locating and loading ---------------------------------------------------------------------


def test_tiny_spec_is_in_open_clip_layout_and_located(spec: ModelSpec, settings: ModelSettings):
    folder = Path(spec.model)
    assert (folder / "open_clip_config.json").is_file()
    assert (folder / "open_clip_model.safetensors").is_file()
    config = json.loads((folder / "open_clip_config.json").read_text())["model_cfg"]
    assert config["text_cfg"]["vocab_size"] == 49408  # the real CLIP BPE vocabulary
    assert config["text_cfg"]["context_length"] == 77
    located = OpenClipBackend.locate(spec, settings)
    assert located.present and located.where == str(folder)


def test_tiny_spec_is_deterministic(spec: ModelSpec, tmp_path: Path):
    again = OpenClipBackend.tiny_spec(tmp_path)
    a = (Path(spec.model) / "open_clip_model.safetensors").read_bytes()
    b = (Path(again.model) / "open_clip_model.safetensors").read_bytes()
    assert a == b


@pytest.mark.parametrize(
    ("model", "weights", "hint"),
    [
        ("ViT-B-32", "openai", "huggingface-cli download timm/vit_base_patch32_clip_224.openai"),
        ("ViT-L-14", "laion2b_s32b_b82k", "huggingface-cli download"),
        ("ViT-B-32", None, "random_init"),
        ("ViT-B-32", "no_such_tag", "neither an open_clip pretrained tag"),
        ("ViT-B-32", "/nonexistent/clip.pt", "neither an open_clip pretrained tag"),
        ("No-Such-Arch", "openai", "not an open_clip architecture"),
        ("hf-hub:nobody/no-such-clip", None, "not in the Hugging Face cache"),
        ("", None, "set model"),
    ],
)
def test_locate_reports_missing_weights(
    model: str, weights: str | None, hint: str, settings: ModelSettings, hf_cache: Path
):
    located = OpenClipBackend.locate(
        ModelSpec(family="open_clip", model=model, weights=weights), settings
    )
    assert not located.present
    assert hint in located.hint


def test_locate_finds_a_pretrained_tag_in_the_hf_cache(settings: ModelSettings, hf_cache: Path):
    spec = ModelSpec(family="open_clip", model="ViT-B-32", weights="openai")
    assert not OpenClipBackend.locate(spec, settings).present
    snapshot = plant(hf_cache, "timm/vit_base_patch32_clip_224.openai",
                     {"open_clip_model.safetensors": b"weights"})  # fmt: skip
    located = OpenClipBackend.locate(spec, settings)
    assert located.present
    assert located.where == str(snapshot / "open_clip_model.safetensors")


def test_a_pretrained_tag_resolves_to_its_file_and_what_it_implies(
    settings: ModelSettings, hf_cache: Path
):
    spec = ModelSpec(family="open_clip", model="ViT-B-32", weights="openai")
    with pytest.raises(WeightsMissing, match="huggingface-cli download"):
        resolve(spec, settings)
    snapshot = plant(hf_cache, "timm/vit_base_patch32_clip_224.openai",
                     {"open_clip_model.safetensors": b"weights"})  # fmt: skip
    source = resolve(spec, settings)
    assert source.name == "ViT-B-32" and source.quick_gelu  # OpenAI's CLIP uses QuickGELU
    assert source.checkpoint == str(snapshot / "open_clip_model.safetensors")
    assert source.preprocess["mean"] == pytest.approx([0.48145466, 0.4578275, 0.40821073])


def test_hf_hub_model_loads_from_the_cache(
    spec: ModelSpec, settings: ModelSettings, hf_cache: Path, photos: list[Image]
):
    folder = Path(spec.model)
    plant(hf_cache, "someone/tiny-clip", {p.name: p for p in folder.iterdir()})
    hub_spec = ModelSpec(family="open_clip", model="hf-hub:someone/tiny-clip")
    assert OpenClipBackend.locate(hub_spec, settings).where == "hf-cache:someone/tiny-clip"
    from_hub = OpenClipBackend.load(hub_spec, CPU, settings)
    direct = OpenClipBackend.load(spec, CPU, settings)
    assert torch.allclose(from_hub.image_features(photos[:1]), direct.image_features(photos[:1]))


def test_checkpoint_path_as_weights(spec: ModelSpec, settings: ModelSettings, tmp_path: Path):
    folder = tmp_path / "bare"
    folder.mkdir()
    shutil.copy(Path(spec.model) / "open_clip_config.json", folder)
    bare = ModelSpec(family="open_clip", model=str(folder))
    assert not OpenClipBackend.locate(bare, settings).present  # a config but no weights
    checkpoint = Path(spec.model) / "open_clip_model.safetensors"
    with_file = ModelSpec(family="open_clip", model=str(folder), weights=str(checkpoint))
    assert OpenClipBackend.locate(with_file, settings).where == str(checkpoint)
    backend = OpenClipBackend.load(with_file, CPU, settings)
    ref = OpenClipBackend.load(spec, CPU, settings)
    texts = ["a photo of a cat."]
    assert torch.allclose(backend.text_features(texts), ref.text_features(texts))


def test_random_init_only_when_asked(settings: ModelSettings, tmp_path: Path):
    config = tmp_path / "vischain-test-tiny-clip.json"
    base = open_clip.get_model_config("ViT-B-32")
    cfg = json.loads(json.dumps(TINY_CONFIG))
    cfg["text_cfg"].update(context_length=77, vocab_size=base["text_cfg"]["vocab_size"])
    config.write_text(json.dumps(cfg))
    plain = ModelSpec(family="open_clip", model=str(config))
    assert not OpenClipBackend.locate(plain, settings).present
    random = ModelSpec(family="open_clip", model=str(config), options={"random_init": True})
    assert OpenClipBackend.locate(random, settings).present
    backend = OpenClipBackend.load(random, CPU, settings)
    assert backend.text_features(["a dog"]).shape == (1, 32)


def test_load_matches_open_clips_own_loader(loaded: OpenClipBackend, spec: ModelSpec):
    """The backend builds on the meta device and adopts the checkpoint's tensors; the result
    must equal open_clip's regular create_model (random init, then load)."""
    name = "local-dir:" + spec.model
    ref = open_clip.create_model(name, pretrained_text=False).eval()
    ours = loaded.model.state_dict()
    for key, value in ref.state_dict().items():
        assert torch.equal(ours[key], value), key
    assert torch.equal(loaded.model.attn_mask, ref.attn_mask)  # rebuilt, not in checkpoints
    tokens = open_clip.get_tokenizer(name)(["a photo of a dog."])
    with torch.inference_mode():
        expected = torch.nn.functional.normalize(ref.encode_text(tokens), dim=-1)
    assert torch.allclose(loaded.text_features(["a photo of a dog."]), expected, atol=1e-6)


def test_estimate_bytes_is_fp32_parameter_size(
    spec: ModelSpec, settings: ModelSettings, loaded: OpenClipBackend
):
    n_params = sum(p.numel() for p in loaded.model.parameters())
    assert OpenClipBackend.estimate_bytes(spec, settings) == n_params * 4


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_parameters_follow_the_placement(
    dtype: torch.dtype, spec: ModelSpec, settings: ModelSettings, loaded: OpenClipBackend
):
    assert {p.dtype for p in loaded.model.parameters()} == {torch.float32}
    assert {p.device.type for p in loaded.model.parameters()} == {"cpu"}
    backend = OpenClipBackend.load(spec, Placement("cpu", dtype), settings)
    assert {p.dtype for p in backend.model.parameters()} == {dtype}
    images = [to_image("sample:coffee")]
    feats = backend.image_features(images)
    assert feats.dtype == torch.float32  # outputs are float32 whatever the model's dtype
    tol = 1e-5 if dtype == torch.float64 else 5e-2
    assert torch.allclose(feats, loaded.image_features(images), atol=tol)


# --- features -----------------------------------------------------------------------------


def test_image_features_shape_norm_dtype(clip: OpenClipBackend, photos: list[Image]):
    feats = clip.image_features(photos)
    assert feats.shape == (4, 32)
    assert feats.dtype == torch.float32 and feats.device.type == "cpu"
    assert torch.allclose(feats.norm(dim=1), torch.ones(4), atol=1e-5)
    assert clip.image_features([]).shape == (0, 32)


def test_batch_equals_singles(loaded: OpenClipBackend, photos: list[Image]):
    loaded.cache = None  # every call encodes
    batch = loaded.image_features(photos)
    singles = torch.cat([loaded.image_features([p]) for p in photos])
    assert torch.allclose(batch, singles, atol=1e-5)
    texts = ["a cat", "a photo of a rocket on a launch pad", "coffee"]
    t_batch = loaded.text_features(texts)
    t_singles = torch.cat([loaded.text_features([t]) for t in texts])
    assert torch.allclose(t_batch, t_singles, atol=1e-5)


def test_second_call_on_same_image_does_not_reencode(clip: OpenClipBackend, photos: list[Image]):
    before = clip.stats["image_encoder"], clip.stats["images_encoded"]
    first = clip.image_features(photos[:2])
    assert clip.stats["image_encoder"] == before[0] + 1  # one forward for the batch
    assert clip.stats["images_encoded"] == before[1] + 2
    again = clip.image_features([to_image(photos[1].pil.copy())])  # equal pixels, new object
    assert clip.stats["image_encoder"] == before[0] + 1
    assert torch.equal(again[0], first[1])


def test_only_uncached_images_are_encoded_in_one_batch(clip: OpenClipBackend, photos: list[Image]):
    clip.image_features(photos[:2])
    forwards, encoded = clip.stats["image_encoder"], clip.stats["images_encoded"]
    feats = clip.image_features([photos[0], photos[2], photos[1], photos[3], photos[2]])
    assert clip.stats["image_encoder"] == forwards + 1
    assert clip.stats["images_encoded"] == encoded + 2  # photos 2 and 3, the duplicate once
    assert torch.equal(feats[1], feats[4])
    assert feats.shape == (5, 32)


def test_encoder_batches_are_capped(spec: ModelSpec, settings: ModelSettings, photos: list[Image]):
    capped = spec.model_copy(update={"options": {"batch_size": 3}})
    backend = OpenClipBackend.load(capped, CPU, settings)
    feats = backend.image_features(photos)
    assert backend.stats["image_encoder"] == 2 and backend.stats["images_encoded"] == 4
    ref = OpenClipBackend.load(spec, CPU, settings).image_features(photos)
    assert torch.allclose(feats, ref, atol=1e-5)


def test_text_features_use_the_real_tokenizer_and_cache(clip: OpenClipBackend):
    tokens = clip.tokenizer(["a photo of a cat"])
    assert tokens.shape == (1, 77)
    ids = [int(t) for t in tokens[0] if t != 0]
    assert ids[0] == 49406 and ids[-1] == 49407  # CLIP's start/end of text
    assert ids[1:-1] == [320, 1125, 539, 320, 2368]  # a, photo, of, a, cat: whole words
    before = clip.stats["text_encoder"]
    feats = clip.text_features(["a cat", "a dog"])
    assert feats.shape == (2, 32)
    assert not torch.allclose(feats[0], feats[1])
    clip.text_features(["a dog"])
    assert clip.stats["text_encoder"] == before + 1


def test_threads_share_the_model(clip: OpenClipBackend, photos: list[Image]):
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda p: clip.image_features([p]), photos))
    clip.cache = None
    for photo, feats in zip(photos, results, strict=True):
        assert torch.allclose(feats, clip.image_features([photo]), atol=1e-5)


# --- zero-shot and similarity ---------------------------------------------------------------


def test_zero_shot_rows_are_probabilities(clip: OpenClipBackend, photos: list[Image]):
    classes = ["astronaut", "cup of coffee", "cat", "rocket", "dog"]
    probs = clip.zero_shot(photos, classes)
    assert probs.shape == (4, 5)
    assert np.all(probs >= 0)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert clip.zero_shot([], classes).shape == (0, 5)
    with pytest.raises(ValueError):
        clip.zero_shot(photos, [])


def test_zero_shot_is_softmax_of_scaled_ensemble(clip: OpenClipBackend, photos: list[Image]):
    classes = ["cat", "rocket"]
    descriptions = {"cat": ["a small furry animal with whiskers", "a pet with pointed ears"]}
    probs = clip.zero_shot(photos, classes, descriptions=descriptions)
    img = clip.image_features(photos)
    cls = []
    for name in classes:
        prompts = [t.format(name) for t in DEFAULT_TEMPLATES] + descriptions.get(name, [])
        mean = clip.text_features(prompts).mean(dim=0)
        cls.append(mean / mean.norm())
    logits = (img @ torch.stack(cls).T).double() * clip.logit_scale
    assert np.allclose(probs, torch.softmax(logits, dim=1).numpy(), atol=1e-5)
    # descriptions for a class change that class's embedding only
    plain = clip.similarity_to_classes(photos, classes)
    described = clip.similarity_to_classes(photos, classes, descriptions=descriptions)
    assert not np.allclose(plain[:, 0], described[:, 0])
    assert np.allclose(plain[:, 1], described[:, 1], atol=1e-6)


def test_custom_templates(clip: OpenClipBackend, photos: list[Image]):
    sims = clip.similarity_to_classes(photos, ["cat"], templates=["{}"])
    assert np.allclose(sims, clip.similarity(photos, ["cat"]), atol=1e-6)


def test_similarity_is_cosine(clip: OpenClipBackend, photos: list[Image]):
    texts = ["a cat", "a rocket", "a cup"]
    sims = clip.similarity(photos, texts)
    assert sims.shape == (4, 3)
    assert np.all(np.abs(sims) <= 1.0 + 1e-6)
    expected = (clip.image_features(photos) @ clip.text_features(texts).T).numpy()
    assert np.allclose(sims, expected)
    assert clip.similarity([], texts).shape == (0, 3)
    assert 1.0 < clip.logit_scale <= 100.0


# --- in-memory objects and the pool --------------------------------------------------------


def test_from_objects(spec: ModelSpec, loaded: OpenClipBackend, photos: list[Image]):
    name = "local-dir:" + spec.model
    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained_text=False)
    tokenizer = open_clip.get_tokenizer(name)
    backend = OpenClipBackend.from_objects(model, preprocess, tokenizer, cache=ByteLRU(2**24))
    assert backend.device == "cpu" and backend.dtype == torch.float32
    assert torch.allclose(backend.image_features(photos), loaded.image_features(photos), atol=1e-5)
    backend.image_features(photos)
    assert backend.stats["image_encoder"] == 1
    doubled = OpenClipBackend.from_objects(
        model, preprocess, tokenizer, placement=Placement("cpu", torch.float64)
    )
    assert next(doubled.model.parameters()).dtype == torch.float64


def test_pool_loads_once_and_caches_features(spec: ModelSpec, tiny_dir: Path, photos: list[Image]):
    pool = ModelPool(ModelSettings(roles={"clip": [spec]}, cache_dir=tiny_dir))
    first = pool.get("clip")
    second = pool.get("clip")
    assert first is second
    assert isinstance(first, OpenClipBackend)
    assert pool.load_counts[spec.key()] == 1
    assert first.cache is pool.features
    first.image_features(photos[:1])
    second.image_features(photos[:1])
    assert first.stats["image_encoder"] == 1
    assert pool.features.stats.hits >= 1


def test_batched_pixels_equal_per_image_preprocessing(clip: OpenClipBackend) -> None:
    """The PIL stage per image, then one scale-and-normalise over the stack: the same input
    as preprocessing each image on its own, for pictures of any size and shape."""
    from tools.backends.clip import _split_preprocess

    assert _split_preprocess(clip.preprocess) is not None  # the batched path is the one used
    rng = np.random.default_rng(1)
    sizes = [(17, 90), (224, 224), (301, 120), (40, 41), (512, 300)]
    images = [
        Image(PILImage.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))) for w, h in sizes
    ]
    batched = clip.pixels(images)
    singles = torch.stack([clip.preprocess(im.pil) for im in images])
    assert batched.shape == singles.shape and batched.dtype == singles.dtype
    torch.testing.assert_close(batched, singles, rtol=0, atol=1e-6)
