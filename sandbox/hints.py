""" "Did you mean ...?" hints for the checkers, with bounded work.

A fuzzy match (:func:`difflib.get_close_matches`) costs about one string comparison per
candidate, so hinting every error of a program with thousands of near-miss names against
thousands of defined names is quadratic (minutes). One :class:`Hints` per check therefore
hints at most ``max_hints`` errors, each against at most ``max_candidates`` names (those
closest in length, latest first): the check stays linear in the program's size, and the
first errors — the ones a repair prompt shows — still get their hints.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Sequence
from dataclasses import dataclass

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
        close = self.close(name, candidates, n=n)
        if not close:
            return ""
        options = " or ".join(f"'{c}'" for c in close)
        return f"; did you mean {options}?"


def _nearest_in_length(name: str, candidates: Sequence[str], limit: int) -> Sequence[str]:
    if len(candidates) <= limit:
        return candidates
    size = len(name)
    order = sorted(range(len(candidates)), key=lambda i: (abs(len(candidates[i]) - size), -i))
    return [candidates[i] for i in order[:limit]]
