"""The interface every text LLM backend offers the planner and the text tools.

The planner prompts with *raw completion* prompts (its own few-shot text, no chat template)
and constrains decoding with a GBNF grammar of the program language, sampling ``n``
candidate programs per question. Chat is there for tools that want the model's own template.
A backend that cannot honour a grammar raises :class:`~tools.errors.ModelError`: silently
ignoring it would hand the planner unconstrained text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .base import Backend


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


class LLMBackend(Backend):
    """A loaded text model. Subclasses implement :meth:`complete`, :meth:`chat`,
    :meth:`count_tokens` and :attr:`context_length`; :meth:`complete_many` loops by default
    and is overridden where a backend can batch or issue requests concurrently."""

    def complete(
        self,
        prompt: str,
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: Sequence[str] | None = None,
        grammar: str | None = None,
        n: int = 1,
        seed: int | None = None,
    ) -> list[Completion]:
        """``n`` samples continuing ``prompt`` (raw text, no chat template)."""
        raise NotImplementedError

    def complete_many(
        self,
        prompts: Sequence[str],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: Sequence[str] | None = None,
        grammar: str | None = None,
        seed: int | None = None,
    ) -> list[Completion]:
        """One completion per prompt, in the order of ``prompts``."""
        return [
            self.complete(
                p,
                max_tokens=max_tokens,
                temperature=temperature,
                top_p=top_p,
                stop=stop,
                grammar=grammar,
                seed=seed,
            )[0]
            for p in prompts
        ]

    def chat(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: Sequence[str] | None = None,
        grammar: str | None = None,
        n: int = 1,
        seed: int | None = None,
    ) -> list[Completion]:
        """``n`` assistant replies to ``messages`` ({"role", "content"} dicts), formatted
        with the model's own chat template."""
        raise NotImplementedError

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes on its own (no BOS or other special tokens added)."""
        raise NotImplementedError

    @property
    def context_length(self) -> int:
        """Tokens of prompt plus completion the model accepts."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "context_length": self.context_length}


def check_sampling(max_tokens: int, n: int, temperature: float, top_p: float) -> None:
    """Reject arguments no backend can honour, with the same message everywhere."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, not {max_tokens}")
    if n < 1:
        raise ValueError(f"n must be at least 1, not {n}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, not {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], not {top_p}")


__all__ = ["Completion", "LLMBackend", "check_sampling"]
