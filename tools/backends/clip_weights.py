"""Finding open_clip weights on this machine, without the network: the first stage of the
CLIP backend (:mod:`tools.backends.clip` builds and runs the model from what this finds).

A spec resolves to a :class:`ClipSource`: the open_clip model name to build, the checkpoint
file (None for random weights), where it was found, and what a pretrained tag implies
(QuickGELU, preprocessing). ``spec.model`` is an open_clip config name ("ViT-B-32"), a local
directory in open_clip's Hugging Face layout (``open_clip_config.json`` plus
``open_clip_model.safetensors``), an ``hf-hub:org/repo`` id found in the local HF cache, or a
JSON file holding a bare model config. ``spec.weights`` is an open_clip pretrained tag
("openai", "laion2b_s34b_b79k"), resolved to its file in the HF cache or open_clip's download
folders, or a checkpoint path. What is not here raises :class:`WeightsMissing` with a hint
saying how to get it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..settings import ModelSettings, ModelSpec

HF_PREFIX = "hf-hub:"
LOCAL_PREFIX = "local-dir:"
CONFIG_NAME = "open_clip_config.json"
WEIGHT_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


@dataclass(frozen=True)
class ClipSource:
    """How to build a spec's model: the open_clip model name, the checkpoint (None for random
    weights), and overrides a pretrained tag implies."""

    name: str
    checkpoint: str | None
    where: str
    quick_gelu: bool = False
    preprocess: dict[str, Any] = field(default_factory=dict)
    register: str | None = None  # a bare config JSON file to add to open_clip's registry


class WeightsMissing(Exception):
    """A spec's weights or config are not on this machine (the message is the hint)."""


def resolve(spec: ModelSpec, settings: ModelSettings) -> ClipSource:
    import open_clip

    model = (spec.model or "").strip()
    if not model:
        raise WeightsMissing(
            "set model to an open_clip architecture (e.g. ViT-B-32) or a directory"
        )
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
        raise WeightsMissing(
            f"'{model}' is not an open_clip architecture, directory or config file "
            f"(architectures include {known}...)"
        )
    weights = spec.weights
    if not weights:
        if spec.options.get("random_init") is True:
            return ClipSource(model, None, "random-init")
        raise WeightsMissing(
            f"no weights for {model}: set weights to a pretrained tag "
            f"({', '.join(open_clip.list_pretrained_tags_by_model(model)[:6]) or 'none known'}) "
            "or a checkpoint file (options.random_init=true builds random weights, for "
            "benchmarks only)"
        )
    tag = open_clip.get_pretrained_cfg(model, weights)
    if tag:
        checkpoint = _find_tag_weights(tag, settings)
        if checkpoint is None:
            raise WeightsMissing(_tag_hint(model, weights, tag))
        from open_clip.transform import PreprocessCfg

        fields = {f.name for f in dataclasses.fields(PreprocessCfg)}
        preprocess = {k: v for k, v in tag.items() if k in fields}
        return ClipSource(
            model,
            checkpoint,
            checkpoint,
            quick_gelu=bool(tag.get("quick_gelu", False)),
            preprocess=preprocess,
        )
    checkpoint = _find_file(weights, settings)
    if checkpoint is None:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(model)[:8]) or "none"
        raise WeightsMissing(
            f"'{weights}' is neither an open_clip pretrained tag for {model} (known: {tags}) "
            "nor a checkpoint file"
        )
    return ClipSource(model, checkpoint, checkpoint)


def _resolve_dir(path: Path, spec: ModelSpec, settings: ModelSettings) -> ClipSource:
    if not (path / CONFIG_NAME).is_file():
        raise WeightsMissing(f"{path} has no {CONFIG_NAME} (open_clip's Hugging Face layout)")
    name = LOCAL_PREFIX + str(path.resolve())
    if spec.weights:
        checkpoint = _find_file(spec.weights, settings)
        if checkpoint is None:
            raise WeightsMissing(f"checkpoint {spec.weights} not found")
        return ClipSource(name, checkpoint, checkpoint)
    for weight in WEIGHT_NAMES:
        if (path / weight).is_file():
            return ClipSource(name, str(path / weight), str(path))
    if spec.options.get("random_init") is True:
        return ClipSource(name, None, f"{path} (random-init)")
    raise WeightsMissing(f"{path} has no weights ({' or '.join(WEIGHT_NAMES)})")


def _resolve_json(path: Path, spec: ModelSpec, settings: ModelSettings) -> ClipSource:
    if not path.is_file():
        raise WeightsMissing(f"model config {path} not found")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WeightsMissing(f"unreadable model config {path}: {exc}") from None
    if "model_cfg" in config:
        if path.name != CONFIG_NAME:
            raise WeightsMissing(
                f"{path} holds a 'model_cfg': name it {CONFIG_NAME}, give its folder"
            )
        return _resolve_dir(path.parent, spec, settings)
    if not all(k in config for k in ("embed_dim", "vision_cfg", "text_cfg")):
        raise WeightsMissing(f"{path} is not an open_clip model config (embed_dim, vision_cfg...)")
    checkpoint = None
    if spec.weights:
        checkpoint = _find_file(spec.weights, settings)
        if checkpoint is None:
            raise WeightsMissing(f"checkpoint {spec.weights} not found")
    elif spec.options.get("random_init") is not True:
        raise WeightsMissing(f"set weights to a checkpoint file for the config {path}")
    where = checkpoint or f"{path} (random-init)"
    return ClipSource(path.stem, checkpoint, where, register=str(path.resolve()))


def _resolve_hub(repo: str, spec: ModelSpec) -> ClipSource:
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(repo, CONFIG_NAME, revision=spec.revision)
    hint = (
        f"'{repo}' is not in the Hugging Face cache; download it where a hub is reachable "
        f"(huggingface-cli download {repo}) or give a local directory"
    )
    if not isinstance(config, str):
        raise WeightsMissing(hint)
    for weight in WEIGHT_NAMES:
        found = try_to_load_from_cache(repo, weight, revision=spec.revision)
        if isinstance(found, str):
            return ClipSource(LOCAL_PREFIX + str(Path(config).parent), found, f"hf-cache:{repo}")
    raise WeightsMissing(hint)


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


__all__ = [
    "CONFIG_NAME",
    "HF_PREFIX",
    "LOCAL_PREFIX",
    "WEIGHT_NAMES",
    "ClipSource",
    "WeightsMissing",
    "resolve",
]
