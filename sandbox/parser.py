"""``parse``: program text to IR, for either program form.

Line programs (``NAME=Tool(...)``) go to :mod:`sandbox.lines`; a program that defines
``def execute_command(...)`` is the ViperGPT-style Python form.
"""

from __future__ import annotations

import re

from .errors import ErrorCode, ProgramError, ProgramInvalid
from .ir import Program
from .limits import BYTE_ORDER_MARK, Limits
from .lines import parse_lines
from .python import PythonProgram, parse_python

FORMS = ("lines", "python")
_PYTHON = re.compile(r"^\s*def\s+execute_command\s*\(", re.M)


def detect_form(text: str) -> str:
    """'python' when the text defines ``execute_command``, else 'lines'."""
    return "python" if _PYTHON.search(text.removeprefix(BYTE_ORDER_MARK)) else "lines"


def parse(
    text: str, *, form: str = "auto", limits: Limits | None = None
) -> Program | PythonProgram:
    """Parse ``text`` (form 'auto', 'lines' or 'python'); raise ProgramInvalid on errors."""
    if form == "auto":
        form = detect_form(text) if isinstance(text, str) else "lines"
    if form == "lines":
        return parse_lines(text, limits=limits)
    if form == "python":
        return parse_python(text, limits=limits)
    raise ProgramInvalid(
        [ProgramError(ErrorCode.SYNTAX, f"unknown program form '{form}' (use one of {FORMS})", 1)]
    )
