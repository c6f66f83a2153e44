"""The planner's decision after it saw an observation: ANSWER, CONTINUE or REWRITE.

Format (what the LLM writes after the prompt's ``Decision:``)::

    ANSWER                      accept the current result
    ANSWER NAME                 return the value NAME, already computed, as the answer (offered
                                when a check names values of the kind the instruction asks
                                for: the loop runs it as a one-line follow-up)
    CONTINUE                    a follow-up program on the next lines: it may read every
    <program>                   variable already computed (line programs name them; a
                                Python follow-up takes them as parameters)
    REWRITE                     a fresh program on the next lines
    <program>

Decoding is constrained: :func:`decision_grammar` wraps the line-program grammar (GBNF, so
llama.cpp takes it as a ``LlamaGrammar`` and a vLLM server as ``structured_outputs``) with
the three keywords (and the names ``ANSWER`` may take); for Python programs it fixes the
keyword and the ``def execute_command(`` head. :func:`parse_decision` reads the output
back and raises a typed :class:`DecisionError` for anything else (an unconstrained server
can write anything).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sandbox import VisChainError

from .errors import RunErrorCode
from .forms import get_form


class Action(StrEnum):
    ANSWER = "ANSWER"
    CONTINUE = "CONTINUE"
    REWRITE = "REWRITE"


class DecisionError(VisChainError):
    """The LLM's decision could not be read."""

    code = RunErrorCode.PLANNING


@dataclass(frozen=True)
class Decision:
    """What the planner decided, the program it wrote (CONTINUE/REWRITE), the computed
    value it returns (``ANSWER NAME``) and its raw text."""

    action: Action
    program: str | None = None
    raw: str = ""
    value: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"action": str(self.action), "program": self.program, "raw": self.raw}
        return out if self.value is None else {**out, "value": self.value}


_HEAD = re.compile(r"^\s*(?:decision\s*:\s*)?(ANSWER|CONTINUE|REWRITE)\b[ \t:]*\n?", re.I)
_NAME = re.compile(r"[ \t]*([A-Za-z_][A-Za-z0-9_]*)[ \t]*(?:\n|$)")


def parse_decision(text: str, extract: Any) -> Decision:
    """Read an LLM's decision; ``extract`` pulls the program out of the text after the
    keyword (the form's extractor: line steps, or the ``def execute_command`` block)."""
    m = _HEAD.match(text)
    if m is None:
        raise DecisionError(
            f"the decision must start with ANSWER, CONTINUE or REWRITE, not {text[:60]!r}"
        )
    action = Action(m.group(1).upper())
    if action is Action.ANSWER:
        named = _NAME.match(text, m.end()) if not m.group(0).endswith("\n") else None
        return Decision(action, None, text, named.group(1) if named else None)
    program = extract(text[m.end() :])
    if not program.strip():
        raise DecisionError(f"{action} must be followed by a program")
    return Decision(action, program, text)


def _renamed(gbnf: str, old: str, new: str) -> str:
    """Rename a GBNF rule (its definition and every reference to it)."""
    return re.sub(rf"(?<![A-Za-z0-9-]){re.escape(old)}(?![A-Za-z0-9-])", new, gbnf)


def decision_grammar(
    program_grammar: str | None,
    form: str,
    *,
    answer: bool = True,
    values: tuple[str, ...] = (),
) -> str:
    """GBNF for a decision: the keyword, then (CONTINUE/REWRITE) a program of the registered
    form ``form`` — under ``program_grammar`` (the line grammar) when there is one, else
    any text after the form's fixed ``opening``. ``answer=False`` leaves ANSWER out (a round
    that produced no result has nothing to accept); ``values`` are the names ``ANSWER`` may
    be followed by (computed values of the kind asked for)."""
    if program_grammar is not None:
        body = _renamed(program_grammar, "root", "program")
    else:
        opening = get_form(form).opening
        body = f"program ::= {json.dumps(opening) + ' ' if opening else ''}[^\\x00]*\n"
    named = " | ".join(json.dumps(" " + v) for v in values)
    accept = '"ANSWER" "\\n"? | ' if answer else ""
    if named:
        accept += f'"ANSWER" ({named}) "\\n"? | '

    root = f'root ::= {accept}"CONTINUE\\n" program | "REWRITE\\n" program\n'
    return root + body


__all__ = ["Action", "Decision", "DecisionError", "decision_grammar", "parse_decision"]
