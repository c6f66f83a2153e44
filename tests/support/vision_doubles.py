"""Test doubles for vision roles, for end-to-end tests on tiny random-weight models whose
outputs would otherwise be empty (random CLIP calls every crop 'other'; random Molmo points
at nothing; a random VLM writes no number). Each has its own model identity, so the memo never mixes its results with the
real model's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from sandbox.answers import QuestionKind, question_kind
from tools.backends.base import Backend, Placement
from tools.settings import ModelSpec
from tools.types import Image, Point, PointList


class FixedPointer(Backend):
    """A 'pointer' that points at the same pixels in every image."""

    family = "fixed-pointer"
    supports_pointing = True

    def __init__(self, points: Sequence[tuple[float, float]]) -> None:
        spec = ModelSpec(family=self.family, model=repr(list(points)))
        super().__init__(spec, Placement("cpu", torch.float32))
        self.points = list(points)

    def point(self, requests: Sequence[tuple[Image, str]], **_: Any) -> list[PointList]:
        return [
            PointList(tuple(Point(x, y, label=obj) for x, y in self.points))
            for _image, obj in requests
        ]


class DecisiveClip:
    """The real (tiny) CLIP for everything but zero-shot classification, where object i
    gets category ``i mod (C - 1)`` with probability 0.9 (the last class, 'other', 0.01)."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.spec = real.spec.model_copy(update={"model": f"decisive:{real.spec.model}"})

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def zero_shot(self, images: Sequence[Image], classes: Sequence[str], **_: Any) -> np.ndarray:
        return self.zero_shot_features(images, classes)

    def zero_shot_features(
        self, rows: Sequence[Any], classes: Sequence[str], **_: Any
    ) -> np.ndarray:
        table = np.full((len(rows), len(classes)), 0.01)
        for i in range(len(rows)):
            table[i, i % max(1, len(classes) - 1)] = 0.9
        return table / table.sum(axis=1, keepdims=True)


class CountingVlm:
    """The real (tiny) VLM, except that a counting question is answered '2': random
    weights write no number within a count's token budget, and a VisProg program's Eval
    adds the counts up."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.spec = real.spec.model_copy(update={"model": f"counting:{real.spec.model}"})

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def answer(self, requests: Sequence[tuple[Image, str]], **kwargs: Any) -> list[str]:
        raw = self._real.answer(requests, **kwargs)
        return [
            "2" if question_kind(question) is QuestionKind.NUMBER else text
            for (_, question), text in zip(requests, raw, strict=True)
        ]
