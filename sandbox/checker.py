"""Type-check a parsed line program against a tool catalog before anything runs.

The checker binds every argument to a parameter (positional ones in declared order),
resolves tool names case-insensitively and through aliases, checks types along the data
flow, and reports *every* problem as a :class:`ProgramError` whose message is written for a
repair prompt (what is wrong, and what would be right).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping

from .errors import ErrorCode, ProgramError, ProgramInvalid, VisChainError
from .expressions import compile_expression
from .hints import Hints
from .ir import Arg, BoundProgram, BoundStep, Const, Expr, Program, Ref, Step, Value, value_names
from .signatures import ANY, Catalog, ParamSpec, Signature

IMAGE = "Image"
VIDEO = "Video"


CHECK_SECONDS = 10.0
_QUOTED = 120  # characters of an expression an error quotes


def check(
    program: Program,
    catalog: Catalog,
    *,
    inputs: Mapping[str, str] | Collection[str] | None = None,
    time_limit: float | None = CHECK_SECONDS,
) -> BoundProgram:
    """Check ``program``; return it bound to its tools, or raise :class:`ProgramInvalid`.

    ``inputs`` names the caller's inputs (all images unless a mapping gives their types).
    When it is None, a free name used where an Image is expected is taken to be an image
    input; any other free name is an error. Checking is linear in the program's size; past
    ``time_limit`` seconds it stops with a ``time-limit`` error at the step it reached.
    """
    bound, errors = _Checker(program, catalog, inputs, time_limit).run()
    if errors:
        raise ProgramInvalid(errors)
    return bound


def diagnose(
    program: Program,
    catalog: Catalog,
    *,
    inputs: Mapping[str, str] | Collection[str] | None = None,
    time_limit: float | None = CHECK_SECONDS,
) -> list[ProgramError]:
    """Every problem ``check`` would report, as a list (empty when the program is fine)."""
    return _Checker(program, catalog, inputs, time_limit).run()[1]


def literal_type(value: object) -> str:
    """The type name of a literal written in a program."""
    if isinstance(value, bool):
        return "Bool"
    if isinstance(value, (int, float)):
        return "Number"
    if isinstance(value, str):
        return "Text"
    if isinstance(value, tuple) and all(isinstance(v, str) for v in value):
        return "TextList"
    return ANY


class _Checker:
    def __init__(
        self,
        program: Program,
        catalog: Catalog,
        inputs: Mapping[str, str] | Collection[str] | None,
        time_limit: float | None = CHECK_SECONDS,
    ) -> None:
        self.program = program
        self.time_limit = time_limit
        self.deadline = None if time_limit is None else time.monotonic() + time_limit
        self.hints = Hints()
        self.catalog = catalog
        self.infer_inputs = inputs is None
        if inputs is None:
            self.inputs: dict[str, str] = {}
        elif isinstance(inputs, Mapping):
            self.inputs = dict(inputs)
        else:
            self.inputs = dict.fromkeys(inputs, IMAGE)
        self.types: dict[str, str] = dict(self.inputs)
        self.lines: dict[str, int] = {}
        self.later = {s.target: s.line for s in program.steps}
        self.errors: list[ProgramError] = []
        self.per_frame = False
        self.frame_steps: set[str] = set()  # steps that hold one result per video frame
        self.used: set[str] = set()  # the names the steps checked so far read

    def run(self) -> tuple[BoundProgram, list[ProgramError]]:
        steps = []
        for step in self.program.steps:
            if self.deadline is not None and time.monotonic() > self.deadline:
                self.error(
                    ErrorCode.TIME_LIMIT,
                    f"checking took longer than {self.time_limit:g} s and stopped here",
                    step,
                    step.col,
                )
                break
            if step.target in self.inputs:
                self.error(
                    ErrorCode.REDEFINED,
                    f"'{step.target}' is an input image; choose another name",
                    step,
                    step.col,
                )
            bound = self.step(step)
            self.used |= bound.deps
            self.types[step.target] = bound.output_type
            self.lines[step.target] = step.line
            steps.append(bound)
        result = self.program.result_name
        return (
            BoundProgram(self.program, tuple(steps), inputs=dict(self.inputs), result=result),
            self.errors,
        )

    def error(
        self,
        code: ErrorCode,
        message: str,
        step: Step,
        col: int,
        fix: tuple[str, str] | None = None,
    ) -> None:
        self.errors.append(ProgramError(code, message, step.line, col, step.target, fix))

    # --- steps ----------------------------------------------------------------------------

    def step(self, step: Step) -> BoundStep:
        if not step.is_call:
            arg = step.args[0]
            value = arg.value
            out = ANY
            if isinstance(value, Ref):
                out = self.ref_type(value.name, step, arg, None) or ANY
            elif isinstance(value, Const):
                out = literal_type(value.value)
            deps = frozenset({value.name}) if isinstance(value, Ref) else frozenset()
            return BoundStep(step.target, None, {"value": value}, deps, step.line, step.text, out)

        assert step.tool is not None
        sig = self.catalog.signature(step.tool)
        if sig is None:
            hint, fix = self.hints.suggest(step.tool, self.catalog.tool_names())
            self.error(
                ErrorCode.UNKNOWN_TOOL, f"unknown tool '{step.tool}'{hint}", step, step.col, fix
            )
            deps = set()
            for arg in step.args:
                deps |= value_names(arg.value)
            return BoundStep(step.target, None, {}, frozenset(deps), step.line, step.text, ANY)

        bound = self.bind(sig, step)
        deps: set[str] = set()
        args: dict[str, Value] = {}
        self.per_frame = False  # set when a video goes where one picture is expected
        for param in sig.params:
            if param.name in bound:
                arg = bound[param.name]
                value = self.value(sig, param, arg, step)
                args[param.name] = value
                deps |= value_names(value)
            elif not param.required:
                args[param.name] = Const(param.default)
        # a video where the tool takes one picture: the tool runs once per frame and the
        # step holds a list of results
        output = ANY if self.per_frame else sig.output
        if self.per_frame:
            self.frame_steps.add(step.target)
        return BoundStep(step.target, sig.name, args, frozenset(deps), step.line, step.text, output)

    def bind(self, sig: Signature, step: Step) -> dict[str, Arg]:
        bound: dict[str, Arg] = {}
        positional = [a for a in step.args if a.name is None]
        if len(positional) > len(sig.params):
            extra = positional[len(sig.params)]
            self.error(
                ErrorCode.TOO_MANY_ARGUMENTS,
                f"{sig.name} takes {len(sig.params)} argument(s) "
                f"({_param_list(sig)}), got {len(positional)}",
                step,
                extra.col,
            )
        for param, arg in zip(sig.params, positional, strict=False):
            bound[param.name] = arg
        for arg in step.args:
            if arg.name is None:
                continue
            param = sig.param(arg.name)
            if param is None:
                hint, fix = self.hints.suggest(arg.name, [p.name for p in sig.params])
                self.error(
                    ErrorCode.UNKNOWN_ARGUMENT,
                    f"{sig.name} has no argument '{arg.name}'{hint} "
                    f"(its arguments: {_param_list(sig)})",
                    step,
                    arg.col,
                    fix,
                )
                continue
            if param.name in bound:
                self.error(
                    ErrorCode.ARGUMENT_TWICE,
                    f"argument '{param.name}' of {sig.name} is given twice",
                    step,
                    arg.col,
                )
                continue
            bound[param.name] = arg
        for param in sig.params:
            if param.required and param.name not in bound:
                self.error(
                    ErrorCode.MISSING_ARGUMENT,
                    f"{sig.name} needs argument '{param.name}' ({param.type})",
                    step,
                    step.col,
                )
        return bound

    # --- values -----------------------------------------------------------------------------

    def value(self, sig: Signature, param: ParamSpec, arg: Arg, step: Step) -> Value:
        value = arg.value
        if param.is_expression and isinstance(value, (Const, Expr)):
            source = value.source if isinstance(value, Expr) else value.value
            if isinstance(source, str):
                return self.expression(source, step, arg)
        where = f"argument '{param.name}' of {sig.name}"
        if isinstance(value, Expr):
            self.error(
                ErrorCode.WRONG_TYPE,
                f"{where} takes a {param.type} value, not an expression like '{value.source}'; "
                "compute it in an Eval step first",
                step,
                arg.col,
            )
            return value
        if isinstance(value, Ref):
            src = self.ref_type(value.name, step, arg, param.type)
            frames = src == VIDEO or value.name in self.frame_steps
            if frames and IMAGE in param.type.split("|") and not self.per_frame:
                self.per_frame = True
                return value
            if src is not None and not self.catalog.assignable(src, param.type):
                origin = (
                    f"from line {self.lines[value.name]}"
                    if value.name in self.lines
                    else "an input"
                )
                self.error(
                    ErrorCode.WRONG_TYPE,
                    f"{where} expects {param.type}, but {value.name} is {src} ({origin})",
                    step,
                    arg.col,
                )
            return value
        if isinstance(value, Const):
            if value.value is None and not param.required:
                return value
            problem = self.catalog.literal_error(value.value, param.type)
            if problem:
                self.error(ErrorCode.WRONG_TYPE, f"{where}: {problem}", step, arg.col)
            return value
        # ListOf
        item = self.catalog.item_type(param.type)
        if item is None:
            self.error(
                ErrorCode.WRONG_TYPE, f"{where} expects {param.type}, not a list", step, arg.col
            )
            return value
        for element in value.items:
            if isinstance(element, Ref):
                src = self.ref_type(element.name, step, arg, item)
                if src is not None and not self.catalog.assignable(src, item):
                    self.error(
                        ErrorCode.WRONG_TYPE,
                        f"{where} expects a list of {item}, but {element.name} is {src}",
                        step,
                        arg.col,
                    )
            elif isinstance(element, Const):
                problem = self.catalog.literal_error(element.value, item)
                if problem:
                    self.error(ErrorCode.WRONG_TYPE, f"{where}: {problem}", step, arg.col)
        return value

    def expression(self, source: str, step: Step, arg: Arg) -> Value:
        try:
            compiled = compile_expression(source)
        except VisChainError as exc:
            quoted = source if len(source) <= _QUOTED else source[: _QUOTED - 1] + "…"
            self.error(ErrorCode.BAD_EXPRESSION, f"in '{quoted}': {exc.message}", step, arg.col)
            return Expr(source, frozenset())
        for name in sorted(compiled.names):
            self.ref_type(name, step, arg, None)
        return Expr(source, compiled.names, compiled)

    def ref_type(self, name: str, step: Step, arg: Arg | None, expected: str | None) -> str | None:
        """The type of a variable, or None (after reporting) when it is not defined yet."""
        if name in self.types:
            return self.types[name]
        col = arg.col if arg else step.col
        if name in self.later and self.later[name] >= step.line:
            self.error(
                ErrorCode.UNDEFINED_NAME,
                f"'{name}' is used before it is defined (on line {self.later[name]})",
                step,
                col,
            )
            return None
        wanted = expected.split("|") if expected is not None else []
        media = next((t for t in (IMAGE, VIDEO) if t in wanted), None)
        if self.infer_inputs and media is not None:
            self.inputs[name] = media  # a picture (or a video) the caller will give
            self.types[name] = media
            return media
        known: list[str] = []  # the latest eight variables (not a scan of all of them)
        for n in reversed(self.types):
            if n not in self.inputs:
                known.insert(0, n)
                if len(known) == 8:
                    break
        hint, fix = self.hints.suggest(name, self.types)
        if fix is not None and fix[1] in self.inputs:
            # a name close to an input's (IMAGE0 beside IMAGE) is more likely a value the
            # program forgot to compute than a misspelt input: no fix-it to the input
            fix = None
        if fix is None and not step.is_call and step.target == self.program.result_name:
            # the result names nothing: when exactly one computed value is read by no step,
            # that is the value the program computed to return (IMAGE0 for an edit whose
            # step was named OBJ2)
            unused = [n for n in self.types if n not in self.inputs and n not in self.used]
            if len(unused) == 1:
                fix = (name, unused[0])
                hint = f"; did you mean '{unused[0]}', the one value no step reads?"
        listing = ", ".join(known) or "none yet"
        inputs = ", ".join(self.inputs) or "none"
        self.error(
            ErrorCode.UNDEFINED_NAME,
            f"'{name}' is not defined{hint} (variables so far: {listing}; inputs: {inputs})",
            step,
            col,
            fix,
        )
        return None


def _param_list(sig: Signature) -> str:
    return ", ".join(p.name if p.required else f"{p.name}={p.default!r}" for p in sig.params)
