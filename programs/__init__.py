"""In-context example libraries and prompt templates, as data files.

``programs/library/<family>.yaml`` holds one task family's examples (instruction, program,
input names); ``programs/templates/*.txt`` the planner's prompt texts. This package only
loads them; the planner (orchestrator) decides how to use them, and a test parses and
checks every example against today's tool registry so the libraries cannot rot.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import yaml

LIBRARY = "library"
TEMPLATES = "templates"


@dataclass(frozen=True)
class Example:
    """One in-context example: an instruction and the program that answers it."""

    family: str
    instruction: str
    program: str
    inputs: tuple[str, ...]
    form: str = "lines"

    @property
    def text(self) -> str:
        return self.program.strip()


def _root() -> Path:
    return Path(str(resources.files(__package__)))


def families(*, form: str | None = None) -> list[str]:
    """Names of the example libraries (file stems), optionally only those of one form."""
    names = sorted(p.stem for p in (_root() / LIBRARY).glob("*.yaml"))
    if form is None:
        return names
    return [n for n in names if load_family(n) and load_family(n)[0].form == form]


@cache
def load_family(name: str) -> tuple[Example, ...]:
    """The examples of one family (``programs/library/<name>.yaml``)."""
    path = _root() / LIBRARY / f"{name}.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    inputs = tuple(data.get("inputs", ["IMAGE"]))
    form = data.get("form", "lines")
    return tuple(
        Example(
            family=data.get("family", name),
            instruction=str(item["instruction"]).strip(),
            program=str(item["program"]).strip() + "\n",
            inputs=tuple(item.get("inputs", inputs)),
            form=item.get("form", form),
        )
        for item in data["examples"]
    )


def load_library(*, form: str | None = None) -> list[Example]:
    """Every example of every family (of one program form, if given)."""
    out: list[Example] = []
    for name in families():
        out.extend(e for e in load_family(name) if form is None or e.form == form)
    return out


@cache
def template(name: str) -> str:
    """A prompt template (``programs/templates/<name>.txt``)."""
    return (_root() / TEMPLATES / f"{name}.txt").read_text(encoding="utf-8")


__all__ = ["Example", "families", "load_family", "load_library", "template"]
