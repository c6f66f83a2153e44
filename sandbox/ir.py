"""The intermediate representation of a line program.

``parse`` turns text into a :class:`Program` of :class:`Step` s whose arguments are typed
references (:class:`Const`, :class:`Ref`, :class:`ListOf`, :class:`Expr`). ``check`` binds
them to tool signatures, producing a :class:`BoundProgram` the executor can schedule.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

RESULT_NAMES = ("FINAL_RESULT", "RESULT")


@dataclass(frozen=True, slots=True)
class Const:
    """A literal: str, int, float, bool, None, or a tuple of literals."""

    value: object


@dataclass(frozen=True, slots=True)
class Ref:
    """A reference to a variable (an earlier step or a named input such as IMAGE)."""

    name: str


@dataclass(frozen=True, slots=True)
class ListOf:
    """A list literal that contains references, e.g. ``[BOX0, BOX1]``."""

    items: tuple[Value, ...]


@dataclass(frozen=True, slots=True)
class Expr:
    """An expression argument (``EVAL(count == 3)``, or Eval's string); ``names`` it reads.
    ``compiled`` is the checker's :class:`~sandbox.expressions.Expression` for it, so a run
    parses each expression once (None until checked)."""

    source: str
    names: frozenset[str] = frozenset()
    compiled: object = field(default=None, compare=False, repr=False)


Value = Const | Ref | ListOf | Expr


def value_names(value: Value) -> set[str]:
    """Every variable a value reads."""
    if isinstance(value, Ref):
        return {value.name}
    if isinstance(value, ListOf):
        names: set[str] = set()
        for item in value.items:
            names |= value_names(item)
        return names
    if isinstance(value, Expr):
        return set(value.names)
    return set()


@dataclass(frozen=True, slots=True)
class Arg:
    """One argument as written: ``name`` is None for a positional one."""

    name: str | None
    value: Value
    line: int
    col: int


@dataclass(frozen=True, slots=True)
class Step:
    """One line: ``target = tool(args)``, or a plain binding (``RESULT = ANSWER4``)."""

    target: str
    tool: str | None
    args: tuple[Arg, ...]
    line: int
    col: int
    text: str

    @property
    def is_call(self) -> bool:
        return self.tool is not None

    @property
    def bound_value(self) -> Value:
        """The value of a plain binding (only valid when ``not is_call``)."""
        return self.args[0].value


@dataclass(frozen=True, slots=True)
class Program:
    """A parsed line program."""

    steps: tuple[Step, ...]
    source: str
    form: str = "lines"

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def result_name(self) -> str | None:
        """RESULT or FINAL_RESULT if assigned (the later-listed wins), else the last step."""
        targets = {s.target for s in self.steps}
        for name in RESULT_NAMES:
            if name in targets:
                return name
        return self.steps[-1].target if self.steps else None

    def step(self, target: str) -> Step:
        for s in self.steps:
            if s.target == target:
                return s
        raise KeyError(target)


@dataclass(frozen=True, slots=True)
class BoundStep:
    """A checked step: ``tool`` is the canonical tool name (None for a plain binding) and
    ``args`` maps every parameter (defaults filled in) to its value."""

    target: str
    tool: str | None
    args: dict[str, Value]
    deps: frozenset[str]
    line: int
    text: str
    output_type: str

    @property
    def is_call(self) -> bool:
        return self.tool is not None


@dataclass(frozen=True, slots=True)
class BoundProgram:
    """A program that passed ``check``: steps in source order, inputs it reads, its result."""

    program: Program
    steps: tuple[BoundStep, ...]
    inputs: dict[str, str] = field(default_factory=dict)  # input name -> type name
    result: str | None = None

    @property
    def source(self) -> str:
        return self.program.source

    def step(self, target: str) -> BoundStep:
        for s in self.steps:
            if s.target == target:
                return s
        raise KeyError(target)
