"""Model backends, one module per family, and the plain dict registry of them. Where finding
the weights is work of its own it is a separate first stage (``clip_weights`` for CLIP,
``gguf`` for llama.cpp) that the model module loads from.

Families are imported lazily (``BACKENDS`` maps a family to ``module:Class``), so a tool
that uses CLIP never pays for importing diffusers. Plug-ins add families to the dict, as a
``module:Class`` string or the class itself.
"""

from __future__ import annotations

import importlib

from .base import Backend, Located, Placement

BACKENDS: dict[str, str | type[Backend]] = {
    "open_clip": "tools.backends.clip:OpenClipBackend",
    "sam": "tools.backends.sam:SamBackend",
    "grounding_dino": "tools.backends.detection:GroundingDinoBackend",
    "owlvit": "tools.backends.detection:OwlVitBackend",
    "owlv2": "tools.backends.detection:Owlv2Backend",
    "llava": "tools.backends.vlm:LlavaBackend",
    "molmo2": "tools.backends.vlm:Molmo2Backend",
    "openai_vlm": "tools.backends.vlm_server:OpenAIVisionBackend",
    "sd_inpaint": "tools.backends.inpaint:DiffusersInpaintBackend",
    "cv2_inpaint": "tools.backends.inpaint:OpenCVInpaintBackend",
    "depth_anything": "tools.backends.depth:DepthBackend",
    "dpt": "tools.backends.depth:DptDepthBackend",
    "mtcnn": "tools.backends.faces:MtcnnBackend",
    "haar": "tools.backends.faces:HaarBackend",
    "rapidocr": "tools.backends.ocr:RapidOcrBackend",
    "sentence_embeddings": "tools.backends.embeddings:SentenceEmbeddingBackend",
    "llama_cpp": "tools.backends.llm_local:LlamaCppBackend",
    "openai": "tools.backends.llm_openai:OpenAIBackend",
}


def backend_class(family: str) -> type[Backend]:
    """The backend class for ``family`` (imports its module on first use)."""
    target = BACKENDS.get(family)
    if target is None:
        raise KeyError(f"unknown model family '{family}' (known: {', '.join(sorted(BACKENDS))})")
    if isinstance(target, type):
        return target
    module, _, name = target.partition(":")
    cls = getattr(importlib.import_module(module), name)
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise TypeError(f"{target} is not a Backend")
    return cls


__all__ = ["BACKENDS", "Backend", "Located", "Placement", "backend_class"]
