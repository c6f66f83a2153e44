"""What kind of answer an instruction asks for, and whether a result is of that kind.

A question asks for text, a number, a yes/no answer or a label; an edit asks for an image;
"find the dogs" asks for objects. The agent loop decides the kind once per run, before
anything runs, and checks every round's result against it:

- :func:`kind_by_rules` reads the instruction's form (how many → number; an auxiliary verb
  first → yes/no, unless it offers alternatives with "or" → label; an edit verb first →
  image...). It answers None when the form says nothing reliable;
- :func:`kind_prompt` / :func:`parse_kind` ask the planner's LLM, under a grammar that
  allows only the kind names (``programs/templates/answer_kind.txt``);
- :func:`kind_of_value` names the kind of a result value, and :func:`fits` says whether a
  result of one kind answers an instruction of another.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from programs import template
from sandbox.answers import QuestionKind, asked_kind
from tools.types import Image, Object, ObjectList, Point, PointList

from .planner import fill


class AnswerKind(StrEnum):
    YESNO = "yesno"  # yes / no
    NUMBER = "number"  # a count or a measurement
    TEXT = "text"  # free text: what a sign says, a description
    LABEL = "label"  # one name among possibilities: a colour, a breed, a place
    IMAGE = "image"  # an edited or cropped picture
    OBJECTS = "objects"  # boxes, masks or points
    ANY = "any"  # nothing to check


_EDIT = frozenset(
    "tag label blur replace cover hide remove erase delete color colour highlight mark put "
    "change make turn paint draw swap recolor recolour pixelate censor add outline annotate "
    "name identify crop cut zoom sharpen brighten darken invert mask keep fill place apply".split()
)
_FIND = frozenset("find locate detect segment select show point circle".split())
_WORD = re.compile(r"[a-z']+")
_QUESTION_KINDS = {
    QuestionKind.YESNO: AnswerKind.YESNO,
    QuestionKind.NUMBER: AnswerKind.NUMBER,
    QuestionKind.LABEL: AnswerKind.LABEL,
    QuestionKind.TEXT: AnswerKind.TEXT,
}
_UNSURE = re.compile(r"[^a-z0-9 ]+")  # punctuation is ignored when comparing answers


def kind_by_rules(instruction: str) -> AnswerKind | None:
    """The kind an instruction's wording asks for, or None when the wording does not say: a
    question's kind by :func:`sandbox.answers.asked_kind` (the rules Vqa's answer budgets
    use too); an edit verb first, not as a question → an image; a find verb first → objects."""
    text = instruction.strip().lower()
    words = _WORD.findall(text)
    if not words:
        return None
    first = words[1] if words[0] == "please" and len(words) > 1 else words[0]
    asked = asked_kind(text)
    if asked is QuestionKind.NUMBER or first not in _EDIT | _FIND or text.endswith("?"):
        return None if asked is None else _QUESTION_KINDS[asked]
    return AnswerKind.IMAGE if first in _EDIT else AnswerKind.OBJECTS


def kind_prompt(instruction: str) -> str:
    """The few-shot prompt that asks the planner's LLM for the kind (completion text)."""
    return fill(template("answer_kind"), instruction=instruction.strip()).rstrip("\n")


def kind_grammar() -> str:
    """GBNF that allows exactly one kind name."""
    names = " | ".join(f'"{k.value}"' for k in AnswerKind)
    return f'root ::= " "? ({names}) "\\n"?\n'


def parse_kind(text: str) -> AnswerKind:
    """The kind named at the start of an LLM's output (ANY when it names none)."""
    word = text.strip().split(maxsplit=1)[0].lower() if text.strip() else ""
    try:
        return AnswerKind(word.strip(".,:;"))
    except ValueError:
        return AnswerKind.ANY


_YES_NO = {"yes", "no", "true", "false"}


def kind_of_value(value: Any) -> AnswerKind:
    """The kind of a result value (a program's output)."""
    if isinstance(value, bool):
        return AnswerKind.YESNO
    if isinstance(value, (int, float)):
        return AnswerKind.NUMBER
    if isinstance(value, Image):
        return AnswerKind.IMAGE
    if isinstance(value, (ObjectList, Object, PointList, Point)):
        return AnswerKind.OBJECTS
    if isinstance(value, str):
        clean = value.strip().lower().rstrip(".")
        if clean in _YES_NO:
            return AnswerKind.YESNO
        try:
            float(clean)
        except ValueError:
            return AnswerKind.TEXT
        return AnswerKind.NUMBER
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return AnswerKind.TEXT
    return AnswerKind.ANY


_SUMMARY_KINDS = {
    "Bool": AnswerKind.YESNO,
    "Number": AnswerKind.NUMBER,
    "TextList": AnswerKind.TEXT,
    "Image": AnswerKind.IMAGE,
    "ObjectList": AnswerKind.OBJECTS,
    "Object": AnswerKind.OBJECTS,
    "PointList": AnswerKind.OBJECTS,
    "Point": AnswerKind.OBJECTS,
}


def kind_of_summary(summary: dict[str, Any] | None) -> AnswerKind:
    """The kind of a value from its typed summary (a trace step's ``output``, see
    ``orchestrator.render.summarize``): what :func:`kind_of_value` says of the value."""
    if not summary:
        return AnswerKind.ANY
    if summary.get("type") == "Text":
        return kind_of_value(str(summary.get("text", "")))
    return kind_of_type(str(summary.get("type")))


def kind_of_type(type_name: str | None) -> AnswerKind:
    """The kind of a value from its type name as the checker knows it before a program runs
    ('Image', 'Number'...; 'Text' is TEXT, 'Any' and unknown names are ANY)."""
    if type_name == "Text":
        return AnswerKind.TEXT
    return _SUMMARY_KINDS.get(str(type_name), AnswerKind.ANY)


def example_kind(type_name: str | None, instruction: str) -> AnswerKind:
    """The kind of answer an example program gives: its result's type as the checker knows
    it; for a text or an untyped result (an Eval, a VLM's reply), its instruction's wording."""
    static = kind_of_type(type_name)
    if static in (AnswerKind.ANY, AnswerKind.TEXT):
        return kind_by_rules(instruction) or static
    return static


def matches(expected: AnswerKind, kind: AnswerKind) -> bool:
    """Whether an example giving ``kind`` shows the kind of answer ``expected`` (stricter
    than :func:`fits`: a count is not shown for a text question, nor a picture for objects)."""
    if expected is AnswerKind.ANY or kind is AnswerKind.ANY:
        return False
    return kind == expected or {kind, expected} <= {AnswerKind.TEXT, AnswerKind.LABEL}


_DESCRIPTIONS = {
    AnswerKind.YESNO: "a yes/no answer",
    AnswerKind.NUMBER: "a number",
    AnswerKind.TEXT: "a text answer",
    AnswerKind.LABEL: "a label (a name or category)",
    AnswerKind.IMAGE: "an image",
    AnswerKind.OBJECTS: "objects (boxes or masks)",
    AnswerKind.ANY: "anything",
}


def describe(kind: AnswerKind) -> str:
    """The kind in words, for the planner ("a yes/no answer")."""
    return _DESCRIPTIONS[kind]


# what a result of each kind can answer (beyond its own kind)
_ANSWERS: dict[AnswerKind, set[AnswerKind]] = {
    AnswerKind.YESNO: {AnswerKind.YESNO},
    AnswerKind.NUMBER: {AnswerKind.NUMBER, AnswerKind.TEXT, AnswerKind.LABEL},
    AnswerKind.TEXT: {AnswerKind.TEXT, AnswerKind.LABEL},
    AnswerKind.LABEL: {AnswerKind.LABEL, AnswerKind.TEXT},
    AnswerKind.IMAGE: {AnswerKind.IMAGE},
    # boxes found are not an edit: "put an emoji on her face" asks for the edited picture
    AnswerKind.OBJECTS: {AnswerKind.OBJECTS},
}


def fits(expected: AnswerKind, got: AnswerKind) -> bool:
    """Whether a result of kind ``got`` answers an instruction asking for ``expected``."""
    if expected is AnswerKind.ANY or got is AnswerKind.ANY:
        return True
    if expected is AnswerKind.OBJECTS:  # "find the dogs": boxes, or a picture of them
        return got in (AnswerKind.OBJECTS, AnswerKind.IMAGE)
    return expected in _ANSWERS[got]


def is_unsure(answer: str, phrases: list[str]) -> bool:
    """Whether a short text answer says the model could not tell ("unknown", "unclear")."""
    clean = _normal(answer)
    if not clean:
        return True
    wanted = [_normal(p) for p in phrases]
    return any(clean == p or (len(clean) < 60 and f" {p} " in f" {clean} ") for p in wanted)


def _normal(text: str) -> str:
    return " ".join(_UNSURE.sub(" ", text.lower()).split())


__all__ = [
    "AnswerKind",
    "describe",
    "example_kind",
    "fits",
    "is_unsure",
    "kind_by_rules",
    "kind_grammar",
    "kind_of_summary",
    "kind_of_type",
    "kind_of_value",
    "kind_prompt",
    "matches",
    "parse_kind",
]
