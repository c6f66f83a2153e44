"""A tiny random-weight LLaVA that both transformers (project venv, 5.23) and vLLM (its own
venv, transformers 5.19) load, for testing the OpenAI-compatible VLM client against a real
vLLM server without any hub access.

The checkpoint is :meth:`tools.backends.vlm.LlavaBackend.tiny_spec`'s: a CLIP vision tower
(32 px images, 16 image tokens) and a 2-layer Llama with head_dim 32 (vLLM's CPU attention
rejects 16), a byte-level BPE tokenizer with ``<image>`` and a chat template, written with
``save_pretrained``.

vLLM must serve it with :data:`VLLM_ARGS`: vLLM 0.32's own LLaVA implementation imports its
Pixtral module, which imports transformers' Pixtral image processor, which needs
torchvision — and the vLLM venv has none (PyPI's torchvision 0.28.0 is a CUDA build that
links libc10_cuda.so and cannot load next to torch 2.13.0+cpu). vLLM's Transformers
modeling backend runs transformers' own LlavaForConditionalGeneration inside the engine
instead and needs no torchvision (the CLIP image processor falls back to PIL).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

BUILD_VERSION = "1"
COMPLETE_MARKER = ".tiny-llava-complete"
SERVED_NAME = "tiny-llava"
VLLM_ARGS = ("--model-impl", "transformers")


def _is_complete(directory: Path) -> bool:
    marker = directory / COMPLETE_MARKER
    return marker.is_file() and marker.read_text().strip() == BUILD_VERSION


def build_tiny_llava(directory: str | os.PathLike[str]) -> Path:
    """Build (or reuse) the tiny LLaVA checkpoint in ``directory`` and return it.

    Written to a sibling temp dir and renamed into place, so a crashed or concurrent build
    never leaves a half-written model behind.
    """
    from tools.backends.vlm import LlavaBackend

    directory = Path(directory)
    if _is_complete(directory):
        return directory
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        LlavaBackend.tiny_spec(tmp)
        (tmp / COMPLETE_MARKER).write_text(BUILD_VERSION + "\n")
        if directory.exists():
            if _is_complete(directory):
                return directory
            shutil.rmtree(directory)
        try:
            os.replace(tmp, directory)
        except OSError:
            if not _is_complete(directory):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return directory
