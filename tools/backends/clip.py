"""CLIP through open_clip: image and text embeddings, zero-shot classification, similarity.

``spec.model`` names the architecture: an open_clip config name ("ViT-B-32", "ViT-L-14"),
a local directory in open_clip's Hugging Face layout (``open_clip_config.json`` plus
``open_clip_model.safetensors``; what :meth:`OpenClipBackend.tiny_spec` writes), an
``hf-hub:org/repo`` id found in the local HF cache, or a JSON file holding a bare model
config. ``spec.weights`` is an open_clip pretrained tag ("openai", "laion2b_s34b_b79k"),
resolved without the network to its file in the HF cache, or a checkpoint path. Features are
cached per image content hash and per text in the pool's feature cache.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import threading
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from ..cache import ByteLRU
from ..errors import ModelError
from ..settings import ModelSettings, ModelSpec
from ..types import Image
from .base import Backend, Located, Placement, dir_bytes

log = logging.getLogger("vischain.models")

HF_PREFIX = "hf-hub:"
LOCAL_PREFIX = "local-dir:"
CONFIG_NAME = "open_clip_config.json"
WEIGHT_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")

# Prompt ensemble for zero-shot classification (each class embedding is the renormalised
# mean over these, formatted with the class name).
DEFAULT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a photo of the {}.",
    "a close-up photo of a {}.",
    "a cropped photo of a {}.",
    "a photo of a small {}.",
    "a photo of a large {}.",
    "a bright photo of a {}.",
    "a dark photo of a {}.",
)
DEFAULT_MAX_BATCH = 128  # images or texts per encoder forward (options["batch_size"])

# The tiny test model: a small ViT and text tower; the text tower keeps CLIP's real vocabulary
# size and context length so open_clip's bundled BPE tokenizer drives it.
TINY_CONFIG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"width": 32, "heads": 2, "layers": 2},
}
TINY_PREPROCESS: dict[str, Any] = {
    "mean": [0.48145466, 0.4578275, 0.40821073],
    "std": [0.26862954, 0.26130258, 0.27577711],
    "interpolation": "bicubic",
    "resize_mode": "shortest",
}
TINY_SEED = 20240611


@dataclass(frozen=True)
class _Source:
    """How to build a spec's model: the open_clip model name, the checkpoint (None for random
    weights), and overrides a pretrained tag implies."""

    name: str
    checkpoint: str | None
    where: str
    quick_gelu: bool = False
    preprocess: dict[str, Any] = field(default_factory=dict)
    register: str | None = None  # a bare config JSON file to add to open_clip's registry


class _Missing(Exception):
    """A spec's weights or config are not on this machine (the message is the hint)."""


class OpenClipBackend(Backend):
    """A loaded open_clip model with cached, batched image and text embeddings."""

    family: ClassVar[str] = "open_clip"

    def __init__(
        self,
        spec: ModelSpec,
        placement: Placement,
        model: torch.nn.Module,
        preprocess: Callable[[Any], torch.Tensor],
        tokenizer: Callable[..., torch.Tensor],
    ) -> None:
        super().__init__(spec, placement)
        self.model = model.eval()
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.max_batch = int(spec.options.get("batch_size", DEFAULT_MAX_BATCH))
        self._stats_lock = threading.Lock()

    # --- construction ----------------------------------------------------------------------

    @classmethod
    def from_objects(
        cls,
        model: torch.nn.Module,
        preprocess: Callable[[Any], torch.Tensor],
        tokenizer: Callable[..., torch.Tensor],
        *,
        spec: ModelSpec | None = None,
        placement: Placement | None = None,
        cache: ByteLRU | None = None,
    ) -> OpenClipBackend:
        """Wrap an open_clip model, its eval transform and tokenizer already in memory (e.g.
        from ``open_clip.create_model_and_transforms``). With ``placement`` the model is moved
        there; otherwise it stays where its parameters are."""
        if placement is None:
            param = next(model.parameters())
            placement = Placement(str(param.device), param.dtype)
        else:
            model.to(device=placement.device, dtype=placement.dtype)
        spec = spec or ModelSpec(
            family=cls.family, model=f"in-memory:{type(model).__name__}@{id(model):x}"
        )
        backend = cls(spec, placement, model, preprocess, tokenizer)
        backend.cache = cache
        return backend

    @classmethod
    def locate(cls, spec: ModelSpec, settings: ModelSettings) -> Located:
        try:
            source = _resolve(spec, settings)
        except _Missing as missing:
            return Located(False, hint=str(missing))
        return Located(True, source.where)

    @classmethod
    def load(cls, spec: ModelSpec, placement: Placement, settings: ModelSettings) -> Backend:
        import open_clip
        from open_clip.transform import PreprocessCfg, image_transform_v2

        try:
            source = _resolve(spec, settings)
        except _Missing as missing:
            raise ModelError(f"cannot load {spec.label()}: {missing}") from None
        if source.register:
            _register_config(source.register)
        kwargs: dict[str, Any] = {
            "pretrained_text": False,  # never fetch tower weights from a hub
            "pretrained_image": False,
            "load_weights": False,  # the checkpoint is loaded below, from a resolved path
            "force_quick_gelu": source.quick_gelu,
            "force_preprocess_cfg": source.preprocess or None,
        }
        model = None
        with _quiet_open_clip(bool(source.checkpoint)):
            if source.checkpoint:
                model = _build_loaded(source.name, source.checkpoint, kwargs)
            if model is None:
                model = open_clip.create_model(source.name, **kwargs)
                if source.checkpoint:
                    open_clip.load_checkpoint(model, source.checkpoint, strict=True)
        model.to(device=placement.device, dtype=placement.dtype)
        model.eval()
        preprocess = image_transform_v2(
            PreprocessCfg(**model.visual.preprocess_cfg), is_train=False
        )
        tokenizer = open_clip.get_tokenizer(source.name)
        return cls(spec, placement, model, preprocess, tokenizer)

    @classmethod
    def estimate_bytes(cls, spec: ModelSpec, settings: ModelSettings) -> int | None:
        """fp32 bytes of the architecture (built on the meta device: no memory, no init)."""
        try:
            import open_clip

            source = _resolve(spec, settings)
            if source.register:
                _register_config(source.register)
            with torch.device("meta"), _quiet_open_clip(True):
                model = open_clip.create_model(
                    source.name, device="meta", pretrained_text=False, load_weights=False
                )
            return sum(p.numel() for p in model.parameters()) * 4
        except Exception:  # an estimate is optional: fall back to the checkpoint's size
            try:
                source = _resolve(spec, settings)
            except _Missing:
                return None
            return dir_bytes(source.checkpoint) if source.checkpoint else None

    @classmethod
    def tiny_spec(cls, directory: Path) -> ModelSpec:
        """A tiny random CLIP in open_clip's HF layout under ``directory/tiny-open_clip``."""
        import open_clip
        from safetensors.torch import save_file

        target = Path(directory) / "tiny-open_clip"
        target.mkdir(parents=True, exist_ok=True)
        base = open_clip.get_model_config("ViT-B-32")
        config = json.loads(json.dumps(TINY_CONFIG))
        for key in ("context_length", "vocab_size"):  # what the real tokenizer expects
            config["text_cfg"][key] = base["text_cfg"][key]
        payload = {"model_cfg": config, "preprocess_cfg": TINY_PREPROCESS}
        (target / CONFIG_NAME).write_text(json.dumps(payload, indent=1), encoding="utf-8")
        with torch.random.fork_rng(devices=[]), _quiet_open_clip(True):
            torch.manual_seed(TINY_SEED)
            model = open_clip.create_model(
                LOCAL_PREFIX + str(target), pretrained_text=False, load_weights=False
            )
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(target / WEIGHT_NAMES[0]))
        return ModelSpec(family=cls.family, model=str(target))

    # --- instance -------------------------------------------------------------------------

    def modules(self) -> list[Any]:
        return [self.model]

    @property
    def logit_scale(self) -> float:
        """The model's learned softmax temperature (exp of its logit_scale, at most 100)."""
        return float(self.model.logit_scale.detach().float().exp().clamp(max=100.0).max())

    @property
    def embed_dim(self) -> int:
        dim = getattr(self.model.visual, "output_dim", None)
        if dim is None:
            dim = int(self.text_features(["a photo."]).shape[1])
        return int(dim)

    def image_features(self, images: Sequence[Image]) -> torch.Tensor:
        """[N, D] L2-normalised float32 CPU embeddings; only uncached images are encoded, in
        one forward (per ``batch_size`` chunk)."""
        keys = [("clip_image", im.hash) for im in images]
        return self._rows(keys, list(images), self._encode_images)

    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        """[M, D] L2-normalised float32 CPU embeddings, cached per text."""
        keys = [("clip_text", t) for t in texts]
        return self._rows(keys, list(texts), self._encode_texts)

    def class_features(
        self,
        classes: Sequence[str],
        *,
        templates: Sequence[str] | None = None,
        descriptions: Mapping[str, Sequence[str]] | None = None,
    ) -> torch.Tensor:
        """[C, D]: each class's prompt ensemble (templates formatted with its name, plus any
        descriptions given for it), averaged and renormalised."""
        if not classes:
            raise ValueError("at least one class is needed")
        templates = DEFAULT_TEMPLATES if templates is None else tuple(templates)
        prompts: list[list[str]] = []
        for name in classes:
            own = [t.format(name) for t in templates]
            own += [d for d in (descriptions or {}).get(name, ()) if d and d.strip()]
            prompts.append(own or [name])
        unique = list(dict.fromkeys(p for own in prompts for p in own))
        feats = self.text_features(unique)
        row = {p: i for i, p in enumerate(unique)}
        means = torch.stack([feats[[row[p] for p in own]].mean(dim=0) for own in prompts])
        return F.normalize(means, dim=-1)

    def similarity(self, images: Sequence[Image], texts: Sequence[str]) -> np.ndarray:
        """[N, M] cosine similarities between images and texts."""
        if not images or not texts:
            return np.zeros((len(images), len(texts)), dtype=np.float32)
        return (self.image_features(images) @ self.text_features(texts).T).numpy()

    def similarity_to_classes(
        self,
        images: Sequence[Image],
        classes: Sequence[str],
        *,
        templates: Sequence[str] | None = None,
        descriptions: Mapping[str, Sequence[str]] | None = None,
    ) -> np.ndarray:
        """[N, C] cosine similarities between images and prompt-ensembled classes."""
        cls_feats = self.class_features(classes, templates=templates, descriptions=descriptions)
        if not images:
            return np.zeros((0, len(classes)), dtype=np.float32)
        return (self.image_features(images) @ cls_feats.T).numpy()

    def zero_shot(
        self,
        images: Sequence[Image],
        classes: Sequence[str],
        *,
        templates: Sequence[str] | None = None,
        descriptions: Mapping[str, Sequence[str]] | None = None,
    ) -> np.ndarray:
        """[N, C] class probabilities: softmax of the scaled cosine similarities."""
        sims = self.similarity_to_classes(
            images, classes, templates=templates, descriptions=descriptions
        )
        logits = sims.astype(np.float64) * self.logit_scale
        logits -= logits.max(axis=1, keepdims=True) if len(logits) else 0.0
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        return probs.astype(np.float32)

    # --- internals ------------------------------------------------------------------------

    def _rows(
        self,
        keys: list[tuple[str, str]],
        items: list[Any],
        encode: Callable[[list[Any]], torch.Tensor],
    ) -> torch.Tensor:
        """One row per key through the feature cache; the misses are encoded together."""
        todo: dict[Hashable, Any] = {}
        for key, item in zip(keys, items, strict=True):
            if key not in todo and not self._in_cache(key):
                todo[key] = item
        fresh: dict[Hashable, torch.Tensor] = {}
        if todo:
            vectors = encode(list(todo.values()))
            fresh = {k: vectors[i].clone() for i, k in enumerate(todo)}
        rows = []
        for key, item in zip(keys, items, strict=True):

            def compute(key: Hashable = key, item: Any = item) -> torch.Tensor:
                # evicted between the check and now (rare): encode this one alone
                return fresh[key] if key in fresh else encode([item])[0].clone()

            value, _ = self.cached(key, compute)
            rows.append(value)
        if not rows:
            return torch.zeros((0, self.embed_dim), dtype=torch.float32)
        return torch.stack(rows)

    def _in_cache(self, key: Hashable) -> bool:
        return self.cache is not None and (self.spec.key(), key) in self.cache

    def _count(self, counter: str, items: str, n: int) -> None:
        with self._stats_lock:
            self.stats[counter] += 1
            self.stats[items] += n

    def _encode_images(self, images: list[Image]) -> torch.Tensor:
        out = []
        for start in range(0, len(images), self.max_batch):
            chunk = images[start : start + self.max_batch]
            try:
                pixels = torch.stack([self.preprocess(im.pil) for im in chunk])
                with torch.inference_mode():
                    pixels = pixels.to(device=self.device, dtype=self.dtype)
                    feats = self.model.encode_image(pixels)
                    out.append(F.normalize(feats.float(), dim=-1).cpu())
            except Exception as exc:
                raise ModelError(f"CLIP image encoder failed: {type(exc).__name__}: {exc}") from exc
            self._count("image_encoder", "images_encoded", len(chunk))
        return torch.cat(out)

    def _encode_texts(self, texts: list[str]) -> torch.Tensor:
        out = []
        for start in range(0, len(texts), self.max_batch):
            chunk = texts[start : start + self.max_batch]
            try:
                tokens = self.tokenizer(chunk)
                with torch.inference_mode():
                    feats = self.model.encode_text(tokens.to(self.device))
                    out.append(F.normalize(feats.float(), dim=-1).cpu())
            except Exception as exc:
                raise ModelError(f"CLIP text encoder failed: {type(exc).__name__}: {exc}") from exc
            self._count("text_encoder", "texts_encoded", len(chunk))
        return torch.cat(out)


# --- resolving specs without the network -----------------------------------------------------


def _resolve(spec: ModelSpec, settings: ModelSettings) -> _Source:
    import open_clip

    model = (spec.model or "").strip()
    if not model:
        raise _Missing("set model to an open_clip architecture (e.g. ViT-B-32) or a directory")
    if model.startswith(HF_PREFIX):
        return _resolve_hub(model[len(HF_PREFIX) :], spec)
    if model.startswith(LOCAL_PREFIX):
        model = model[len(LOCAL_PREFIX) :]
    path = Path(os.path.expandvars(model)).expanduser()
    if path.is_dir():
        return _resolve_dir(path, spec, settings)
    if path.suffix == ".json":
        return _resolve_json(path, spec, settings)
    if open_clip.get_model_config(model) is None:
        known = ", ".join([m for m in open_clip.list_models() if m.startswith("ViT-")][:10])
        raise _Missing(
            f"'{model}' is not an open_clip architecture, directory or config file "
            f"(architectures include {known}...)"
        )
    weights = spec.weights
    if not weights:
        if spec.options.get("random_init") is True:
            return _Source(model, None, "random-init")
        raise _Missing(
            f"no weights for {model}: set weights to a pretrained tag "
            f"({', '.join(open_clip.list_pretrained_tags_by_model(model)[:6]) or 'none known'}) "
            "or a checkpoint file (options.random_init=true builds random weights, for "
            "benchmarks only)"
        )
    tag = open_clip.get_pretrained_cfg(model, weights)
    if tag:
        checkpoint = _find_tag_weights(tag, settings)
        if checkpoint is None:
            raise _Missing(_tag_hint(model, weights, tag))
        from open_clip.transform import PreprocessCfg

        fields = {f.name for f in dataclasses.fields(PreprocessCfg)}
        preprocess = {k: v for k, v in tag.items() if k in fields}
        return _Source(
            model,
            checkpoint,
            checkpoint,
            quick_gelu=bool(tag.get("quick_gelu", False)),
            preprocess=preprocess,
        )
    checkpoint = _find_file(weights, settings)
    if checkpoint is None:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(model)[:8]) or "none"
        raise _Missing(
            f"'{weights}' is neither an open_clip pretrained tag for {model} (known: {tags}) "
            "nor a checkpoint file"
        )
    return _Source(model, checkpoint, checkpoint)


def _resolve_dir(path: Path, spec: ModelSpec, settings: ModelSettings) -> _Source:
    if not (path / CONFIG_NAME).is_file():
        raise _Missing(f"{path} has no {CONFIG_NAME} (open_clip's Hugging Face layout)")
    name = LOCAL_PREFIX + str(path.resolve())
    if spec.weights:
        checkpoint = _find_file(spec.weights, settings)
        if checkpoint is None:
            raise _Missing(f"checkpoint {spec.weights} not found")
        return _Source(name, checkpoint, checkpoint)
    for weight in WEIGHT_NAMES:
        if (path / weight).is_file():
            return _Source(name, str(path / weight), str(path))
    if spec.options.get("random_init") is True:
        return _Source(name, None, f"{path} (random-init)")
    raise _Missing(f"{path} has no weights ({' or '.join(WEIGHT_NAMES)})")


def _resolve_json(path: Path, spec: ModelSpec, settings: ModelSettings) -> _Source:
    if not path.is_file():
        raise _Missing(f"model config {path} not found")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _Missing(f"unreadable model config {path}: {exc}") from None
    if "model_cfg" in config:
        if path.name != CONFIG_NAME:
            raise _Missing(f"{path} holds a 'model_cfg': name it {CONFIG_NAME}, give its folder")
        return _resolve_dir(path.parent, spec, settings)
    if not all(k in config for k in ("embed_dim", "vision_cfg", "text_cfg")):
        raise _Missing(f"{path} is not an open_clip model config (embed_dim, vision_cfg...)")
    checkpoint = None
    if spec.weights:
        checkpoint = _find_file(spec.weights, settings)
        if checkpoint is None:
            raise _Missing(f"checkpoint {spec.weights} not found")
    elif spec.options.get("random_init") is not True:
        raise _Missing(f"set weights to a checkpoint file for the config {path}")
    where = checkpoint or f"{path} (random-init)"
    return _Source(path.stem, checkpoint, where, register=str(path.resolve()))


def _resolve_hub(repo: str, spec: ModelSpec) -> _Source:
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(repo, CONFIG_NAME, revision=spec.revision)
    hint = (
        f"'{repo}' is not in the Hugging Face cache; download it where a hub is reachable "
        f"(huggingface-cli download {repo}) or give a local directory"
    )
    if not isinstance(config, str):
        raise _Missing(hint)
    for weight in WEIGHT_NAMES:
        found = try_to_load_from_cache(repo, weight, revision=spec.revision)
        if isinstance(found, str):
            return _Source(LOCAL_PREFIX + str(Path(config).parent), found, f"hf-cache:{repo}")
    raise _Missing(hint)


def _find_tag_weights(tag: Mapping[str, Any], settings: ModelSettings) -> str | None:
    """The cached file for a pretrained tag: HF cache first (as open_clip prefers), then
    open_clip's URL download folder and ours."""
    hub = tag.get("hf_hub", "")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        # open_clip's convention: "org/repo/" means the default file names, else "org/repo/file"
        repo, filename = os.path.split(hub)
        names = list(WEIGHT_NAMES) if not filename else [filename]
        if filename.endswith((".bin", ".pth")):
            names.insert(0, filename[:-4] + ".safetensors")
        for name in names:
            found = try_to_load_from_cache(repo, name)
            if isinstance(found, str):
                return found
    url = tag.get("url", "")
    if url:
        base = os.path.basename(url)
        for folder in (Path("~/.cache/clip").expanduser(), Path(settings.cache_dir) / "clip"):
            if (folder / base).is_file():
                return str(folder / base)
    return tag.get("file") if tag.get("file") and Path(tag["file"]).is_file() else None


def _tag_hint(model: str, weights: str, tag: Mapping[str, Any]) -> str:
    repo, filename = os.path.split(tag.get("hf_hub", ""))
    if repo:
        how = f"huggingface-cli download {repo} {filename}".rstrip()
    else:
        how = f"download {tag.get('url', '')} into ~/.cache/clip"
    return (
        f"open_clip weights {model}/{weights} are not on this machine; fetch them where a hub "
        f"is reachable ({how}) or set weights to a local checkpoint file"
    )


def _find_file(path: str, settings: ModelSettings) -> str | None:
    p = Path(os.path.expandvars(path)).expanduser()
    candidates = [p] if p.is_absolute() else [Path(settings.cache_dir) / p, p]
    for c in candidates:
        if c.is_file():
            return str(c)
    return None


_RANDOM_INIT_NOTES = (
    "No pretrained weights loaded",
    "Local config loaded, but no CLIP weights",
    "Potential checkpoint path",
)


class _DropRandomInitNotes(logging.Filter):
    """open_clip warns "initialized randomly" whenever create_model loads no checkpoint
    itself; wrong here, where the checkpoint is loaded right after (or on purpose absent)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_RANDOM_INIT_NOTES)


@contextlib.contextmanager
def _quiet_open_clip(active: bool) -> Iterator[None]:
    if not active:
        yield
        return
    root = logging.getLogger()  # open_clip logs through the root logger
    note_filter = _DropRandomInitNotes()
    root.addFilter(note_filter)
    try:
        yield
    finally:
        root.removeFilter(note_filter)


_REGISTERED: set[str] = set()
_REGISTER_LOCK = threading.Lock()


def _register_config(path: str) -> None:
    """Add a bare config file to open_clip's architecture registry (once; by file stem)."""
    import open_clip

    with _REGISTER_LOCK:
        if path in _REGISTERED:
            return
        if Path(path).stem in open_clip.list_models():
            log.warning("model config %s replaces open_clip's '%s'", path, Path(path).stem)
        open_clip.add_model_config(path)
        _REGISTERED.add(path)


def _build_loaded(name: str, checkpoint: str, kwargs: dict[str, Any]) -> torch.nn.Module | None:
    """Build the architecture on the meta device and take the checkpoint's tensors as its
    parameters: skips random initialisation (seconds for ViT-L on a CPU). Returns None when
    the model has state the checkpoint does not carry (the caller then builds it normally)."""
    import open_clip

    try:
        with torch.device("meta"):
            model = open_clip.create_model(name, device="meta", **kwargs)
        loader = model.load_state_dict
        model.load_state_dict = lambda state, strict=True: loader(state, strict=strict, assign=True)
        try:
            open_clip.load_checkpoint(model, checkpoint, strict=True)
        finally:
            del model.load_state_dict
    except Exception as exc:
        log.debug("meta-device load of %s failed (%s); building normally", name, exc)
        return None
    for module_name, module in model.named_modules():
        for buffer_name, buffer in list(module.named_buffers(recurse=False)):
            if not buffer.is_meta:
                continue
            n = buffer.shape[0] if buffer.ndim == 2 and buffer.shape[0] == buffer.shape[1] else 0
            if buffer_name != "attn_mask" or not n:
                log.debug("meta-device load of %s leaves %s.%s", name, module_name, buffer_name)
                return None
            causal = torch.full((n, n), float("-inf")).triu_(1)  # open_clip's causal mask
            setattr(module, buffer_name, causal)
    if any(p.is_meta for p in model.parameters()):
        return None
    return model
