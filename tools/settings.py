"""Which model serves each role, on which devices, within which memory budget.

A *role* is what a tool needs ("detector", "clip", "vlm", "sam", "face", "ocr", "inpaint",
"pointer", "embeddings", "llm"); a :class:`ModelSpec` names one concrete model for it. Each
role lists candidates in preference order; the first whose weights are present locally
serves it (see :mod:`tools.profiles`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


def default_cache_dir() -> Path:
    """``$VISCHAIN_CACHE``, else ``$XDG_CACHE_HOME/vischain``, else ``~/.cache/vischain``."""
    if os.environ.get("VISCHAIN_CACHE"):
        return Path(os.environ["VISCHAIN_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "vischain"


class ModelSpec(BaseModel):
    """One concrete model: the backend ``family`` and what to load.

    ``model`` is a Hugging Face id, a local directory or file, or a family-specific name
    (open_clip architecture, SAM variant); ``weights`` an optional checkpoint path or
    pretrained tag; ``options`` family-specific settings (thresholds, templates...).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    family: str
    model: str = ""
    weights: str | None = None
    revision: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    options: dict[str, Any] = Field(default_factory=dict)

    def key(self) -> str:
        """Identity in the pool: two specs with the same key share one loaded model."""
        opts = ",".join(f"{k}={self.options[k]!r}" for k in sorted(self.options))
        parts = (self.family, self.model, self.weights or "", self.revision or "", self.dtype, opts)
        return ":".join(parts)

    def label(self) -> str:
        return f"{self.family}:{self.model or self.weights or 'default'}"


class ServeSettings(BaseModel):
    """Where the models run when they are served by Ray Serve (see :mod:`tools.remote`):
    ``address`` is ``auto`` (the Ray cluster on this machine), ``ray://host:10001`` or a
    GCS address ``host:6379``; ``app`` the Serve application ``vischain serve`` started."""

    model_config = ConfigDict(extra="forbid")

    address: str = "auto"
    app: str = "vischain"
    timeout_s: float = Field(600.0, gt=0)  # the longest one model call may take
    image_cache_mb: int = Field(256, ge=0)  # images already in the object store, per process
    # what `vischain serve` deploys each role with
    replicas: int = Field(1, ge=1)
    num_cpus: float = Field(0.5, ge=0)
    health_check_s: float = Field(10.0, gt=0)
    multiplex: dict[str, list[ModelSpec]] = Field(default_factory=dict)  # more checkpoints
    # per role {max_batch, max_wait_ms} for the replicas' @serve.batch (default: the largest
    # the role's tools are configured with)
    batch: dict[str, dict[str, float]] = Field(default_factory=dict)


class ModelSettings(BaseModel):
    """The model layer's configuration (part of the orchestrator's config)."""

    model_config = ConfigDict(extra="forbid")

    profile: str = "default"
    roles: dict[str, list[ModelSpec]] = Field(default_factory=dict)
    llm_server: ModelSpec | None = None  # an OpenAI-compatible server (vLLM) for the LLM role
    vlm_server: ModelSpec | None = None  # and one serving a vision-language model
    devices: list[str] | str = "auto"
    memory_budget_gb: dict[str, float] = Field(default_factory=dict)
    memory_fraction: float = 0.9
    cache_mb: int = 1024
    cache_dir: Path = Field(default_factory=default_cache_dir)
    progress: bool = True
    # each model's forwards on a thread it owns, so per-thread GPU state stays warm; None:
    # for models on an accelerator only (on the CPU it measured no gain and cost throughput)
    model_threads: bool | None = None
    cudnn_attention: bool = False  # cuDNN SDPA plans per thread and shape: off (GPU.md)
    prefetch: bool = True  # load a checked program's models before its steps ask for them
    serve: ServeSettings | None = None  # set: roles are Ray Serve deployments, not local models

    @field_validator("roles", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: v if isinstance(v, list) else [v] for k, v in value.items()}
        return value

    def candidates(self, role: str) -> list[ModelSpec]:
        return list(self.roles.get(role, []))
