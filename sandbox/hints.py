""" "Did you mean ...?" hints for the checkers, with bounded work, and their fix-its.

A fuzzy match (:func:`difflib.get_close_matches`) costs about one string comparison per
candidate, so hinting every error of a program with thousands of near-miss names against
thousands of defined names is quadratic (minutes). One :class:`Hints` per check therefore
hints at most ``max_hints`` errors, each against at most ``max_candidates`` names (those
closest in length, latest first): the check stays linear in the program's size, and the
first errors — the ones a repair prompt shows — still get their hints.

A hint with exactly one name is a fix-it (:attr:`ProgramError.fix`): :func:`apply_fixes`
writes that name in place of the wrong one, so a planner can try the fixed program before
asking an LLM (a small one tends to copy its program unchanged into a "repair").
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from .errors import ErrorCode, ProgramError

MAX_HINTS = 20
MAX_CANDIDATES = 500


@dataclass
class Hints:
    """Hints for one check; ``given`` counts those computed so far."""

    max_hints: int = MAX_HINTS
    max_candidates: int = MAX_CANDIDATES
    given: int = 0

    def close(self, name: str, candidates: Collection[str], *, n: int = 3) -> list[str]:
        """Up to ``n`` candidates close to ``name`` (case-insensitive), best first; none
        once this check has used its hints."""
        if self.given >= self.max_hints or not candidates:
            return []
        self.given += 1
        pool = _nearest_in_length(name, list(candidates), self.max_candidates)
        lowered: dict[str, str] = {}
        for c in pool:
            lowered.setdefault(c.lower(), c)
        found = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.6)
        return [lowered[c] for c in found]

    def phrase(self, name: str, candidates: Collection[str], *, n: int = 3) -> str:
        """``"; did you mean 'A' or 'B'?"``, or an empty string."""
        return phrase_of(self.close(name, candidates, n=n))

    def suggest(
        self, name: str, candidates: Collection[str], *, n: int = 3
    ) -> tuple[str, tuple[str, str] | None]:
        """The hint's phrase and, when exactly one name is close, the fix-it ``(name,
        that one)``."""
        close = self.close(name, candidates, n=n)
        return phrase_of(close), (name, close[0]) if len(close) == 1 else None


def phrase_of(close: Sequence[str]) -> str:
    """``"; did you mean 'A' or 'B'?"`` for the close names, or an empty string."""
    if not close:
        return ""
    options = " or ".join(f"'{c}'" for c in close)
    return f"; did you mean {options}?"


def apply_fixes(source: str, errors: Sequence[ProgramError]) -> str | None:
    """``source`` with every error's fix-it applied — on the error's line, the first whole
    word (not inside quotes) equal to the wrong name, at or after its column, becomes the
    suggested one — or None when no fix-it applies. Later columns of a line go first, so
    earlier ones stay where they were. A redefinition's fix-it renames the step it names
    and the uses after it, up to the next step that assigns the name again (which its
    own fix-it renames in turn). A repeated step's fix-it (``repeated-step``) removes the
    step, and its uses up to the next step that assigns its name read the value named."""
    lines = source.split("\n")
    changed = False
    dropped: set[int] = set()  # the lines of repeated steps, removed once all are fixed
    for error in sorted(errors, key=lambda e: (e.line, -e.col)):
        if error.fix is None or not 1 <= error.line <= len(lines):
            continue
        wrong, right = error.fix
        word = re.compile(rf"(?<![\w'\"]){re.escape(wrong)}(?![\w'\"])")
        if error.code is ErrorCode.REDEFINED:
            changed |= _rename_from(lines, error.line, wrong, right, word)
            continue
        if error.code is ErrorCode.REPEATED_STEP:
            if _rename_from(lines, error.line, wrong, right, word):
                dropped.add(error.line)
                changed = True
            continue
        text = lines[error.line - 1]
        m = word.search(text, max(error.col - 1, 0)) or word.search(text)
        if m is None:
            continue
        lines[error.line - 1] = text[: m.start()] + right + text[m.end() :]
        changed = True
    if not changed:
        return None
    return "\n".join(line for i, line in enumerate(lines, 1) if i not in dropped)


def _nearest_in_length(name: str, candidates: Sequence[str], limit: int) -> Sequence[str]:
    if len(candidates) <= limit:
        return candidates
    size = len(name)
    order = sorted(range(len(candidates)), key=lambda i: (abs(len(candidates[i]) - size), -i))
    return [candidates[i] for i in order[:limit]]


_TARGET = re.compile(r"\s*([A-Za-z_]\w*)\s*=(?!=)")


def _rename_from(
    lines: list[str], number: int, wrong: str, right: str, word: re.Pattern[str]
) -> bool:
    """Rename the step on line ``number`` that assigns ``wrong`` again, and every use of
    ``wrong`` after it up to (and in the value of) the next step that assigns it."""
    head = _TARGET.match(lines[number - 1])
    if head is None or head.group(1) != wrong:
        return False
    text = lines[number - 1]
    lines[number - 1] = text[: head.start(1)] + right + text[head.end(1) :]
    for i in range(number, len(lines)):
        target = _TARGET.match(lines[i])
        start = target.end() if target else 0
        lines[i] = lines[i][:start] + word.sub(right, lines[i][start:])
        if target is not None and target.group(1) == wrong:
            break
    return True
