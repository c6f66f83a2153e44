"""The planner's decision after it saw an observation: ANSWER, CONTINUE or REWRITE.

What the LLM writes after the prompt's ``Decision:``::

    ANSWER                      accept the current result
    ANSWER NAME                 return the value NAME, already computed, as the answer (offered
                                when a check names values of the kind the instruction asks
                                for: the loop runs it as a one-line follow-up)
    CONTINUE                    then a follow-up program: it may read every variable already
                                computed (line programs name them; a Python follow-up takes
                                them as parameters)
    REWRITE                     then a fresh program

A decision is two LLM calls on one growing prompt, so the keyword and the program can
never run into each other:

1. The decision itself, decoded under :func:`decision_grammar` (GBNF: one of the keywords,
   and for ``ANSWER`` one of the offered names, nothing else — llama.cpp takes it as a
   ``LlamaGrammar``, a vLLM server as ``structured_outputs``), a few tokens at most.
   :func:`parse_decision` reads it back and raises a typed :class:`DecisionError` for
   anything else (an unconstrained server can write anything).
2. For CONTINUE and REWRITE, the program, written after :func:`program_cue` (CONTINUE) or
   after the planning prompt with what went wrong (REWRITE, ``AgentRun.rewrite_prompt``) under the
   program form's own grammar, stop strings and token cap, then checked and repaired like
   a first program (:meth:`orchestrator.planner.Planner.write`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sandbox import VisChainError

from .errors import RunErrorCode


class Action(StrEnum):
    ANSWER = "ANSWER"
    CONTINUE = "CONTINUE"
    REWRITE = "REWRITE"


class DecisionError(VisChainError):
    """The LLM's decision could not be read."""

    code = RunErrorCode.PLANNING


@dataclass(frozen=True)
class Decision:
    """What the planner decided, the computed value it returns (``ANSWER NAME``) and the
    raw text of its decision (the program it then writes is the next round's)."""

    action: Action
    raw: str = ""
    value: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"action": str(self.action), "raw": self.raw}
        return out if self.value is None else {**out, "value": self.value}


# the keyword alone: a word that merely starts with one (REWRITE_x, ANSWERS) is not it
_HEAD = re.compile(r"^\s*(?:decision\s*:\s*)?(ANSWER|CONTINUE|REWRITE)(?![A-Za-z0-9_])", re.I)
_NAME = re.compile(r"[ \t]+([A-Za-z_][A-Za-z0-9_]*)[ \t]*(?:\n|$)")


def parse_decision(text: str) -> Decision:
    """The decision an LLM wrote: its first word (any case) and, after ANSWER on the same
    line, the name of the value to return."""
    m = _HEAD.match(text)
    if m is None:
        raise DecisionError(
            f"the decision must start with ANSWER, CONTINUE or REWRITE, not {text[:60]!r}"
        )
    action = Action(m.group(1).upper())
    named = _NAME.match(text, m.end()) if action is Action.ANSWER else None
    return Decision(action, text, named.group(1) if named else None)


def decision_grammar(*, answer: bool = True, values: tuple[str, ...] = ()) -> str:
    """GBNF for a decision: the keyword alone; ``answer=False`` leaves ANSWER out (a round
    that produced no result has nothing to accept); ``values`` are the names ``ANSWER`` may
    be followed by (computed values of the kind asked for)."""
    words = ['"ANSWER"'] if answer else []
    if values:
        words.append('"ANSWER" (' + " | ".join(json.dumps(" " + v) for v in values) + ")")
    words += ['"CONTINUE"', '"REWRITE"']
    return "root ::= " + " | ".join(words) + "\n"


def program_cue(action: Action, lead: str = "") -> str:
    """What follows the decision prompt (which ends on the line of its answer) before
    the program is written: the keyword, ``lead`` (comment lines), then the ``Program:``
    cue of the examples."""
    return f"{action}\n{lead}Program:\n"


__all__ = [
    "Action",
    "Decision",
    "DecisionError",
    "decision_grammar",
    "parse_decision",
    "program_cue",
]
