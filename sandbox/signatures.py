"""What the checker needs to know about tools, without importing them.

The sandbox never imports ``tools``; the checker receives a :class:`Catalog` (the tool
registry implements it) that describes tool signatures and the type rules between them.
Type names are plain strings ("Image", "ObjectList", "Text|Number", "Any", "Expression").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

ANY = "Any"
EXPRESSION = "Expression"


@dataclass(frozen=True, slots=True)
class ParamSpec:
    """One parameter of a tool, in declared order (positional arguments bind in this order)."""

    name: str
    type: str
    required: bool = True
    default: object = None
    description: str = ""
    aliases: tuple[str, ...] = ()  # other names a program may use (VisProg's ``box=``)

    @property
    def is_expression(self) -> bool:
        return EXPRESSION in self.type and EXPRESSION in self.type.split("|")


@dataclass(frozen=True, slots=True)
class Signature:
    """A tool as the checker sees it."""

    name: str
    params: tuple[ParamSpec, ...]
    output: str
    aliases: tuple[str, ...] = ()

    def param(self, name: str) -> ParamSpec | None:
        """The parameter called ``name``, or with it as an alias (case-insensitively)."""
        for p in self.params:
            if p.name == name:
                return p
        lowered = name.lower()
        for p in self.params:
            if p.name.lower() == lowered or lowered in (a.lower() for a in p.aliases):
                return p
        return None


class Catalog(Protocol):
    """The registry interface the checker depends on."""

    def signature(self, name: str) -> Signature | None:
        """Look a tool up by name or alias, case-insensitively."""

    def tool_names(self) -> Sequence[str]:
        """Every name and alias, for "did you mean" suggestions."""

    def assignable(self, source: str, target: str) -> bool:
        """Whether a value of type ``source`` may be passed where ``target`` is expected."""

    def literal_error(self, value: object, target: str) -> str | None:
        """Why a literal cannot be passed as ``target`` (None when it can)."""

    def item_type(self, target: str) -> str | None:
        """The element type when ``target`` is a list type (e.g. TextList -> Text)."""
