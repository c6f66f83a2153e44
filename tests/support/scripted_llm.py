"""A scripted LLM: returns prepared outputs in order and records every prompt it got.

It implements the real LLM backend interface, so the planner, List and CuPL run unchanged
against it; tests use it to drive exact situations (a broken first program, a repair)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from tools.backends.base import Placement
from tools.backends.llm import DEFAULT_REQUEST, Completion, LLMBackend, LLMRequest
from tools.settings import ModelSpec


class ScriptedLLM(LLMBackend):
    family = "scripted"

    def __init__(self, outputs: Sequence[str], *, name: str = "scripted") -> None:
        super().__init__(ModelSpec(family="scripted", model=name), Placement("cpu", torch.float32))
        self.outputs = list(outputs)
        self.prompts: list[str] = []
        self.requests: list[LLMRequest] = []
        self.prefixes: list[str] = []  # what callers declared with cache_prefix

    def complete(self, prompt: str, request: LLMRequest = DEFAULT_REQUEST) -> list[Completion]:
        out = []
        for _ in range(request.n):
            if not self.outputs:
                raise AssertionError("the scripted LLM ran out of outputs")
            self.prompts.append(prompt)
            self.requests.append(request)
            text = self.outputs.pop(0)
            out.append(
                Completion(text, self.count_tokens(prompt), self.count_tokens(text), 0.001, "stop")
            )
        time.sleep(0)
        return out

    def chat(
        self, messages: list[dict[str, str]], request: LLMRequest = DEFAULT_REQUEST
    ) -> list[Completion]:
        return self.complete("\n".join(m["content"] for m in messages), request)

    def cache_prefix(self, prefix: str) -> None:
        self.prefixes.append(prefix)

    @property
    def grammars(self) -> list[str | None]:
        """The grammar of every request, in order."""
        return [r.grammar for r in self.requests]

    def count_tokens(self, text: str) -> int:
        return max(1, len(text.split()))

    @property
    def context_length(self) -> int:
        return 32_768
