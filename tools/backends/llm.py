"""The interface every text LLM backend offers the planner and the text tools.

The planner prompts with *raw completion* prompts (its own few-shot text, no chat template)
and constrains decoding with a GBNF grammar of the program language, sampling ``n``
candidate programs per question. Chat is there for tools that want the model's own template.
A backend that cannot honour a grammar raises :class:`~tools.errors.ModelError`: silently
ignoring it would hand the planner unconstrained text.

How to sample is one value, :class:`LLMRequest` (DSPy's shape: one sampling value passed
through): callers build it once, derive variants with :meth:`LLMRequest.with_`, and every
backend and test double takes it whole. It checks itself when built, so a backend never sees
``n=0`` or ``top_p=2``. :class:`LanguageModel` is the protocol callers (the planner, List,
CuPL) type against.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

from ..settings import ModelSpec
from .base import Backend


@dataclass(frozen=True, slots=True)
class LLMRequest:
    """How to sample: the same value for completion and chat, local and served models.

    ``max_tokens`` bounds each sample; ``temperature`` 0 is greedy; ``top_p`` is nucleus
    sampling in (0, 1]; generation stops at any string of ``stop`` (which is not included
    in the text); ``grammar`` is GBNF text that constrains decoding; ``n`` samples are
    drawn, the i-th with seed ``seed + i`` when ``seed`` is given (else the backend picks).
    Lists given for ``stop`` are stored as tuples, so the value is hashable.
    """

    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    grammar: str | None = None
    n: int = 1
    seed: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            raise ValueError("stop must be a sequence of strings, not one string")
        object.__setattr__(self, "stop", tuple(self.stop))
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, not {self.max_tokens}")
        if self.n < 1:
            raise ValueError(f"n must be at least 1, not {self.n}")
        if not self.temperature >= 0:  # also rejects NaN
            raise ValueError(f"temperature must be >= 0, not {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], not {self.top_p}")
        if not all(isinstance(s, str) and s for s in self.stop):
            raise ValueError(f"stop strings must be non-empty strings, not {self.stop!r}")
        if self.grammar is not None and not self.grammar.strip():
            raise ValueError("grammar must be GBNF text or None, not an empty string")
        if self.seed is not None and self.seed < 0:
            raise ValueError(f"seed must be >= 0, not {self.seed}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def with_(self, **changes: Any) -> LLMRequest:
        """A copy with ``changes`` applied (and checked)."""
        return dataclasses.replace(self, **changes)

    def sample_seed(self, i: int) -> int | None:
        """The seed of the ``i``-th of the ``n`` samples (None: the backend chooses)."""
        return None if self.seed is None else self.seed + i


DEFAULT_REQUEST = LLMRequest()


@dataclass(frozen=True, slots=True)
class Completion:
    """One generated text and what it cost.

    ``seconds`` is the wall time of the call that produced it (a server returning ``n``
    samples in one request gives each of them that request's time). ``finish_reason`` is
    "stop" (end of sequence, stop string or grammar complete), "length" (hit ``max_tokens``)
    or None when the backend does not say.
    """

    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    finish_reason: str | None = None


@runtime_checkable
class LanguageModel(Protocol):
    """What the planner and the text tools need from an LLM (every :class:`LLMBackend`)."""

    spec: ModelSpec

    @property
    def context_length(self) -> int: ...

    def count_tokens(self, text: str) -> int: ...

    def cache_prefix(self, prefix: str) -> None: ...

    def complete(self, prompt: str, request: LLMRequest = DEFAULT_REQUEST) -> list[Completion]: ...

    def complete_many(
        self, prompts: Sequence[str], request: LLMRequest = DEFAULT_REQUEST
    ) -> list[Completion]: ...

    def chat(
        self, messages: list[dict[str, str]], request: LLMRequest = DEFAULT_REQUEST
    ) -> list[Completion]: ...


class LLMBackend(Backend):
    """A loaded text model. Subclasses implement :meth:`complete`, :meth:`chat`,
    :meth:`count_tokens` and :attr:`context_length`; :meth:`complete_many` loops by default
    and is overridden where a backend can batch or issue requests concurrently."""

    batch_methods: ClassVar[Mapping[str, int]] = {"complete_many": 1}

    def complete(self, prompt: str, request: LLMRequest = DEFAULT_REQUEST) -> list[Completion]:
        """``request.n`` samples continuing ``prompt`` (raw text, no chat template)."""
        raise NotImplementedError

    def complete_many(
        self, prompts: Sequence[str], request: LLMRequest = DEFAULT_REQUEST
    ) -> list[Completion]:
        """One completion per prompt, in the order of ``prompts`` (``request.n`` must be 1;
        every prompt gets ``request.seed``)."""
        single(request)
        return [self.complete(p, request)[0] for p in prompts]

    def chat(
        self, messages: list[dict[str, str]], request: LLMRequest = DEFAULT_REQUEST
    ) -> list[Completion]:
        """``request.n`` assistant replies to ``messages`` ({"role", "content"} dicts),
        formatted with the model's own chat template."""
        raise NotImplementedError

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes on its own (no BOS or other special tokens added)."""
        raise NotImplementedError

    def cache_prefix(self, prefix: str) -> None:
        """Prompts will start with ``prefix``: a backend may compute the model's state for it
        once and reuse it (llama.cpp keeps it on disk, across processes). The default does
        nothing: servers such as vLLM cache shared prefixes themselves."""

    @property
    def context_length(self) -> int:
        """Tokens of prompt plus completion the model accepts."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "context_length": self.context_length}


def single(request: LLMRequest) -> LLMRequest:
    """``request`` if it asks for one sample per prompt (what ``complete_many`` returns)."""
    if request.n != 1:
        raise ValueError(f"complete_many returns one completion per prompt; n must be 1, "
                         f"not {request.n}")  # fmt: skip
    return request


__all__ = ["DEFAULT_REQUEST", "Completion", "LLMBackend", "LLMRequest", "LanguageModel", "single"]
