"""Whether a program's detections are about what the instruction names.

A program can give the right kind of answer with tools that do not fit the task: "How many
wheels are in the photo?" answered by counting faces (``FaceDet`` → ``Count``) or every
segment of the picture (``Seg`` → ``Count``) is a number, but not the number of wheels. The
agent loop decides once, from the instruction's wording, which things it names
(:func:`named`: its content words, plural and possessive forms folded, each widened by its
synonym group — "her", "woman", "face" and "person" are one group by default), and judges
every **source detection** of a program — a step that finds objects from the picture alone,
not from objects another step found:

- a detector told what to find (a Loc/Point ``object``, a Select ``query``): its query must
  share a word with the instruction;
- a detector that finds one fixed thing (``FaceDet``: faces, ``agent.checks.fit_subjects``):
  that thing must be named; one listed with no subject (``Seg`` without boxes: every
  region) is never about what the instruction names by itself.

A detection that fails is still fine when a step that uses it (directly or further on) is
told something the instruction names (``Loc('motorcycle')`` → ``Crop`` → ``Vqa('how many
wheels?')``), or a step that picks among its objects is (``Seg`` → ``Select('sky')``; a
query's objects refined by a ``Classify`` told the names). Not every step that reads the
objects counts: one that acts on them without returning objects (an edit, a count, a crop)
is told what it does there — ``Replace(prompt='small dog')`` puts a dog where the objects
are, it does not find one — and a step that picks among a fixed detector's objects still
returns that detector's things (``FaceDet`` → ``Select('cat')`` picks among faces: no
cat) — unless it is told a name the instruction gives a particular one
(:func:`proper_names`: "Tag Sheldon and Leonard" → ``FaceDet`` → ``Classify(['Sheldon',
'Leonard'])`` picks the faces of the people named). What is not named anywhere is the
finding: :func:`unfit` returns it for the
``tool-fit`` check, on a program's text before it runs (:func:`program_steps`) and on a
round's step records after (:func:`record_steps`). The wording decides alone: an instruction
that names nothing the rules can read (only stop words) is not judged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sandbox import Catalog, Const
from sandbox.ir import value_names

# words that name nothing a detector could find (question words, verbs of asking, the
# picture itself); compared after plural folding
_STOP = frozenset(
    """a an the this that these those there it its is are was were be been am do does
    did has have had can could will would should may might must shall of in on at to from
    by with without for over under into onto out up down off about above below behind near
    and or but not no yes if then than so as all any each every some many much more most
    how what which who whom whose where when why whether please show tell me my you your
    i we our us photo picture image pic photograph scene view frame see seen visible find
    locate detect get give count number amount put make let one two three four five six
    seven eight nine ten both other another only just also very same kind type like left
    right top bottom middle side front back""".split()
)
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
_OBJECT_TYPES = frozenset({"ObjectList", "Object", "PointList", "Point"})
# argument types whose summaries are what a step is told (None: an expression's text, or a
# trace written before records kept types); an image or objects passed by value (a Python
# program's calls) are not
_TEXT_TYPES = frozenset({"Text", "TextList", "List", None})
_HALVES = frozenset({"top", "bottom", "left", "right"})  # Loc's halves of the picture


def fold(word: str) -> str:
    """A word's stem without its possessive and plural ending, the same for both forms:
    "wheels" and "wheel" → "wheel", "horses" and "horse" → "hors", "boxes" and "box" →
    "box", "ladies" and "lady" → "lady", "knives" and "knife" → "knif" (a final "e" goes
    too, so "-es" plurals meet)."""
    word = word.lower().removesuffix("'s").removesuffix("'")
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith("ves"):  # knives, leaves, halves
        return word[:-3] + "f"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    return word[:-1] if len(word) > 3 and word.endswith("e") else word


_STOP_STEMS = frozenset(fold(w) for w in _STOP)


def words(text: str) -> frozenset[str]:
    """The content words of a text, folded (stop words left out)."""
    out = {fold(w) for w in _WORD.findall(text.lower())}
    return frozenset(w for w in out if len(w) > 1 and w not in _STOP_STEMS)


def content(text: str) -> tuple[str, ...]:
    """The content words of a text as written, in order, each once (for messages)."""
    seen: dict[str, str] = {}
    for w in _WORD.findall(text.lower()):
        stem = fold(w)
        if len(stem) > 1 and stem not in _STOP_STEMS:
            seen.setdefault(stem, w)
    return tuple(seen.values())


def proper_names(instruction: str) -> frozenset[str]:
    """The words an instruction capitalises after its first (folded): the names it gives
    particular things — people above all ("Sheldon", "Leonard"), whom a fixed detector's
    objects (faces) may be picked by."""
    found = re.findall(r"[A-Za-z]+(?:'[A-Za-z]+)?", instruction)[1:]
    return frozenset(w for w in (fold(t) for t in found if t[0].isupper()) if w not in _STOP_STEMS)


def named(instruction: str, synonyms: Iterable[Iterable[str]] = ()) -> frozenset[str]:
    """What an instruction names: its content words, each widened by its synonym group."""
    return _widen(words(instruction), synonyms)


def _widen(found: frozenset[str], synonyms: Iterable[Iterable[str]]) -> frozenset[str]:
    out = set(found)
    for group in synonyms:
        folded = {fold(w) for w in group}
        if folded & found:
            out |= folded
    return frozenset(out)


@dataclass(frozen=True)
class FitStep:
    """What the check reads of one step: its name, line and tool, the texts it is told (a
    query, a question: constants, not values of other steps), the steps whose values it
    reads, and whether it returns objects."""

    name: str
    line: int
    tool: str | None
    texts: tuple[str, ...]
    deps: tuple[str, ...]
    finds: bool


@dataclass(frozen=True)
class Unfit:
    """A source detection that nothing the result depends on ties to the instruction."""

    step: FitStep
    what: str  # what it finds, in words ("face or person", "every region", "'cup'")

    def message(self, names: Sequence[str] = ()) -> str:
        """The finding for the planner; ``names``: the instruction's words (:func:`content`)."""
        wanted = f" ({', '.join(names)})" if names else ""
        return (
            f"{self.step.tool} finds {self.what} for {self.step.name} (line {self.step.line}), "
            f"not what the instruction names{wanted}, and no step that uses it is told what "
            "that is: find it by name"
        )


def unfit(
    about: frozenset[str],
    steps: Sequence[FitStep],
    *,
    subjects: Mapping[str, Sequence[str]],
    synonyms: Iterable[Iterable[str]] = (),
    queries: bool = True,
    proper: frozenset[str] = frozenset(),
) -> list[Unfit]:
    """The source detections of ``steps`` that do not fit an instruction naming ``about``
    (see the module docstring); ``subjects``: what each fixed detector finds; ``queries``
    False leaves detectors told what to find unjudged (a follow-up that re-phrases an
    object a detection did not find: "plate" for "saucer"); ``proper``: the instruction's
    :func:`proper_names`."""
    if not about:
        return []
    synonyms = [tuple(g) for g in synonyms]
    by_name = {s.name: s for s in steps}
    users: dict[str, list[FitStep]] = {}
    for s in steps:
        for d in s.deps:
            users.setdefault(d, []).append(s)

    def fits(texts: Iterable[str]) -> bool:
        return any(_widen(words(t), synonyms) & about for t in texts)

    def told_later(name: str, fixed: bool) -> bool:
        chain: list[FitStep] = []  # the steps that use it, directly or further on
        inside = {name}
        todo = [name]
        while todo:
            for u in users.get(todo.pop(), []):
                if u.name not in inside:
                    inside.add(u.name)
                    chain.append(u)
                    todo.append(u.name)
        for u in chain:
            told = [*u.texts]  # and what it reads from a step that is no detection
            for d in u.deps:
                if d in by_name and d not in inside and not by_name[d].finds:
                    told += by_name[d].texts
            read = [by_name[d] for d in u.deps if d in inside]
            if all(d.finds and (not u.finds or fixed) for d in read):
                # it acts on the objects (an edit's text is what it puts there), or picks
                # among a fixed detector's finds (they stay faces) — by a name the
                # instruction gives a particular one, it picks the one named
                if u.finds and fixed and any(words(t) & proper for t in told):
                    return True
                continue
            if fits(told):
                return True
        return False

    out = []
    for s in steps:
        if (
            not s.finds
            or s.tool is None
            or any(by_name.get(d, s).finds for d in s.deps if d in by_name)
        ):
            continue  # not a detection, or it refines objects another step found
        subject: list[str] = []
        if s.texts:
            query = [t for t in s.texts if t.strip().lower() not in _HALVES]
            if not queries or not query or fits(query):
                continue
            what = ", ".join(repr(t) for t in query)
        elif s.tool in subjects:
            subject = list(subjects[s.tool])
            if subject and fits(subject):
                continue
            what = " or ".join(subject) if subject else "every region (it is not told what)"
        else:
            continue  # a detector of its own kind (text lines...): not judged
        if not told_later(s.name, fixed=bool(subject)):
            out.append(Unfit(s, what))
    return out


def record_steps(records: Sequence[Any]) -> list[FitStep]:
    """:class:`FitStep` of a round's trace step records (the texts: arguments that are no
    other step's value; a step that returns objects: by its output's type)."""
    out = []
    for r in records:
        texts = tuple(
            t
            for a in getattr(r, "args", None) or []
            if a.source is None and getattr(a, "type", None) in _TEXT_TYPES
            for t in _summary_texts(str(a.summary))
        )
        kind = (r.output or {}).get("type") if r.output else None
        out.append(
            FitStep(r.step, r.line, r.tool, texts, tuple(r.deps or ()), kind in _OBJECT_TYPES)
        )
    return out


def program_steps(program: Any, catalog: Catalog) -> list[FitStep]:
    """:class:`FitStep` of a line program before it runs (``catalog``: the tools, looked up
    by name or alias as the checker does); a program form without steps gives none."""
    out = []
    for s in getattr(program, "steps", ()):
        texts = tuple(
            t for a in s.args if isinstance(a.value, Const) for t in _strings(a.value.value)
        )
        deps = tuple(sorted(n for a in s.args for n in value_names(a.value)))
        sig = catalog.signature(s.tool) if s.tool else None
        tool, output = (sig.name, sig.output) if sig is not None else (s.tool, "")
        out.append(FitStep(s.target, s.line, tool, texts, deps, output in _OBJECT_TYPES))
    return out


def _strings(value: Any) -> list[str]:
    """The texts in a constant: itself, or the texts of a list (Classify's categories)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [v for v in value if isinstance(v, str)]
    return []


_QUOTED = re.compile(r"'([^']*)'|\"([^\"]*)\"")


def _summary_texts(summary: str) -> list[str]:
    """The texts in an argument's summary: a text, or the quoted items of a list's."""
    clean = summary.strip()
    if clean.startswith(("[", "(")):
        return [a or b for a, b in _QUOTED.findall(clean)]
    return [clean.strip("'\" ")] if _is_text(clean) else []


def _is_text(summary: str) -> bool:
    """Whether an argument's summary is a text (not a number, a yes/no, a list or empty)."""
    clean = summary.strip().strip("'\"")
    if not clean or clean[0] in "[({" or clean.lower() in ("true", "false", "none", "yes", "no"):
        return False
    try:
        float(clean)
    except ValueError:
        return True
    return False


__all__ = [
    "FitStep",
    "Unfit",
    "content",
    "fold",
    "named",
    "program_steps",
    "record_steps",
    "unfit",
    "words",
]
