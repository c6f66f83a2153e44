"""Asking a vision-language model: Vqa (questions) and Point (Molmo-style pointing)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sandbox.answers import QuestionKind, asks_count, question_kind, short_answer
from tools.backends.numbers import NumberForm
from tools.base import BatchTool, ToolContext
from tools.errors import NoBackendError
from tools.types import Image, Point, PointList

# New tokens a short answer of each kind needs at most: a word or two and its end token,
# with room for a wordier model's "There are 2 cups." (a row stops at its end token, so a
# terse model pays nothing for the room). Text answers get the full budget.
ANSWER_TOKENS: dict[str, int] = {
    QuestionKind.YESNO: 8,
    QuestionKind.NUMBER: 10,
    QuestionKind.LABEL: 16,
}
MAX_NEW_TOKENS = 24


def answer_budget(ctx: ToolContext, tool: str, question: str) -> int:
    """The token budget for one question: by the kind of answer it asks for (options
    ``answer_tokens: {yesno: 8, number: 10, label: 16}``), never above ``max_new_tokens``."""
    most = int(ctx.option(tool, "max_new_tokens", MAX_NEW_TOKENS))
    table = {**ANSWER_TOKENS, **(ctx.option(tool, "answer_tokens", None) or {})}
    return max(1, min(most, int(table.get(question_kind(question), most))))


class Vqa(BatchTool):
    """Answer a question about an image with a short answer. Yes/no answers come back as
    'yes'/'no' and counts as digits, ready for Eval.

    A question that asks for a number ("How many...", see
    :func:`sandbox.answers.question_kind`) is answered under a constraint to digits when
    the model's backend can decode so (``answers_numbers``: the transformers VLMs mask
    every other token, a server gets a grammar) — a whole number for a count ("how
    many..."), perhaps with a decimal part for a measurement ("how far...") — so it is a
    number whatever the model would have written; option ``number_answers: false`` leaves
    such answers free."""

    name = "Vqa"
    aliases = ("Ask", "Query", "SimpleQuery")
    examples = ("ANSWER0=Vqa(image=IMAGE, question='What color is the car?')",)
    requires = ("vlm",)
    max_batch = 16

    def signature(self, image: Image, question: str) -> str:
        """Args:
        image: the picture (or crop) to look at
        question: the question, e.g. 'How many boats are there?'
        """

    def run_batch(self, ctx: ToolContext, calls: Sequence[dict[str, Any]]) -> list[Any]:
        vlm = ctx.model("vlm")
        ctx.note(model=vlm.spec.label(), device=vlm.device)
        budgets = [answer_budget(ctx, self.name, c["question"]) for c in calls]
        requests = [(c["image"], c["question"]) for c in calls]
        if getattr(vlm, "answers_numbers", False) and ctx.option(self.name, "number_answers", True):
            numbers = [_number_form(c["question"]) for c in calls]
            raw = vlm.answer(requests, max_new_tokens=budgets, numbers=numbers)
        else:
            raw = vlm.answer(requests, max_new_tokens=budgets)
        ctx.note(raw_answers=raw)
        return [short_answer(text, c["question"]) for text, c in zip(raw, calls, strict=True)]


def _number_form(question: str) -> NumberForm | None:
    """The form of number a question asks for, or None when it asks for something else."""
    if question_kind(question) is not QuestionKind.NUMBER:
        return None
    return NumberForm.WHOLE if asks_count(question) else NumberForm.DECIMAL


class PointAt(BatchTool):
    """Point at every instance of an object (Molmo). Points feed Count, or Seg to become
    masks."""

    name = "Point"
    aliases = ("PointAt",)
    examples = (
        "POINTS0=Point(image=IMAGE, object='apple')",
        "ANSWER0=Count(object=POINTS0)",
    )
    requires = ("pointer",)
    max_batch = 16

    def signature(self, image: Image, object: str) -> PointList:
        """Args:
        image: the picture to look at
        object: what to point at, e.g. 'person wearing a hat'
        """

    def run_batch(self, ctx: ToolContext, calls: Sequence[dict[str, Any]]) -> list[Any]:
        pointer = ctx.model("pointer")
        if not getattr(pointer, "supports_pointing", False):
            raise NoBackendError(
                f"{pointer.spec.label()} cannot point; configure Molmo2 as 'pointer'"
            )
        ctx.note(model=pointer.spec.label(), device=pointer.device)
        found = pointer.point([(c["image"], c["object"]) for c in calls])
        return [
            PointList(tuple(Point(p.x, p.y, label=c["object"]) for p in points)).found_in(
                c["image"]
            )
            for points, c in zip(found, calls, strict=True)
        ]
