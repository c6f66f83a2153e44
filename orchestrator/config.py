"""Configuration: a YAML or TOML file plus ``VISCHAIN_*`` environment variables.

Precedence: arguments given in code, then environment (``VISCHAIN_PLANNER__REPAIR_ROUNDS=3``,
nested with ``__``), then the file named by ``Config.load(path)`` or ``$VISCHAIN_CONFIG``,
then defaults. Example file::

    models:
      profile: default          # default | full | offline
      devices: auto             # or [cuda:0, cuda:1]
      memory_budget_gb: {cuda:0: 20}
      roles:
        clip: {family: open_clip, model: ViT-L-14, weights: openai}
      serve: {address: auto, app: vischain}   # roles served by Ray Serve (vischain serve)
    llm_url: http://gpu-host:8000/v1    # the planner's vLLM server
    serve: {port: 8000, auth_token: "..."}  # the HTTP service
    planner: {repair_rounds: 2, examples: 6}
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

from sandbox import Limits
from tools.convert import ImageLimits
from tools.settings import ModelSettings, ModelSpec

from .forms import FORMS

CONFIG_ENV = "VISCHAIN_CONFIG"
_FILE: ContextVar[Path | None] = ContextVar("vischain_config_file", default=None)


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names where it came from, each
    setting at fault and why."""


class LimitsConfig(BaseModel):
    """Time and size limits for programs (all enforced)."""

    model_config = ConfigDict(extra="forbid")

    step_seconds: float | None = Field(300.0, gt=0)  # None: no limit
    program_seconds: float | None = Field(1800.0, gt=0)
    eval_seconds: float = Field(10.0, gt=0)
    python_seconds: float = Field(600.0, gt=0)
    max_program_chars: int = Field(200_000, ge=1)
    max_steps: int = Field(20_000, ge=1)
    max_ops: int = Field(2_000_000, ge=1)
    max_tool_calls: int = Field(2_000, ge=1)
    image_mb: float = Field(256.0, gt=0)  # input image file or bytes
    image_pixels: int = Field(64_000_000, ge=1)
    image_side: int = Field(16_384, ge=1)  # longer side, pixels
    image_aspect: float = Field(64.0, ge=1)  # longer side / shorter side

    def images(self) -> ImageLimits:
        """What an input image may be (checked before it is decoded)."""
        return ImageLimits(
            max_bytes=int(self.image_mb * 2**20),
            max_pixels=self.image_pixels,
            max_side=self.image_side,
            max_aspect=self.image_aspect,
        )

    def sandbox(self) -> Limits:
        return Limits(
            time_limit=self.eval_seconds,
            max_program_chars=self.max_program_chars,
            max_steps=self.max_steps,
            max_ops=self.max_ops,
        )


class ExecutorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workers: int = Field(4, ge=1)
    max_stuck: int | None = Field(None, ge=0)  # abandoned calls' threads (None: = workers)
    max_parked: int = Field(64, ge=0)  # workers lent while others wait in a batch queue
    max_batch: int = Field(32, ge=1)
    memo_mb: int = Field(512, ge=0)  # remembered tool results (0: off)
    gc_freeze: bool = True  # keep the import-time heap out of full GC passes (orchestrator.heap)
    gc_pause: bool = True  # no cyclic GC passes while the scheduler runs steps (orchestrator.heap)


class PlannerConfig(BaseModel):
    """How programs are written: form, in-context examples, repair rounds, voting."""

    model_config = ConfigDict(extra="forbid")

    form: str = "lines"  # a registered program form (lines, python, ...) or auto
    examples: int = Field(6, ge=0)
    example_token_budget: int = 1800
    repair_rounds: int = Field(2, ge=0)
    max_tokens: int = 400
    temperature: float = 0.0
    repair_temperature: float = 0.4
    voting: int = Field(1, ge=1)
    voting_temperature: float = 0.7
    grammar: bool = True
    max_steps: int = Field(16, ge=1)  # longest program the grammar allows
    fallback: str | None = None  # e.g. "ANSWER0=Vqa(image=IMAGE, question='{instruction}')"

    @field_validator("form")
    @classmethod
    def _known_form(cls, value: str) -> str:
        if value != "auto" and value not in FORMS:
            raise ValueError(
                f"unknown program form '{value}' (use auto or one of: {', '.join(FORMS)})"
            )
        return value


CheckName = Literal[
    "runtime-error",
    "empty-detection",
    "answer-kind",
    "tool-fit",
    "low-confidence",
    "unsure-answer",
]  # orchestrator.checks.Check's values


class AgentChecks(BaseModel):
    """Which checks send a round's result back to the planner (see orchestrator.checks)."""

    model_config = ConfigDict(extra="forbid")

    runtime_error: bool = True
    empty_detection: bool = True
    # an empty detection that every user only counts (or tests for existence), on a number
    # or yes/no question, is a finding too (by default 0 / "no" is the answer)
    empty_counts: bool = False
    answer_kind: bool = True
    # a detection the result depends on that finds nothing the instruction names (FaceDet
    # for "how many wheels?"), before the program runs and after (orchestrator.tool_fit)
    tool_fit: bool = True
    # what a detector that takes no query finds (tool → words; []: every region, so it
    # names nothing by itself); a tool not listed is not judged
    fit_subjects: dict[str, list[str]] = Field(
        default_factory=lambda: {"FaceDet": ["face", "person"], "Seg": []}
    )
    # words that name the same thing, when matching a query (or a subject) to the words
    # of an instruction: "her", "woman", "face", "person" are one
    fit_synonyms: list[list[str]] = Field(
        default_factory=lambda: [
            "person people man men woman women boy girl child children kid baby lady guy "
            "human someone somebody he she her him his they them face head player rider "
            "driver astronaut photographer character crowd worker actor actress member "
            "president celebrity star singer musician band team family friend couple hero "
            "superhero avenger".split()
        ]
    )
    unsure_answer: bool = True
    # a tool's best score under its threshold is a finding (tool name → threshold)
    low_confidence: dict[str, float] = Field(
        default_factory=lambda: {"Loc": 0.1, "Select": 0.2, "Classify": 0.2, "FaceDet": 0.5}
    )
    unsure_tools: list[str] = Field(default_factory=lambda: ["Vqa", "LlmQuery"])
    unsure_phrases: list[str] = Field(
        default_factory=lambda: [
            "unknown", "unclear", "not sure", "cannot tell", "can't tell", "cannot determine",
            "can't determine", "i don't know", "not visible", "impossible to tell", "n/a",
        ]
    )  # fmt: skip


class AgentConfig(BaseModel):
    """The agent loop behind ``run()``: after each round the result is checked; when a
    check fires the planner sees an observation and decides ANSWER, CONTINUE or REWRITE.
    ``agent: false`` keeps the one-shot behaviour (plan, check/repair, execute)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    max_rounds: int = Field(3, ge=1)
    max_tool_calls: int = Field(200, ge=1)  # over all rounds
    max_seconds: float = Field(600.0, gt=0)  # over all rounds, planning included
    # "issues": ask the planner only when a check fired; "always": after every round
    decide: Literal["issues", "always"] = "issues"
    # how the expected answer kind is decided: from the wording, falling back to the LLM
    # ("auto"), always by the LLM ("planner"), or by wording only ("rules")
    answer_kind: Literal["auto", "planner", "rules"] = "auto"
    observation_tokens: int = Field(600, ge=50)
    # the decision's token cap: a keyword, or ANSWER and a name (the program written after
    # CONTINUE/REWRITE has the planner's max_tokens)
    decision_max_tokens: int = Field(16, ge=2)
    # findings that, alone on a computed result of the kind asked for, do not make a run
    # that reaches its limit end in an error: the best such result is returned and these
    # findings are its warnings (RunResult.warnings, the trace's meta). Any other finding
    # (runtime-error, answer-kind, empty-detection) still ends in the typed agent-limit error;
    # [] makes every finding at the limit an error
    warn_at_limit: list[CheckName] = Field(
        default_factory=lambda: ["low-confidence", "unsure-answer"]
    )
    # findings that do start another round (a small planner must not accept them), but
    # that alone on a computed result of the kind asked for at the limit are its warnings,
    # not an error: the program answered, with a detection that may not fit the instruction
    warn_after_retry: list[CheckName] = Field(default_factory=lambda: ["tool-fit"])
    # when a value of the kind asked for was computed and offered (ANSWER NAME) and the
    # planner did not return it, the loop returns it itself (with a warning saying so) once
    # the next round still has no result of that kind, or the loop would end in an error
    take_offered: bool = True
    # whether warn_at_limit findings on a computed result of the kind asked for start another
    # round (false: the result is accepted at once, the findings as its warnings)
    retry_warnings: bool = False
    # an ANSWER-kind check on a program before it runs (agent rounds): a program whose result
    # type cannot be of the kind asked for is sent back for repair instead of being run
    static_kind: bool = True
    # before a program of an agent round runs, the steps that only repeat their chain's call
    # (Select on what the same Select chose, a small planner's loop) are dropped without an
    # LLM call (sandbox.repeats)
    drop_repeats: bool = True
    checks: AgentChecks = Field(default_factory=AgentChecks)


class ServiceConfig(BaseModel):
    """The HTTP service ``vischain serve`` starts (FastAPI on Ray Serve). Everything sent
    to it is untrusted: requests are size-limited and, with ``auth_token`` set, need
    ``Authorization: Bearer <token>``."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    auth_token: str | None = None
    max_request_mb: float = Field(20.0, gt=0)  # whole request body (images included)
    max_images: int = Field(8, ge=1)
    roles: list[str] | None = None  # roles to deploy (default: every role with a model)
    runs_dir: Path | None = None  # where run traces are kept (default: a temporary folder)
    replicas: int = Field(1, ge=1)  # HTTP ingress replicas (they share runs_dir)


class Config(BaseSettings):
    """Everything VisChain can be told."""

    model_config = SettingsConfigDict(
        env_prefix="VISCHAIN_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    models: ModelSettings = Field(default_factory=ModelSettings)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    planner: PlannerConfig = Field(default_factory=PlannerConfig)
    agent: AgentConfig = Field(default_factory=AgentConfig)
    tools: dict[str, dict[str, Any]] = Field(default_factory=dict)  # per-tool options
    llm_url: str | None = None  # OpenAI-compatible server (vLLM) for the planner and List
    llm_model: str | None = None
    vlm_url: str | None = None  # OpenAI-compatible server with a vision-language model
    vlm_model: str | None = None
    trace_dir: Path | None = None
    plugins: bool = True
    telemetry: bool = False  # export runs as OpenTelemetry spans (needs vischain[otel])
    serve: ServiceConfig = Field(default_factory=ServiceConfig)  # `vischain serve`

    @field_validator("agent", mode="before")
    @classmethod
    def _agent_switch(cls, value: Any) -> Any:
        """``agent: false`` / ``agent: true`` switch the loop off / on with its defaults."""
        if isinstance(value, bool):
            return {"enabled": value}
        if isinstance(value, str) and value.strip().lower() in ("false", "true", "0", "1"):
            return {"enabled": value.strip().lower() in ("true", "1")}
        return value

    def model_settings(self) -> ModelSettings:
        """The model layer's settings, with the configured servers placed first."""
        updates: dict[str, Any] = {}
        if self.llm_url and self.models.llm_server is None:
            updates["llm_server"] = ModelSpec(
                family="openai", model=self.llm_model or "", options={"base_url": self.llm_url}
            )
        if self.vlm_url and self.models.vlm_server is None:
            updates["vlm_server"] = ModelSpec(
                family="openai_vlm", model=self.vlm_model or "", options={"base_url": self.vlm_url}
            )
        return self.models.model_copy(update=updates) if updates else self.models

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _FILE.get()
        if path is not None:
            if path.suffix.lower() == ".toml":
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
            else:
                sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)

    @classmethod
    def load(cls, path: str | Path | None = None, **overrides: Any) -> Config:
        """Read ``path`` (or ``$VISCHAIN_CONFIG``), then the environment, then ``overrides``."""
        chosen = path or os.environ.get(CONFIG_ENV)
        file = Path(chosen).expanduser() if chosen else None
        if file is not None and not file.is_file():
            raise FileNotFoundError(f"config file not found: {file}")
        token = _FILE.set(file)
        where = f"{file} with " if file is not None else ""
        where += "the VISCHAIN_* environment and the arguments given"
        try:
            return cls(**overrides)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'the whole file'}: {e['msg']}"
                f" (got {_shown(e.get('input'))})"
                for e in exc.errors()
            )
            raise ConfigError(f"bad configuration ({where}): {problems}") from None
        except (ValueError, TypeError, OSError, yaml.YAMLError) as exc:  # syntax, not a mapping…
            if file is not None and file.suffix.lower() != ".toml":
                _yaml_mapping(file)  # YAML's own message, or what the file holds instead
            raise ConfigError(f"unreadable configuration ({where}): {exc}") from None
        finally:
            _FILE.reset(token)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:79] + "…"


def _yaml_mapping(file: Path) -> None:
    """Refuse a YAML file that does not parse or is not a mapping of settings, naming what
    it holds instead (read again only after loading it failed)."""
    try:
        with file.open(encoding="utf-8") as stream:  # named in YAML's messages
            data = yaml.safe_load(stream)
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as exc:
        raise ConfigError(f"unreadable configuration file {file}: {exc}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(
            f"configuration file {file} holds a {type(data).__name__}, not a mapping of "
            "settings (models:, limits:, planner:, …)"
        )
