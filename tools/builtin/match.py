"""Choosing among objects with CLIP: Select (objects matching a query) and Classify
(one best object per category, optionally with CuPL-style LLM descriptions)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from tools.base import BatchTool, ToolContext
from tools.builtin.crop import object_crop, object_region
from tools.builtin.cupl import Describer
from tools.errors import ToolInputError
from tools.pool import ModelPool
from tools.types import Image, ObjectList

log = logging.getLogger("vischain.tools")
OTHER = "other"


def _where(calls: Sequence[dict[str, Any]]) -> list[tuple[int, int]]:
    """(call, object) indices of every object of every call, flattened."""
    return [(i, j) for i, call in enumerate(calls) for j in range(len(call["object"]))]


def object_features(clip: Any, calls: Sequence[dict[str, Any]]) -> torch.Tensor:
    """[N, D] CLIP embeddings of every object of every call (in :func:`_where` order): each
    picture's regions prepared in one tensor op on the model's device where the model
    does so (:mod:`tools.backends.regions`), else crop by crop."""
    if not getattr(clip, "batch_regions", False):
        crops = [object_crop(c["image"], obj) for c in calls for obj in c["object"]]
        return clip.image_features(crops)
    parts = []
    for call in calls:
        if not len(call["object"]):
            continue
        regions = [object_region(call["image"], obj) for obj in call["object"]]
        parts.append(
            clip.region_features(call["image"], [b for b, _ in regions], [m for _, m in regions])
        )
    return torch.cat(parts) if parts else torch.zeros((0, 0))


def _on_their_images(calls: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each call's objects in the coordinates of the image it names."""
    return [{**c, "object": c["object"].on(c["image"])} for c in calls]


def _queries(text: str) -> list[str]:
    return [q.strip() for q in text.split(",") if q.strip()]


class Select(BatchTool):
    """Pick the objects that match a text query: an object whose label equals the query is
    chosen directly; otherwise CLIP picks the best-matching object for each
    comma-separated query. `category` narrows the candidates to objects of that label."""

    name = "Select"
    aliases = ("Filter",)
    examples = ("OBJ1=Select(image=IMAGE, object=OBJ0, query='desert', category=None)",)
    requires = ("clip",)
    max_batch = 16

    def signature(
        self,
        image: Image,
        object: ObjectList,
        query: str,
        category: str | None = None,
    ) -> ObjectList:
        """Args:
        image: the picture the objects are in
        object: the candidate objects
        query: what to choose, e.g. 'desert' or 'sky,water'
        category: optional label the candidates must have (e.g. 'car' for query 'red car')
        """

    def run_batch(self, ctx: ToolContext, calls: Sequence[dict[str, Any]]) -> list[Any]:
        calls = _on_their_images(calls)
        plans: list[list[tuple[str, list[int]]]] = []  # per call: (query, candidate indices)
        chosen: list[dict[int, str]] = []  # per call: object index -> label
        need_clip: list[tuple[int, str, list[int]]] = []
        for i, call in enumerate(calls):
            objects: ObjectList = call["object"]
            candidates = list(range(len(objects)))
            category = (call.get("category") or "").strip().lower()
            if category:
                same = [k for k in candidates if (objects[k].label or "").lower() == category]
                candidates = same or candidates
            picked: dict[int, str] = {}
            plan = []
            for q in _queries(call["query"]):
                exact = [k for k in candidates if (objects[k].label or "").lower() == q.lower()]
                if exact:
                    for k in exact:
                        picked[k] = objects[k].label or q
                elif candidates:
                    plan.append((q, candidates))
                    need_clip.append((i, q, candidates))
            plans.append(plan)
            chosen.append(picked)
        if need_clip:
            clip = ctx.model("clip")
            ctx.note(model=clip.spec.label(), device=clip.device)
            index = {w: n for n, w in enumerate(_where(calls))}
            texts = sorted({q for _, q, _ in need_clip})
            feats = object_features(clip, calls)
            sims = (feats @ clip.text_features([f"a photo of {q}" for q in texts]).T).numpy()
            for i, q, candidates in need_clip:
                column = texts.index(q)
                scores = [sims[index[(i, k)], column] for k in candidates]
                best = candidates[int(np.argmax(scores))]
                chosen[i].setdefault(best, q)
        out = []
        for call, picked in zip(calls, chosen, strict=True):
            objects = call["object"]
            out.append(
                objects.with_items(objects[k].with_(label=picked[k]) for k in sorted(picked))
            )
        return out


class Classify(BatchTool):
    """Label objects with categories using CLIP: each category gets its single best object
    (an optimal one-to-one assignment), and objects that look more like 'other' than like
    their category are dropped. With per_object=True, every object gets its own best
    category instead (several objects may share one). With describe=True, an LLM first
    writes a short visual description of each category (CuPL) and CLIP matches those."""

    name = "Classify"
    aliases = ("Recognize",)
    examples = (
        "OBJ1=Classify(image=IMAGE, object=OBJ0, categories=LIST0)",
        "OBJ1=Classify(image=IMAGE, object=OBJ0, categories=['cat', 'dog'], describe=True)",
        "OBJ1=Classify(image=IMAGE, object=OBJ0, categories=['pawn', 'rook'], per_object=True)",
    )
    requires = ("clip",)
    max_batch = 16

    def signature(
        self,
        image: Image,
        object: ObjectList,
        categories: list[str],
        describe: bool = False,
        per_object: bool = False,
    ) -> ObjectList:
        """Args:
        image: the picture the objects are in
        object: the objects to label
        categories: the names to assign (from List, or written out)
        describe: match LLM-written visual descriptions of each category (CuPL)
        per_object: label every object with its best category (not one object per category)
        """

    def run_batch(self, ctx: ToolContext, calls: Sequence[dict[str, Any]]) -> list[Any]:
        calls = _on_their_images(calls)
        for call in calls:
            if not [c for c in call["categories"] if c.strip()]:
                raise ToolInputError("Classify needs at least one category")
        clip = ctx.model("clip")
        ctx.note(model=clip.spec.label(), device=clip.device)
        where = _where(calls)
        results: list[Any] = [c["object"].with_items(()) for c in calls]
        if not where:
            return results
        feats = object_features(clip, calls)  # one batched encoder pass for every object
        wanted = [_clean(c["categories"]) for c in calls if c.get("describe")]
        described = _descriptions(ctx, wanted)
        for i, call in enumerate(calls):
            rows = [n for n, (ci, _) in enumerate(where) if ci == i]
            if not rows:
                continue
            names = _clean(call["categories"])
            descriptions = {c: described[c] for c in names} if call.get("describe") else None
            probs = clip.zero_shot_features(feats[rows], [*names, OTHER], descriptions=descriptions)
            objects: ObjectList = call["object"]
            chosen = assign(probs, per_object=bool(call.get("per_object")))
            results[i] = objects.with_items(
                objects[o].with_(label=names[c], score=p) for o, c, p in chosen
            )
        return results


def assign(probs: np.ndarray, *, per_object: bool = False) -> list[tuple[int, int, float]]:
    """(object, category, probability) labels from an objects × (categories + 'other')
    probability table, in object order: one best object per category (an optimal
    assignment), or each object's best category; objects likelier 'other' are dropped."""
    real = probs[:, :-1]
    if per_object:
        obj_idx, cat_idx = np.arange(len(real)), real.argmax(axis=1)
    else:
        obj_idx, cat_idx = linear_sum_assignment(-np.log(real + 1e-9))
    return sorted(
        (int(o), int(c), float(probs[o, c]))
        for o, c in zip(obj_idx, cat_idx, strict=True)
        if probs[o, -1] <= probs[o, c]  # looks more like 'other' than like this category
    )


def _descriptions(ctx: ToolContext, groups: list[list[str]]) -> dict[str, list[str]]:
    """CuPL descriptions of every category in ``groups``, missing ones written in one call
    (stored under the model pool's cache directory)."""
    names = [n for group in groups for n in group]
    if not names:
        return {}
    models = ctx.models
    cache_dir = models.settings.cache_dir if isinstance(models, ModelPool) else None
    return Describer.shared(ctx.model("llm"), cache_dir).describe_many(names)


def _clean(categories: Sequence[str]) -> list[str]:
    out: list[str] = []
    for c in categories:
        c = c.strip()
        if c and c.lower() != OTHER and c not in out:
            out.append(c)
    return out


class Match(BatchTool):
    """Choose the option that best describes an image (CLIP zero-shot)."""

    name = "Match"
    aliases = ("BestTextMatch",)
    examples = ("ANSWER0=Match(image=IMAGE0, options=['red', 'green', 'blue'])",)
    requires = ("clip",)
    max_batch = 32

    def signature(self, image: Image, options: list[str], prefix: str | None = None) -> str:
        """Args:
        image: the picture (or crop)
        options: the candidate descriptions
        prefix: words put before each option when matching (e.g. 'man' for 'happy')
        """

    def run_batch(self, ctx: ToolContext, calls: Sequence[dict[str, Any]]) -> list[Any]:
        for call in calls:
            if not [o for o in call["options"] if o.strip()]:
                raise ToolInputError("Match needs at least one option")
        clip = ctx.model("clip")
        ctx.note(model=clip.spec.label(), device=clip.device)
        clip.image_features([c["image"] for c in calls])  # one encoder pass for the batch
        out = []
        for call in calls:
            options = [o for o in call["options"] if o.strip()]
            prefix = (call.get("prefix") or "").strip()
            texts = [f"{prefix} {o}" for o in options] if prefix else options
            probs = clip.zero_shot([call["image"]], texts)
            out.append(options[int(np.argmax(probs[0]))])
        return out


class Similarity(BatchTool):
    """How well an image matches a text, as CLIP's cosine similarity (-1 to 1)."""

    name = "Similarity"
    examples = ("SCORE0=Similarity(image=IMAGE0, text='a wooden chair')",)
    requires = ("clip",)
    max_batch = 64

    def signature(self, image: Image, text: str) -> float:
        """Args:
        image: the picture (or crop)
        text: the description
        """

    def run_batch(self, ctx: ToolContext, calls: Sequence[dict[str, Any]]) -> list[Any]:
        clip = ctx.model("clip")
        ctx.note(model=clip.spec.label(), device=clip.device)
        images = [c["image"] for c in calls]
        texts = sorted({c["text"] for c in calls})
        sims = clip.similarity(images, texts)
        return [float(sims[i, texts.index(c["text"])]) for i, c in enumerate(calls)]
