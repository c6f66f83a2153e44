"""The tool registry: names and aliases to tools, the checker's catalog, and plug-ins.

Plug-ins are discovered from the entry-point group ``vischain.tools``; an entry point may
name a Tool instance (e.g. a ``@tool`` function), a Tool subclass, or a list of either.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from importlib.metadata import entry_points
from typing import Any

from sandbox import Signature

from . import types as vt
from .base import Tool

log = logging.getLogger("vischain.tools")
ENTRY_POINT_GROUP = "vischain.tools"


class Registry:
    """Tools by name; implements :class:`sandbox.Catalog` for the checker."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        self._lookup: dict[str, str] = {}  # lower-case name or alias -> canonical name
        self.plugin_errors: dict[str, str] = {}
        for t in tools:
            self.add(t)

    # --- building --------------------------------------------------------------------------

    def add(self, item: Tool | type[Tool], *, replace: bool = False) -> Tool:
        made = item() if isinstance(item, type) else item
        if not isinstance(made, Tool):
            raise TypeError(f"not a tool: {item!r}")
        names = [made.spec.name, *made.spec.aliases]
        for n in names:
            owner = self._lookup.get(n.lower())
            if owner is not None and owner != made.spec.name and not replace:
                raise ValueError(f"tool name '{n}' is already used by {owner}")
        if made.spec.name in self._tools:
            if not replace:
                raise ValueError(f"tool '{made.spec.name}' is already registered")
            self.remove(made.spec.name)
        self._tools[made.spec.name] = made
        for n in names:
            self._lookup[n.lower()] = made.spec.name
        return made

    def remove(self, name: str) -> None:
        canonical = self._lookup.get(name.lower(), name)
        self._tools.pop(canonical, None)
        self._lookup = {k: v for k, v in self._lookup.items() if v != canonical}

    def subset(self, names: Iterable[str]) -> Registry:
        """A registry with only the named tools (e.g. those that can run on this machine)."""
        wanted = {self._lookup.get(n.lower(), n) for n in names}
        sub = Registry(t for n, t in self._tools.items() if n in wanted)
        sub.plugin_errors = dict(self.plugin_errors)
        return sub

    def load_plugins(self, group: str = ENTRY_POINT_GROUP) -> list[str]:
        """Add the tools that installed packages advertise; return the names added. A broken
        plug-in is logged and recorded in ``plugin_errors``; it never breaks the others."""
        added: list[str] = []
        for ep in entry_points(group=group):
            try:
                loaded = ep.load()
                items = loaded if isinstance(loaded, (list, tuple)) else [loaded]
                for item in items:
                    added.append(self.add(item).spec.name)
            except Exception as exc:
                self.plugin_errors[ep.name] = f"{type(exc).__name__}: {exc}"
                log.warning("tool plug-in %s (%s) failed to load: %s", ep.name, ep.value, exc)
        return added

    # --- lookup ----------------------------------------------------------------------------

    def get(self, name: str) -> Tool:
        canonical = self._lookup.get(name.lower())
        if canonical is None:
            raise KeyError(name)
        return self._tools[canonical]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._lookup

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    def docs(self, *, examples: int = 1) -> str:
        """Documentation of every tool, for the planner's prompt."""
        return "\n\n".join(t.spec.doc(examples=examples) for t in self._tools.values())

    # --- sandbox.Catalog -----------------------------------------------------------------------

    def signature(self, name: str) -> Signature | None:
        canonical = self._lookup.get(name.lower())
        return None if canonical is None else self._tools[canonical].spec.signature()

    def tool_names(self) -> Sequence[str]:
        out: list[str] = []
        for t in self._tools.values():
            out.append(t.spec.name)
            out.extend(t.spec.aliases)
        return out

    def assignable(self, source: str, target: str) -> bool:
        return vt.assignable(source, target)

    def taking(self, type_name: str, *, required: bool = False) -> list[str]:
        """The tools (by name, in registry order) with a parameter that takes a value of
        ``type_name`` (``required``: a required one)."""
        return [
            t.spec.name for t in self._tools.values()
            if any((p.required or not required) and vt.assignable(type_name, p.type)
                   for p in t.spec.params)
        ]  # fmt: skip

    def literal_error(self, value: Any, target: str) -> str | None:
        return vt.literal_error(value, target)

    def item_type(self, target: str) -> str | None:
        return vt.item_type(target)
