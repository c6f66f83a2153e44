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
from pathlib import Path

from tests.support.build_once import build_once

BUILD_VERSION = "1"
COMPLETE_MARKER = ".tiny-llava-complete"
SERVED_NAME = "tiny-llava"
VLLM_ARGS = ("--model-impl", "transformers")


def build_tiny_llava(directory: str | os.PathLike[str]) -> Path:
    """Build (or reuse) the tiny LLaVA checkpoint in ``directory`` (atomically: see
    :func:`tests.support.build_once.build_once`) and return it."""
    from tools.backends.vlm import LlavaBackend

    return build_once(
        directory, LlavaBackend.tiny_spec, marker=COMPLETE_MARKER, version=BUILD_VERSION
    )
