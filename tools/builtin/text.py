"""Language and text: List (an LLM lists things) and Ocr (reading text in images)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from typing import Any

from tools.backends.llm import LLMRequest
from tools.base import BatchTool, Tool, ToolContext
from tools.errors import ToolError, ToolInputError
from tools.types import Image, ObjectList


class List(Tool):
    """Ask the language model for a list of things (e.g. 'main characters on the TV show
    Big Bang Theory'); returns at most `max` items."""

    name = "List"
    aliases = ("ListItems",)
    examples = ("LIST0=List(query='main characters on the TV show Big Bang Theory', max=7)",)
    requires = ("llm",)
    PROMPT = "List {max} {query}. Write one per line, names only, no explanations.\n1."

    def run(self, ctx: ToolContext, query: str, max: int = 10) -> list[str]:
        """Args:
        query: what to list
        max: the largest number of items wanted
        """
        if max < 1:
            raise ToolInputError("List: max must be at least 1")
        llm = ctx.model("llm")
        ctx.note(model=llm.spec.label())
        prompt = self.PROMPT.format(max=max, query=query.strip())
        request = LLMRequest(max_tokens=24 * max + 32, stop=("\n\n", f"\n{max + 1}."))
        completion = llm.complete(prompt, request)[0]
        items = parse_list("1." + completion.text, limit=max)
        if not items:
            raise ToolError(f"List: the language model gave no items for '{query}'")
        return items


class Ocr(BatchTool):
    """Read the text in an image: one object per line of text, its label the text, in
    reading order."""

    name = "Ocr"
    aliases = ("ReadText",)
    examples = ("TEXT0=Ocr(image=IMAGE)",)
    requires = ("ocr",)
    max_batch = 8

    def signature(self, image: Image) -> ObjectList:
        """Args:
        image: the picture to read
        """

    def run_batch(self, ctx: ToolContext, calls: Sequence[dict[str, Any]]) -> list[Any]:
        reader = ctx.model("ocr")
        ctx.note(model=reader.spec.label())
        found = reader.read([c["image"] for c in calls])
        return [lines.found_in(c["image"]) for lines, c in zip(found, calls, strict=True)]


class LlmQuery(Tool):
    """Answer a question from the language model's general knowledge (no image)."""

    name = "LlmQuery"
    aliases = ("Knowledge",)
    examples = ("TEXT0=LlmQuery(question='Which country is the Eiffel Tower in?')",)
    requires = ("llm",)
    PROMPT = "Answer briefly and factually.\nQuestion: {question}\nAnswer:"
    LONG_PROMPT = "Answer factually, explaining in a few sentences.\nQuestion: {question}\nAnswer:"

    def run(self, ctx: ToolContext, question: str, long_answer: bool = False) -> str:
        """Args:
        question: the question
        long_answer: answer in a few sentences instead of a word or two
        """
        llm = ctx.model("llm")
        ctx.note(model=llm.spec.label())
        if long_answer:
            prompt, request = self.LONG_PROMPT, LLMRequest(max_tokens=160, stop=("\n\n",))
        else:
            prompt, request = self.PROMPT, LLMRequest(max_tokens=64, stop=("\n",))
        text = llm.complete(prompt.format(question=question.strip()), request)[0].text
        answer = text.strip()
        if not answer:
            raise ToolError("LlmQuery: the language model gave no answer")
        return answer


_BULLET = re.compile(r"^\s*(?:[-*•·]|\d+[.)]|\(\d+\)|[a-z][.)])\s*", re.I)


def parse_list(text: str, *, limit: int | None = None) -> list[str]:
    """Items from an LLM's list: one per line or comma-separated, bullets and numbering,
    quotes and trailing punctuation removed, duplicates dropped, order kept."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) <= 1 and lines and "," in lines[0]:
        lines = lines[0].split(",")
    items: list[str] = []
    seen: set[str] = set()
    for line in lines:
        item = _BULLET.sub("", line).strip().strip("\"'`").strip()
        item = re.sub(r"[.;:]+$", "", item).strip()
        item = re.sub(r"\s+", " ", item)
        if not item or len(item) > 200 or item.lower() in seen:
            continue
        seen.add(item.lower())
        items.append(item)
        if limit is not None and len(items) >= limit:
            break
    return items


class SelectAnswer(Tool):
    """Answer a question from evidence gathered earlier (captions, detections, guesses)
    with the language model; with `options`, the answer is the option that matches the
    model's reply best."""

    name = "SelectAnswer"
    aliases = ("ProcessGuesses", "ChooseAnswer")
    examples = (
        "ANSWER1=SelectAnswer(question='Where is this?', info=ANSWER0, options=['beach', 'city'])",
    )
    requires = ("llm",)
    PROMPT = (
        "Answer the question using the information.\nInformation:\n{info}\n"
        "Question: {question}\n{choices}Answer:"
    )

    def run(
        self, ctx: ToolContext, question: str, info: str, options: list[str] | None = None
    ) -> str:
        """Args:
        question: the question to answer
        info: what is known, one fact or guess per line
        options: the possible answers (the reply is mapped to the closest one)
        """
        llm = ctx.model("llm")
        ctx.note(model=llm.spec.label())
        choices = [o.strip() for o in options or [] if o.strip()]
        listed = f"Choose one of: {', '.join(choices)}\n" if choices else ""
        prompt = self.PROMPT.format(info=info.strip(), question=question.strip(), choices=listed)
        reply = llm.complete(prompt, LLMRequest(max_tokens=48, stop=("\n",)))[0].text.strip()
        if choices:
            return closest_option(reply, choices)
        if not reply:
            raise ToolError("SelectAnswer: the language model gave no answer")
        return reply


def closest_option(reply: str, options: Sequence[str]) -> str:
    """The option a free-text reply means: one it names (the longest, if several), else the
    one sharing most words with it, else the most similar by characters, else the first."""
    text = reply.lower()
    named = [o for o in options if o.lower() in text]
    if named:
        return max(named, key=len)
    words = set(re.findall(r"\w+", text))
    overlap = [len(words & set(re.findall(r"\w+", o.lower()))) for o in options]
    if max(overlap) > 0:
        return options[overlap.index(max(overlap))]
    close = difflib.get_close_matches(text, [o.lower() for o in options], n=1, cutoff=0.0)
    if close:
        return next(o for o in options if o.lower() == close[0])
    return options[0]
