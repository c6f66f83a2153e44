"""Choosing in-context examples for an instruction: the most similar ones that fit a token
budget. Similarity comes from a sentence-embedding model (MiniLM ships offline) when one
is available, else from word overlap; examples over the request's own inputs (LEFT/RIGHT
pairs, one IMAGE) are preferred."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from programs import Example

log = logging.getLogger("vischain.planner")
_WORD = re.compile(r"[a-z0-9]+")
_STOP = set(
    "a an the of in on at to is are be there this that it its with for and or by from as".split()
)


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


def lexical_similarity(query: str, texts: Sequence[str]) -> np.ndarray:
    """Word-overlap similarity (a Dice coefficient), used without an embedding model."""
    q = _words(query)
    out = np.zeros(len(texts), dtype=np.float32)
    for i, t in enumerate(texts):
        w = _words(t)
        if q or w:
            out[i] = 2 * len(q & w) / (len(q) + len(w))
    return out


#: what a preferred example adds to its similarity: more than the gap between a close and a
#: loosely related instruction, so a preferred example that is related at all ranks first
PREFER_BONUS = 0.3


class TextEmbedder(Protocol):
    """What ranking needs from a sentence-embedding model (``SentenceEmbeddingBackend``)."""

    def embed(self, texts: list[str]) -> np.ndarray:
        """[N, D] float32 unit vectors, one per text."""
        ...


class ExampleSelector:
    """Ranks library examples by similarity to an instruction."""

    def __init__(
        self,
        examples: Sequence[Example],
        *,
        embedder: TextEmbedder | None = None,
        count_tokens: Callable[[str], int] | None = None,
    ) -> None:
        self.examples = list(examples)
        self.embedder = embedder
        self.count_tokens = count_tokens or (lambda text: len(text) // 3 + 1)
        self._vectors: np.ndarray | None = None

    def similarities(self, instruction: str) -> np.ndarray:
        texts = [e.instruction for e in self.examples]
        if self.embedder is not None:
            try:
                if self._vectors is None:
                    self._vectors = np.asarray(self.embedder.embed(texts), dtype=np.float32)
                query = np.asarray(self.embedder.embed([instruction]), dtype=np.float32)[0]
                return self._vectors @ query
            except Exception as exc:  # fall back rather than fail the run
                log.warning("embedding similarity failed (%s); using word overlap", exc)
        return lexical_similarity(instruction, texts)

    def select(
        self,
        instruction: str,
        *,
        k: int,
        budget_tokens: int,
        inputs: Sequence[str] = ("IMAGE",),
        render: Callable[[Example], str] = lambda e: e.program,
        prefer: Callable[[Example], bool] | None = None,
    ) -> list[Example]:
        """Up to ``k`` examples within ``budget_tokens``, least similar first (so the most
        similar sits right before the instruction). ``prefer`` marks examples to rank higher
        (by :data:`PREFER_BONUS`; e.g. those whose result is of the kind asked for) — only
        those that read the run's inputs when any example does: a small planner copies the
        nearest example's input names, so a preferred one-image example before a two-image
        instruction gives a program that reads IMAGE where LEFT and RIGHT were given)."""
        if k <= 0 or not self.examples:
            return []
        scores = self.similarities(instruction)
        wanted = {i.upper() for i in inputs}
        same = [{i.upper() for i in e.inputs} == wanted for e in self.examples]
        bonus = np.array([0.15 if m else 0.0 for m in same], dtype=np.float32)
        if prefer is not None:
            fits = any(same)
            bonus += np.array(
                [
                    PREFER_BONUS if (m or not fits) and prefer(e) else 0.0
                    for e, m in zip(self.examples, same, strict=True)
                ],
                dtype=np.float32,
            )
        order = np.argsort(-(scores + bonus), kind="stable")
        chosen: list[Example] = []
        used = 0
        for idx in order:
            example = self.examples[int(idx)]
            cost = self.count_tokens(render(example))
            if used + cost > budget_tokens:
                continue
            chosen.append(example)
            used += cost
            if len(chosen) >= k:
                break
        return list(reversed(chosen))
