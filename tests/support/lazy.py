"""A lazy value for sandbox tests: like a tool call still running, it is only there when
forced, and its repr says so (so a leak into an output is easy to spot)."""

from __future__ import annotations

from sandbox import Lazy


class Later(Lazy):
    """``value``, available when forced."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def force(self) -> object:
        return self.value

    def __repr__(self) -> str:
        return "<pending call>"
