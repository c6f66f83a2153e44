"""Language and text: List (an LLM lists things) and Ocr (reading text in images)."""

from __future__ import annotations

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

    def run(self, ctx: ToolContext, question: str) -> str:
        """Args:
        question: the question
        """
        llm = ctx.model("llm")
        ctx.note(model=llm.spec.label())
        request = LLMRequest(max_tokens=64, stop=("\n",))
        text = llm.complete(self.PROMPT.format(question=question.strip()), request)[0].text
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
