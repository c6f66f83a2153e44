"""Saying what cannot be done here: tools that exist but whose models are missing.

The agent loop tells the planner which tools exist but cannot run on this machine, and why;
a program that needs one ends the run at once with a :class:`CapabilityError` naming the
tool, the model role it needs, why that role is unavailable and how to get it — the same
lines ``vischain models`` prints for the role.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sandbox import VisChainError
from tools.registry import Registry

from .errors import RunErrorCode


class CapabilityError(VisChainError):
    """The instruction needs a tool that cannot run here (its model role is unavailable)."""

    code = RunErrorCode.CAPABILITY

    def __init__(
        self,
        tool: str,
        role: str | None,
        reason: str,
        fix: str,
        *,
        line: int | None = None,
        step: str | None = None,
    ) -> None:
        needs = f"it needs the '{role}' model, which is unavailable: " if role else ""
        super().__init__(
            f"{tool} cannot run on this machine: {needs}{reason}. {fix}", line=line, step=step
        )
        self.tool = tool
        self.role = role
        self.reason = reason
        self.fix = fix

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), "tool": self.tool, "role": self.role, "fix": self.fix}


def role_help(pool: Any, role: str) -> list[str]:
    """What ``vischain models`` prints for an unavailable role: why, and the candidates
    that would serve it."""
    _, reason = pool.resolve(role)
    lines = [f"unavailable: {reason}"]
    lines += [f"candidate {c.label()}" for c in pool.candidates(role)]
    return lines


def fix_text(role: str | None) -> str:
    if role is None:
        return "Run `vischain tools` to see what it needs."
    return (
        f"Install or configure a '{role}' model (models.roles.{role} in the config, or "
        f"models.profile: full with its weights present); `vischain models` lists the "
        "candidates and what each needs."
    )


def missing_role(tool: Any, pool: Any) -> tuple[str | None, str]:
    """The first model role ``tool`` needs that the pool cannot serve, and why."""
    for role in getattr(tool, "requires", ()):
        reason = pool.unavailable(role)
        if reason:
            return role, reason
    return None, "it cannot run here"


def capability_error(
    name: str, registry: Registry, pool: Any, *, line: int | None = None, step: str | None = None
) -> CapabilityError:
    """The capability error for tool ``name`` (any spelling the registry accepts)."""
    tool = registry.get(name)
    role, reason = missing_role(tool, pool)
    return CapabilityError(tool.spec.name, role, reason, fix_text(role), line=line, step=step)


def unavailable_tools(registry: Registry, status: Mapping[str, str | None]) -> dict[str, str]:
    """Tool name → why it cannot run (only the tools that cannot)."""
    return {t.spec.name: status[t.spec.name] or "" for t in registry if status.get(t.spec.name)}


def needed_unavailable(
    used: Iterable[str], registry: Registry, unavailable: Mapping[str, str]
) -> list[str]:
    """The canonical names of the tools in ``used`` that exist but cannot run here."""
    found = []
    for name in used:
        if name in registry:
            canonical = registry.get(name).spec.name
            if canonical in unavailable and canonical not in found:
                found.append(canonical)
    return found


__all__ = [
    "CapabilityError",
    "capability_error",
    "fix_text",
    "missing_role",
    "needed_unavailable",
    "role_help",
    "unavailable_tools",
]
