"""How free-text model answers turn into booleans and numbers, and back into text.

VisProg users write ``Eval("{ANSWER0} + {ANSWER1} == 6")`` over VQA answers such as ``"2"``
or ``"Yes."``; these helpers give those answers the meaning the user intended.
"""

from __future__ import annotations

import math
import re
from enum import StrEnum

_YES = {"yes", "true", "y", "yeah", "yep", "correct", "right"}
_NO = {"no", "false", "n", "nope", "incorrect", "wrong"}
_WORDS = {
    "zero": 0, "none": 0, "one": 1, "two": 2, "three": 3,
    "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11,
    "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20,
}  # fmt: skip
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d{1,3})?$")
_MAX_NUMBER_CHARS = 64


def normalize_answer(text: str) -> str:
    """Lower-case, trim, drop trailing punctuation and a leading article: ``"Yes." -> "yes"``."""
    t = text.strip().lower()
    t = re.sub(r"[\s.!?,;:]+$", "", t)
    t = re.sub(r"^(the|a|an)\s+", "", t)
    return t


def as_bool(value: object) -> bool | None:
    """``True``/``False`` for yes/no-like answers (and booleans), else None."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        t = normalize_answer(value)
        if t in _YES:
            return True
        if t in _NO:
            return False
    return None


def as_number(value: object) -> int | float | None:
    """A number for numeric answers (``"2"``, ``" 3.5 "``, ``"two"``), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if not isinstance(value, str) or len(value) > _MAX_NUMBER_CHARS:
        return None
    t = normalize_answer(value).replace(",", "")
    if t in _WORDS:
        return _WORDS[t]
    if _NUMBER.match(t):
        if "." not in t and "e" not in t:  # a whole number: exact, however many digits
            return int(t)
        number = float(t)
        return number if math.isfinite(number) else None
    return None


def to_text(value: object) -> str:
    """Text for a value: booleans become yes/no, whole floats lose their ``.0``."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if value is None:
        return "none"
    return str(value)


def normalize_for_eval(text: str) -> str:
    """Canonical short answer: yes/no for boolean answers, digits for numbers, else trimmed."""
    b = as_bool(text)
    if b is not None:
        return "yes" if b else "no"
    n = as_number(text)
    if n is not None:
        return to_text(n)
    return text.strip()


_FIRST_NUMBER = re.compile(
    r"\b(\d+(?:\.\d+)?|" + "|".join(sorted(_WORDS, key=len, reverse=True)) + r")\b", re.I
)


class QuestionKind(StrEnum):
    """What a question about a picture asks for, as far as its wording tells."""

    YESNO = "yesno"  # "Is it daytime?"
    NUMBER = "number"  # "How many boats are there?"
    LABEL = "label"  # "What colour is the car?", "Is it a cat or a dog?"
    TEXT = "text"  # anything longer: "Why...", "Describe...", "What does the sign say?"


_AUXILIARY = frozenset(
    "is are am was were do does did can could has have had will would should shall may might "
    "must isn't aren't wasn't weren't don't doesn't didn't can't couldn't hasn't haven't".split()
)
_COUNTING = re.compile(  # group "whole": a count of things, the rest: a measurement or a sum
    r"^(?:(?P<whole>how many|count|what (?:is|'s) the (?:number|count))|"
    r"how (?:much|old|far|tall|long|big|wide|heavy|high)|what (?:is|'s) the (?:total|sum|age))\b"
)
_NUMBER_OF = re.compile(r"\bnumber of\b")
_ALTERNATIVES = re.compile(r"\bor\b(?! not\b)")
_NAMING = re.compile(r"^(what|which|who|where|whose)\b")
_LONG = re.compile(
    r"\b(say|says|said|read|reads|written|write|text|title|caption|describe|description|"
    r"spell|spelled|word|words|sign|transcribe|why|how come|explain)\b"
)
_TELLING = frozenset({"describe", "explain", "read", "transcribe", "why"})
_WORD = re.compile(r"[a-z']+")


def _wording(text: str) -> tuple[str, str] | None:
    """A question lowered, without a leading "please", and its first word; None when it
    has no words."""
    lowered = text.strip().lower()
    words = _WORD.findall(lowered)
    if not words:
        return None
    if words[0] == "please" and len(words) > 1:
        lowered = lowered[lowered.index("please") + len("please") :].lstrip(" ,")
        words = words[1:]
    return lowered, words[0]


def asked_kind(text: str) -> QuestionKind | None:
    """The kind of answer a question's wording asks for, or None when it does not say
    (an edit or a statement):

    - a count: "how many/much/old/far…", "count…", "what is the number/total of…", or "the
      number of" after a word other than an auxiliary verb;
    - yes/no: an auxiliary verb first ("Is…", "Does…", "Can…"), unless it offers
      alternatives with "or" ("Is it a cat or a dog?": a label) — "or not" stays yes/no;
    - text: what/which/who/where with a word about reading, writing or explaining ("What
      does the sign say?"), or "Describe/Explain/Read/Transcribe/Why…";
    - a label: any other what/which/who/where question ("What colour is the car?").

    A leading "please" is skipped; case and surrounding space do not matter."""
    wording = _wording(text)
    if wording is None:
        return None
    lowered, first = wording
    if _COUNTING.match(lowered):
        return QuestionKind.NUMBER
    if first in _AUXILIARY:
        return QuestionKind.LABEL if _ALTERNATIVES.search(lowered) else QuestionKind.YESNO
    if _NUMBER_OF.search(lowered):
        return QuestionKind.NUMBER
    if _NAMING.match(lowered):
        return QuestionKind.TEXT if _LONG.search(lowered) else QuestionKind.LABEL
    if first in _TELLING:
        return QuestionKind.TEXT
    return None


def asks_count(question: str) -> bool:
    """Whether a question asks for a count — a whole number: "how many…", "count…", "what
    is the number/count of…", or "the number of" in a question :func:`asked_kind` takes
    for a number ("Is the number of cats two?" asks yes or no). A measurement or a sum,
    "how far/tall/old…", "what is the total…", may have a decimal part."""
    wording = _wording(question)
    if wording is None:
        return False
    lowered, first = wording
    counting = _COUNTING.match(lowered)
    if counting and counting.group("whole"):
        return True
    return first not in _AUXILIARY and bool(_NUMBER_OF.search(lowered))


def question_kind(question: str) -> QuestionKind:
    """The kind of answer a question asks for (:func:`asked_kind`), text when its wording
    does not say."""
    return asked_kind(question) or QuestionKind.TEXT


def short_answer(raw: str, question: str = "") -> str:
    """A model's free-text answer reduced to what Eval expects: ``yes``/``no`` when it starts
    with one, a number for "how many" questions, else its first sentence without the
    trailing period."""
    text = raw.strip().strip('"').strip()
    first = re.split(r"(?<=[.!?])\s|\n", text, maxsplit=1)[0].strip()
    head = re.split(r"[\s,.!;:]+", first.lower(), maxsplit=1)[0] if first else ""
    b = as_bool(head)
    if b is not None:
        return "yes" if b else "no"
    if question_kind(question) is QuestionKind.NUMBER:
        m = _FIRST_NUMBER.search(first)
        if m:
            n = as_number(m.group(1))
            if n is not None:
                return to_text(n)
    return re.sub(r"[.!]+$", "", first).strip()
