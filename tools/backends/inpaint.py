"""Inpainting: fill a masked region of an image, with Stable Diffusion or with OpenCV.

Both backends give the same contract: ``inpaint(image, mask, prompt, seed=...)`` returns an
image of the input's size in which only pixels inside the (slightly dilated) mask differ;
the model's output is composited back over the original, so resizing for the model never
blurs the rest of the picture. Diffusers is an optional extra (``vischain[inpaint]``) and is
imported only when a diffusion model is located or loaded.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import threading
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import torch
from PIL import Image as PILImage

from ..convert import to_mask
from ..errors import ModelError
from ..settings import ModelSettings, ModelSpec
from ..types import Image, Mask
from .base import Backend, Located, Placement, dir_bytes, hf_locate
from .threads import on_model_thread

log = logging.getLogger("vischain.models")

INSTALL_HINT = "diffusers is not installed: pip install vischain[inpaint]"
TINY_SEED = 20240613


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    if radius <= 0:
        return mask
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


class _Inpainter(Backend):
    """The shared contract: mask handling, dilation and compositing."""

    kind: ClassVar[str] = ""

    @on_model_thread
    def inpaint(self, image: Image, mask: Mask, prompt: str, *, seed: int | None = 0) -> Image:
        """``image`` with the masked region filled (guided by ``prompt`` where the model
        takes one); same size, and unchanged outside the dilated mask."""
        region = to_mask(mask, image.size).array
        if not region.any():
            return image
        radius = self.spec.options.get("dilate")
        if radius is None:  # about 1% of the shorter side: covers the mask's soft edge
            radius = max(2, round(min(image.size) / 100))
        region = _dilate(region, int(radius))
        filled = self._fill(image, region, prompt or "", seed)
        if filled.shape != image.array.shape:
            raise ModelError(f"{self.kind} inpainting returned shape {filled.shape}")
        out = np.where(region[..., None], filled, image.array)
        return Image(PILImage.fromarray(out), name=image.name, origin=image.origin)

    def _fill(self, image: Image, region: np.ndarray, prompt: str, seed: int | None) -> np.ndarray:
        """H×W×3 uint8 at the image's size; only pixels inside ``region`` are used."""
        raise NotImplementedError


class OpenCVInpaintBackend(_Inpainter):
    """Classical inpainting (cv2.inpaint: Telea's fast marching or Navier-Stokes). Ignores the
    prompt; works on a copy downscaled to ``options["max_side"]`` (default 1024) when larger."""

    family: ClassVar[str] = "cv2_inpaint"
    kind: ClassVar[str] = "classical"
    offline_capable: ClassVar[bool] = True
    METHODS: ClassVar[dict[str, int]] = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}

    @classmethod
    def locate(cls, spec: ModelSpec, settings: ModelSettings) -> Located:
        method = (spec.model or "telea").lower()
        if method not in cls.METHODS:
            return Located(False, hint=f"unknown OpenCV inpainting method '{spec.model}'")
        return Located(True, f"opencv:{method}")

    @classmethod
    def load(cls, spec: ModelSpec, placement: Placement, settings: ModelSettings) -> Backend:
        if (spec.model or "telea").lower() not in cls.METHODS:
            raise ModelError(f"unknown OpenCV inpainting method '{spec.model}' (telea or ns)")
        return cls(spec, placement)

    @classmethod
    def estimate_bytes(cls, spec: ModelSpec, settings: ModelSettings) -> int | None:
        return 0

    def _fill(self, image: Image, region: np.ndarray, prompt: str, seed: int | None) -> np.ndarray:
        flags = self.METHODS[(self.spec.model or "telea").lower()]
        radius = float(self.spec.options.get("radius", 5))
        max_side = int(self.spec.options.get("max_side", 1024))
        pixels, mask = image.array, region.astype(np.uint8) * 255
        scale = min(1.0, max_side / max(image.size))
        if scale < 1.0:
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            pixels = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
            mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
            mask = _dilate(mask > 0, 1).astype(np.uint8) * 255  # keep thin masks covered
        filled = cv2.inpaint(np.ascontiguousarray(pixels), mask, radius, flags)
        self.stats["inpaint"] += 1
        if scale < 1.0:
            filled = cv2.resize(filled, image.size, interpolation=cv2.INTER_LINEAR)
        return filled


class DiffusersInpaintBackend(_Inpainter):
    """Stable Diffusion inpainting through diffusers' AutoPipelineForInpainting.

    ``spec.model`` is a Hugging Face id (found in the local cache) or a local pipeline
    directory. Options: ``steps`` (default 30), ``guidance`` (7.5), ``strength`` (1.0),
    ``resolution`` (the working size of the longer side, 512), ``negative_prompt``,
    ``safety_checker`` (false drops it), ``variant`` (e.g. "fp16"), ``dilate``.
    """

    family: ClassVar[str] = "sd_inpaint"
    kind: ClassVar[str] = "diffusion"

    def __init__(self, spec: ModelSpec, placement: Placement, pipeline: Any) -> None:
        super().__init__(spec, placement)
        self.pipeline = pipeline
        self._lock = threading.Lock()  # pipelines keep per-call state (scheduler timesteps)

    @classmethod
    def from_objects(
        cls, pipeline: Any, *, spec: ModelSpec | None = None, placement: Placement | None = None
    ) -> DiffusersInpaintBackend:
        """Wrap an inpainting pipeline already in memory."""
        if placement is None:
            placement = Placement(str(pipeline.device), pipeline.unet.dtype)
        else:
            pipeline.to(placement.device, placement.dtype)
        pipeline.set_progress_bar_config(disable=True)
        spec = spec or ModelSpec(family=cls.family, model=f"in-memory@{id(pipeline):x}")
        return cls(spec, placement, pipeline)

    @classmethod
    def locate(cls, spec: ModelSpec, settings: ModelSettings) -> Located:
        if importlib.util.find_spec("diffusers") is None:
            return Located(False, hint=INSTALL_HINT)
        if not spec.model:
            return Located(False, hint="set model to a Stable Diffusion inpainting id or folder")
        return hf_locate(
            spec.model, revision=spec.revision, files=("model_index.json", "unet/config.json")
        )

    @classmethod
    def load(cls, spec: ModelSpec, placement: Placement, settings: ModelSettings) -> Backend:
        try:
            from diffusers import AutoPipelineForInpainting
        except ImportError as exc:
            raise ModelError(INSTALL_HINT) from exc
        extra: dict[str, Any] = {}
        if spec.options.get("safety_checker") is False:
            extra.update(safety_checker=None, requires_safety_checker=False)
        if spec.options.get("variant"):
            extra["variant"] = spec.options["variant"]
        source = spec.model
        if Path(source).expanduser().is_dir():
            source = str(Path(source).expanduser())
        pipeline = AutoPipelineForInpainting.from_pretrained(
            source,
            dtype=placement.dtype,
            revision=spec.revision,
            local_files_only=True,
            **extra,
        )
        pipeline.to(placement.device)
        pipeline.set_progress_bar_config(disable=True)
        return cls(spec, placement, pipeline)

    @classmethod
    def estimate_bytes(cls, spec: ModelSpec, settings: ModelSettings) -> int | None:
        path = Path(spec.model).expanduser()
        if not path.is_dir():
            try:
                from huggingface_hub import try_to_load_from_cache
            except ImportError:
                return None
            index = try_to_load_from_cache(spec.model, "model_index.json", revision=spec.revision)
            if not isinstance(index, str):
                return None
            path = Path(index).parent
        folders = [path / p for p in ("unet", "vae", "text_encoder")]
        return sum(dir_bytes(f, (".safetensors",)) or dir_bytes(f) for f in folders) or None

    @classmethod
    def tiny_spec(cls, directory: Path) -> ModelSpec:
        """A tiny random SD inpainting pipeline (9-channel UNet, VAE, CLIP text encoder with
        a small BPE vocabulary, DDIM scheduler), saved with save_pretrained."""
        from diffusers import (
            AutoencoderKL,
            DDIMScheduler,
            StableDiffusionInpaintPipeline,
            UNet2DConditionModel,
        )
        from transformers import CLIPTextConfig, CLIPTextModel

        target = Path(directory) / "tiny-sd-inpaint"
        tokenizer = _tiny_tokenizer(target / "tokenizer")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(TINY_SEED)
            unet = UNet2DConditionModel(
                sample_size=16,
                in_channels=9,  # noisy latents 4 + masked-image latents 4 + mask 1
                out_channels=4,
                layers_per_block=1,
                block_out_channels=(16, 32),
                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                cross_attention_dim=16,
                attention_head_dim=4,
                norm_num_groups=8,
            )
            vae = AutoencoderKL(
                in_channels=3,
                out_channels=3,
                down_block_types=("DownEncoderBlock2D",) * 2,
                up_block_types=("UpDecoderBlock2D",) * 2,
                block_out_channels=(16, 32),
                latent_channels=4,
                norm_num_groups=8,
                sample_size=32,
            )
            text_encoder = CLIPTextModel(
                CLIPTextConfig(
                    vocab_size=len(tokenizer),
                    hidden_size=16,
                    intermediate_size=32,
                    num_attention_heads=2,
                    num_hidden_layers=2,
                    max_position_embeddings=tokenizer.model_max_length,
                    bos_token_id=tokenizer.bos_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                    pad_token_id=tokenizer.pad_token_id,
                )
            )
        scheduler = DDIMScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            clip_sample=False,
            set_alpha_to_one=False,
            steps_offset=1,
        )
        pipeline = StableDiffusionInpaintPipeline(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        pipeline.save_pretrained(str(target))
        return ModelSpec(
            family=cls.family,
            model=str(target),
            options={"steps": 2, "guidance": 7.5, "resolution": 64},
        )

    def modules(self) -> list[Any]:
        return [m for m in self.pipeline.components.values() if isinstance(m, torch.nn.Module)]

    def _fill(self, image: Image, region: np.ndarray, prompt: str, seed: int | None) -> np.ndarray:
        opts = self.spec.options
        width, height = _working_size(
            image.size, int(opts.get("resolution", 512)), max(8, self.pipeline.vae_scale_factor)
        )
        picture = image.pil.resize((width, height), PILImage.Resampling.BICUBIC)
        mask = PILImage.fromarray(region.astype(np.uint8) * 255).resize(
            (width, height), PILImage.Resampling.NEAREST
        )
        generator = torch.Generator("cpu").manual_seed(seed) if seed is not None else None
        try:
            with self._lock, torch.inference_mode():
                result = self.pipeline(
                    prompt=prompt,
                    negative_prompt=opts.get("negative_prompt"),
                    image=picture,
                    mask_image=mask,
                    height=height,
                    width=width,
                    num_inference_steps=int(opts.get("steps", 30)),
                    guidance_scale=float(opts.get("guidance", 7.5)),
                    strength=float(opts.get("strength", 1.0)),
                    generator=generator,
                    output_type="np",
                )
        except Exception as exc:
            raise ModelError(f"inpainting failed: {type(exc).__name__}: {exc}") from exc
        self.stats["inpaint"] += 1
        if any(getattr(result, "nsfw_content_detected", None) or []):
            log.warning("the safety checker blanked an inpainting result")
        out = np.clip(np.asarray(result.images[0], dtype=np.float32) * 255.0 + 0.5, 0, 255)
        out_pil = PILImage.fromarray(out.astype(np.uint8))
        return np.asarray(out_pil.resize(image.size, PILImage.Resampling.BICUBIC))


def _working_size(size: tuple[int, int], resolution: int, multiple: int) -> tuple[int, int]:
    """The image's size scaled so its longer side is ``resolution``, in multiples of
    ``multiple`` (SD needs sides divisible by 8)."""
    scale = resolution / max(size)
    w, h = (max(multiple, round(side * scale / multiple) * multiple) for side in size)
    return w, h


def _tiny_tokenizer(folder: Path) -> Any:
    """A CLIP BPE tokenizer over a small vocabulary (letters, digits, a few merges), written
    as vocab.json/merges.txt like Stable Diffusion's, and loaded from those files."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    symbols = list("abcdefghijklmnopqrstuvwxyz0123456789.,'!?-")
    vocab: dict[str, int] = {}
    for s in [*symbols, *(f"{s}</w>" for s in symbols)]:
        vocab[s] = len(vocab)
    merges = [("t", "h"), ("th", "e</w>"), ("a", "n"), ("o", "n</w>"), ("e", "r</w>")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    lines = ["#version: 0.2", *(f"{a} {b}" for a, b in merges)]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 16,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
