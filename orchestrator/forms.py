"""Program forms: one object per way of writing a program, registered by name.

A :class:`ProgramForm` knows everything the rest of VisChain asks of a program written in
it — how to ``parse`` its text, ``check`` it against the tools, which ``tools_used`` it
calls, which ``input_names`` its inputs bind to, and how to ``run`` it; and, for the
planner, how an LLM is asked for it (``template``, ``stop``, ``grammar``) and how to
``extract`` it from the LLM's output — so the API, the planner and the agent loop call the
form instead of branching on the program's type:

    form = form_of(program)                    # or get_form("python"), or detect(text)
    inputs = form.bind(program, images)        # the one binding rule, below
    checked = form.check(program, registry, inputs={n: "Image" for n in inputs})
    execution = form.run(checked, inputs, machinery, trace)

Two forms are built in: ``lines`` (VisProg-style ``NAME=Tool(...)`` steps, checked into a
:class:`~sandbox.BoundProgram` and run as one DAG) and ``python`` (ViperGPT-style
``def execute_command(image, ...)``, interpreted; each tool call joins the DAG lazily, see
:mod:`orchestrator.python_runner`). :func:`register_form` adds another; :func:`get_form`
with an unregistered name raises :class:`UnknownForm`.

**Binding inputs (one rule for every form).** A program's *input names* are the names it
reads but never assigns — for line programs the free variables of its steps (sorted), for
Python programs the parameters of ``execute_command`` (in order). Each input name takes the
given input of the same name; failing that, the one given input whose name matches ignoring
case (so ``image`` finds ``IMAGE``); two given inputs matching only ignoring case are a
``bad-input`` error. Inputs the program does not read are allowed and kept under their own
names. An input name left unbound is not a binding error: ``check`` reports it with its
line (``undefined-name``), like any other name the program never assigns.
"""

from __future__ import annotations

import ast
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from sandbox import (
    BoundProgram,
    ErrorCode,
    Limits,
    Program,
    ProgramError,
    ProgramInvalid,
    PythonProgram,
    VisChainError,
    check,
    check_python,
    detect_form,
    parse_python,
)
from sandbox.ir import value_names
from sandbox.lines import parse_lines
from sandbox.python import PY_FUNCTIONS
from tools.errors import ToolErrorCode
from tools.patch import API_FUNCTIONS, API_TOOLS, EXPOSED_PATCH
from tools.registry import Registry
from tools.types import EXPOSED

from .errors import RunErrorCode
from .executor import Executor
from .grammar import line_grammar
from .heap import collector_running
from .python_runner import run_python
from .trace import StepStatus, Trace

P = TypeVar("P")  # the parsed program
C = TypeVar("C")  # the checked program (what ``run`` takes)
V = TypeVar("V")  # an input value (an image when running, a type name when checking)

InputTypes = Mapping[str, str] | Collection[str]
#: a parsed program of a built-in form (what ``parse_program`` returns)
Parsed = Program | PythonProgram
#: a checked program of a built-in form (what ``check`` returns, ``run`` takes)
Checked = BoundProgram | PythonProgram


class UnknownForm(ProgramInvalid):
    """A program form name that no form is registered under."""

    def __init__(self, name: str) -> None:
        known = ", ".join(FORMS) or "none"
        message = f"unknown program form '{name}' (use one of: {known})"
        super().__init__([ProgramError(ErrorCode.SYNTAX, message, 1)])
        self.name = name


@dataclass(frozen=True)
class Machinery:
    """What running a checked program needs: the tools, the executor that schedules their
    calls, the sandbox limits, and the bounds of an interpreted program (its seconds and its
    tool calls)."""

    registry: Registry
    executor: Executor
    limits: Limits = field(default_factory=Limits)
    seconds: float | None = None
    max_tool_calls: int = 10_000
    deadline: float | None = None  # a time.monotonic() instant every run stops by (agent loop)

    def remaining(self) -> float | None:
        """The seconds an interpreted program may take: ``seconds``, capped by ``deadline``."""
        if self.deadline is None:
            return self.seconds
        left = max(self.deadline - time.monotonic(), 0.0)
        return left if self.seconds is None else min(self.seconds, left)


@dataclass
class Execution:
    """What a program's run produced: the ``output`` (None when it failed), the ``error``
    that stopped the result, every computed value by step name and every step's error."""

    output: Any
    error: VisChainError | None
    values: dict[str, Any]
    errors: dict[str, VisChainError]


def bind_inputs(names: Collection[str], given: Mapping[str, V]) -> dict[str, V]:
    """The binding rule (see the module docstring): ``names`` are a program's input names,
    ``given`` the caller's inputs; returns the inputs under the program's names, plus every
    given input under its own name."""
    by_lower: dict[str, list[str]] = {}
    for key in given:
        by_lower.setdefault(key.lower(), []).append(key)
    bound: dict[str, V] = {}
    for name in names:
        if name in given:
            bound[name] = given[name]
            continue
        matches = by_lower.get(name.lower(), [])
        if len(matches) > 1:
            raise VisChainError(
                f"the inputs {', '.join(map(repr, matches))} both match '{name}' ignoring case; "
                "name them apart",
                code=ToolErrorCode.BAD_INPUT,
            )
        if matches:
            bound[name] = given[matches[0]]
    for key, value in given.items():
        bound.setdefault(key, value)
    return bound


_STEP = re.compile(r"^\s*[A-Za-z_][A-Za-z0-9_]*\s*=")


def extract_program(output: str) -> str:
    """The program in an LLM's output: step and comment lines from the first step on, without
    code fences or prose, up to the first line that is neither."""
    lines: list[str] = []
    started = False
    for raw in output.replace("\r\n", "\n").split("\n"):
        line = raw.rstrip()
        stripped = line.strip()
        if stripped.startswith("```"):
            if started:
                break
            continue
        if _STEP.match(line):
            started = True
            lines.append(stripped)
        elif started and stripped.startswith("#"):
            lines.append(stripped)
        elif started:
            break
    return "\n".join(lines) + ("\n" if lines else "")


def extract_function(output: str) -> str:
    """The ``def execute_command`` block in an LLM's output (the def line and everything
    indented under it), without code fences or prose around it."""
    lines = output.replace("\r\n", "\n").split("\n")
    start = next(
        (i for i, ln in enumerate(lines) if ln.lstrip().startswith("def execute_command")), None
    )
    if start is None:
        return ""
    indent = len(lines[start]) - len(lines[start].lstrip())
    body = [lines[start][indent:]]
    for ln in lines[start + 1 :]:
        if ln.strip().startswith("```"):
            break
        if ln.strip() and len(ln) - len(ln.lstrip()) <= indent:
            break
        body.append(ln[indent:] if ln.strip() else "")
    while body and not body[-1].strip():
        body.pop()
    return "\n".join(body) + "\n"


class ProgramForm(ABC, Generic[P, C]):
    """One way of writing programs. Subclasses set ``name`` and implement the abstract
    methods; :meth:`bind` is the same for every form."""

    name: ClassVar[str]
    #: the prompt template that asks an LLM for this form (``programs/templates/<t>.txt``)
    template: ClassVar[str]
    #: strings that end a program of this form in an LLM's output
    stop: ClassVar[tuple[str, ...]] = ()
    #: what every program of this form starts with ('' when nothing fixed): without a tool
    #: grammar, the agent's decision grammar asks for it before a follow-up program
    opening: ClassVar[str] = ""
    #: whether a follow-up program takes earlier values as parameters (the agent loop then
    #: shows the planner each value's typed summary)
    takes_values: ClassVar[bool] = False

    @abstractmethod
    def recognizes(self, text: str) -> bool:
        """Whether ``text`` looks written in this form (for ``form='auto'``)."""

    @abstractmethod
    def parse(self, text: str, *, limits: Limits | None = None) -> P:
        """Program text to this form's IR; raise :class:`ProgramInvalid` listing problems."""

    @abstractmethod
    def input_names(self, program: P) -> tuple[str, ...]:
        """The names the program's inputs bind to."""

    @abstractmethod
    def check(self, program: P, registry: Registry, *, inputs: InputTypes | None = None) -> C:
        """Check ``program`` against ``registry``'s tools; ``inputs`` names the caller's
        inputs (all images unless a mapping gives their type names; None: take what the
        program reads as inputs). Return what :meth:`run` takes, or raise
        :class:`ProgramInvalid` listing every problem."""

    @abstractmethod
    def tools_used(self, program: P) -> set[str]:
        """The names of the tools the program calls (directly or through an API)."""

    @abstractmethod
    def extract(self, output: str) -> str:
        """The program in an LLM's output, without fences or prose ('' when there is none)."""

    def grammar(self, registry: Registry, *, max_steps: int) -> str | None:
        """A GBNF grammar that constrains decoding to this form with these tools (None: no
        grammar)."""
        return None

    @abstractmethod
    def returning(self, name: str) -> str:
        """The follow-up program that returns the earlier computed value ``name`` as it is
        (what the agent loop runs for an ``ANSWER NAME`` decision)."""

    @abstractmethod
    def run(
        self, checked: C, inputs: Mapping[str, Any], machinery: Machinery, trace: Trace
    ) -> Execution:
        """Run a checked program on bound inputs, recording each step in ``trace``. A
        program's failure is the returned ``error``; an exception means the run could not
        go on (what finished is in ``trace``)."""

    def result_type(self, checked: C) -> str | None:
        """The type name of a checked program's result, as the checker knows it before the
        program runs ('Image', 'ObjectList', 'Text', 'Any'...; None: this form cannot say)."""
        return None

    def summary(self, checked: C) -> str:
        """One line on a checked program: what ``vischain check`` prints after "ok: "."""
        return f"a {self.name} program"

    def defines(self, program: P) -> set[str]:
        """The names the program assigns at its top level: an earlier value of the same
        name (an agent round's state) is replaced, not read as an input."""
        return set()

    def readable(self, program: P, known: Mapping[str, V]) -> dict[str, V]:
        """The values of ``known`` that ``program`` may read: all but those it defines."""
        defined = self.defines(program)
        return {n: v for n, v in known.items() if n not in defined}

    def bind(self, program: P, given: Mapping[str, V]) -> dict[str, V]:
        """The given inputs under the program's input names (see the module docstring)."""
        return bind_inputs(self.input_names(program), given)

    def _typed(self, program: P, inputs: InputTypes | None) -> dict[str, str] | None:
        """``inputs`` as type names under the program's input names (None stays None)."""
        if inputs is None:
            return None
        given = dict(inputs) if isinstance(inputs, Mapping) else dict.fromkeys(inputs, "Image")
        return self.bind(program, given)


class LineForm(ProgramForm[Program, BoundProgram]):
    """VisProg-style lines, ``NAME=Tool(arg=...)``: checked into a DAG of typed steps."""

    name = "lines"
    template = "lines"
    stop = ("\n\n", "\nInstruction:")

    def recognizes(self, text: str) -> bool:
        return detect_form(text) == self.name

    def parse(self, text: str, *, limits: Limits | None = None) -> Program:
        return parse_lines(text, limits=limits)

    def input_names(self, program: Program) -> tuple[str, ...]:
        defined = {s.target for s in program.steps}
        read: set[str] = set()
        for s in program.steps:
            for a in s.args:
                read |= value_names(a.value)
        return tuple(sorted(read - defined))

    def check(
        self, program: Program, registry: Registry, *, inputs: InputTypes | None = None
    ) -> BoundProgram:
        return check(program, registry, inputs=self._typed(program, inputs))

    def tools_used(self, program: Program) -> set[str]:
        return {s.tool for s in program.steps if s.tool is not None}

    def defines(self, program: Program) -> set[str]:
        return {s.target for s in program.steps}

    def result_type(self, checked: BoundProgram) -> str | None:
        return checked.step(checked.result).output_type if checked.result else None

    def summary(self, checked: BoundProgram) -> str:
        inputs = ", ".join(checked.inputs) or "none"
        return f"{len(checked.steps)} steps, result {checked.result}, inputs {inputs}"

    def extract(self, output: str) -> str:
        return extract_program(output)

    def grammar(self, registry: Registry, *, max_steps: int) -> str | None:
        return line_grammar(registry, max_steps=max_steps)

    def returning(self, name: str) -> str:
        return f"RESULT={name}\n"

    def run(
        self, checked: BoundProgram, inputs: Mapping[str, Any], machinery: Machinery, trace: Trace
    ) -> Execution:
        outcome = machinery.executor.run(checked, dict(inputs), trace, deadline=machinery.deadline)
        result = checked.result
        if result is not None and outcome.status.get(result) == StepStatus.OK:
            return Execution(outcome.values[result], None, outcome.values, outcome.errors)
        error = None if result is None else root_error(checked, result, outcome.errors)
        return Execution(None, error, outcome.values, outcome.errors)


def root_error(
    bound: BoundProgram, result: str, errors: Mapping[str, VisChainError]
) -> VisChainError:
    """The failure that stopped ``result``: the earliest failed step it depends on."""
    deps = {s.target: s.deps for s in bound.steps}
    ancestors = {result}
    frontier = [result]
    while frontier:
        for d in deps.get(frontier.pop(), ()):
            if d not in ancestors:
                ancestors.add(d)
                frontier.append(d)
    lines = {s.target: s.line for s in bound.steps}  # bound.step() would search: quadratic
    failed = [
        (lines[n], errors[n])
        for n in ancestors
        if n in errors and errors[n].code != RunErrorCode.SKIPPED
    ]
    if failed:
        return min(failed, key=lambda x: x[0])[1]
    return errors.get(result) or VisChainError(
        "the result was not computed", code=ToolErrorCode.TOOL_ERROR, step=result
    )


class PythonForm(ProgramForm[PythonProgram, PythonProgram]):
    """ViperGPT-style ``def execute_command(image, ...)`` in a restricted Python subset,
    interpreted; its functions are the tools, the image-patch API and a few builtins."""

    name = "python"
    template = "python"
    stop = ("\nInstruction:", "\nImages:")
    opening = "def execute_command("
    takes_values = True
    #: the types whose attributes and methods a Python program may use
    EXPOSED: ClassVar[dict[type, Any]] = {**EXPOSED, **EXPOSED_PATCH}

    def recognizes(self, text: str) -> bool:
        return detect_form(text) == self.name

    def parse(self, text: str, *, limits: Limits | None = None) -> PythonProgram:
        return parse_python(text, limits=limits)

    def input_names(self, program: PythonProgram) -> tuple[str, ...]:
        return program.params

    @staticmethod
    def functions(registry: Registry) -> set[str]:
        """Every function a Python program may call with these tools."""
        return set(PY_FUNCTIONS) | set(API_FUNCTIONS) | {t.spec.name for t in registry}

    def check(
        self, program: PythonProgram, registry: Registry, *, inputs: InputTypes | None = None
    ) -> PythonProgram:
        typed = self._typed(program, inputs)
        errors = check_python(
            program, functions=self.functions(registry), exposed=self.EXPOSED, inputs=typed
        )
        if errors:
            raise ProgramInvalid(errors)
        return program

    def tools_used(self, program: PythonProgram) -> set[str]:
        """A call of a name that is neither a builtin, an API function nor a local is a tool
        call (the program's namespace holds nothing else); API functions and image-patch
        methods add the tools they call."""
        local = set(program.params)
        for node in ast.walk(program.function):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                local.add(node.id)
            elif isinstance(node, ast.arg):
                local.add(node.arg)
        used: set[str] = set()
        for node in ast.walk(program.function):
            if not isinstance(node, ast.Call):
                continue
            if isinstance(node.func, ast.Attribute):
                used.update(API_TOOLS.get(node.func.attr, ()))
            elif isinstance(node.func, ast.Name):
                name = node.func.id
                if name in API_TOOLS:
                    used.update(API_TOOLS[name])
                elif name not in PY_FUNCTIONS and name not in API_FUNCTIONS and name not in local:
                    used.add(name)
        return used

    def extract(self, output: str) -> str:
        return extract_function(output)

    def summary(self, checked: PythonProgram) -> str:
        tools = ", ".join(sorted(self.tools_used(checked))) or "none"
        return f"{checked.function.name}({', '.join(checked.params)}), tools {tools}"

    def returning(self, name: str) -> str:
        return f"{self.opening}{name}):\n    return {name}\n"

    def run(
        self,
        checked: PythonProgram,
        inputs: Mapping[str, Any],
        machinery: Machinery,
        trace: Trace,
    ) -> Execution:
        with collector_running(machinery.executor.options.pause_gc):  # the program's own code
            return self._run(checked, inputs, machinery, trace)

    def _run(
        self, checked: PythonProgram, inputs: Mapping[str, Any], machinery: Machinery, trace: Trace
    ) -> Execution:
        output, values, errors = run_python(
            checked,
            inputs,
            registry=machinery.registry,
            executor=machinery.executor,
            limits=machinery.limits,
            trace=trace,
            seconds=machinery.remaining(),
            max_calls=machinery.max_tool_calls,
            exposed=self.EXPOSED,
        )
        return Execution(output, None, values, errors)


FORMS: dict[str, ProgramForm[Any, Any]] = {}


def register_form(form: ProgramForm[Any, Any], *, replace: bool = False) -> ProgramForm[Any, Any]:
    """Make ``form`` available under ``form.name`` (to parse, plan and run)."""
    if form.name in FORMS and not replace:
        raise ValueError(f"a program form named '{form.name}' is already registered")
    if form.name == "auto":
        raise ValueError("'auto' is not a form name: it asks for the form to be detected")
    FORMS[form.name] = form
    return form


def get_form(name: str) -> ProgramForm[Any, Any]:
    """The form registered under ``name``; raise :class:`UnknownForm` if there is none."""
    try:
        return FORMS[name]
    except KeyError:
        raise UnknownForm(name) from None


def detect(text: str) -> ProgramForm[Any, Any]:
    """The form ``text`` is written in: the latest registered form that recognizes it (so
    a plug-in form can claim texts a built-in one would take), else lines."""
    for form in reversed(FORMS.values()):
        if form.recognizes(text):
            return form
    return FORMS[LineForm.name]


def form_of(program: Parsed | Checked) -> ProgramForm[Any, Any]:
    """The form a parsed (or checked) program is written in."""
    if isinstance(program, BoundProgram):
        program = program.program
    return get_form(getattr(program, "form", LineForm.name))


def parse_program(text: str, *, form: str = "auto", limits: Limits | None = None) -> Parsed:
    """Parse ``text`` in ``form`` ('auto': the form :func:`detect` finds)."""
    chosen = detect(text) if form == "auto" else get_form(form)
    return chosen.parse(text, limits=limits)


register_form(LineForm())
register_form(PythonForm())

__all__ = [
    "FORMS",
    "Checked",
    "Execution",
    "LineForm",
    "Machinery",
    "Parsed",
    "ProgramForm",
    "PythonForm",
    "UnknownForm",
    "bind_inputs",
    "detect",
    "extract_function",
    "extract_program",
    "form_of",
    "get_form",
    "parse_program",
    "register_form",
    "root_error",
]
