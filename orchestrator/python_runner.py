"""Running Python-form programs: the interpreter walks the code; every tool call it makes
becomes a node of the run's DAG, executed by the same executor as line programs. The
Python form (:class:`orchestrator.forms.PythonForm`) parses, checks and binds a program's
inputs, then calls :func:`run_python`.

Calls are issued lazily: a call returns a :class:`CallNode` at once and joins the pending
set; when the interpreter needs a value (a test, an operator, a builtin...), every pending
call is handed to the executor together, so independent calls run in parallel and calls to
a batched tool share one batch. Edges come from the lazy values (and from values earlier
calls produced) that fed each call.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from sandbox import (
    Budget,
    ErrorCode,
    EvalError,
    Exposed,
    LimitExceeded,
    Limits,
    Program,
    VisChainError,
)
from sandbox.ir import BoundProgram, BoundStep, Const, Ref, Value
from sandbox.lazy import Lazy, force, force_deep
from sandbox.numeric import NAMESPACES
from sandbox.python import Function, PythonInterpreter, PythonProgram
from tools.errors import ToolErrorCode
from tools.patch import Derived, ImagePatch, PatchAPI, VideoSegment
from tools.registry import Registry

from .executor import Executor
from .trace import StepStatus, Trace

log = logging.getLogger("vischain.python")


class CallNode(Lazy):
    """A tool call made by a Python program; forcing it runs every pending call."""

    __slots__ = ("args", "deps", "error", "finished", "line", "name", "runtime", "tool", "value")

    def __init__(
        self,
        runtime: PythonRuntime,
        name: str,
        tool: str,
        args: dict[str, Value],
        deps: set[str],
        line: int,
    ) -> None:
        self.runtime = runtime
        self.name = name
        self.tool = tool
        self.args = args
        self.deps = deps
        self.line = line
        self.finished = False
        self.value: Any = None
        self.error: VisChainError | None = None

    def force(self) -> Any:
        if not self.finished:
            self.runtime.flush()
        if self.error is not None:
            raise self.error
        return self.value

    def __repr__(self) -> str:
        return f"<{self.tool} call {self.name}>"


class PythonRuntime:
    """Issues a Python program's tool calls as DAG nodes and runs them in waves."""

    def __init__(
        self,
        executor: Executor,
        registry: Registry,
        trace: Trace,
        *,
        source: str,
        max_calls: int,
        deadline: float | None,
    ) -> None:
        self.executor = executor
        self.registry = registry
        self.trace = trace
        self.lines = source.splitlines()
        self.max_calls = max_calls
        self.deadline = deadline
        self.line_of: Callable[[], int] = lambda: 0  # where the program is (set by run_python)
        self.pending: list[CallNode] = []
        self.values: dict[str, Any] = {}
        self.produced_by: dict[int, str] = {}
        self.errors: dict[str, VisChainError] = {}
        self.waves = 0
        self._counter = itertools.count()

    def call(self, tool: str, **args: Any) -> CallNode:
        """Queue a call of ``tool``; arguments may be lazy (they become dependencies)."""
        if tool not in self.registry:
            raise EvalError(f"the tool '{tool}' is not available here")
        if next(self._counter) >= self.max_calls:
            raise LimitExceeded(
                f"the program made more than {self.max_calls:,} tool calls",
                code=ErrorCode.STEP_LIMIT,
            )
        canonical = self.registry.get(tool).spec.name
        bound: dict[str, Value] = {}
        deps: set[str] = set()
        for key, value in args.items():
            if isinstance(value, CallNode):
                if value.finished and value.error is not None:
                    raise value.error
                bound[key] = Ref(value.name)
                deps.add(value.name)
                continue
            deps |= _sources(value)
            value = force_deep(value)
            producer = self.produced_by.get(id(value))
            if producer is not None:
                deps.add(producer)
            bound[key] = Const(value)
        name = f"{canonical}{len(self.trace.steps) + len(self.pending)}"
        node = CallNode(self, name, canonical, bound, deps, self.line_of())
        self.pending.append(node)
        return node

    def flush(self) -> None:
        """Run every pending call (and wait for them)."""
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        self.waves += 1
        steps = []
        for node in batch:
            spec = self.registry.get(node.tool).spec
            text = (
                self.lines[node.line - 1].strip() if 0 < node.line <= len(self.lines) else node.tool
            )
            steps.append(
                BoundStep(
                    node.name,
                    node.tool,
                    node.args,
                    frozenset(node.deps),
                    node.line,
                    text,
                    spec.output,
                )
            )
        program = Program(steps=(), source="\n".join(self.lines), form="python")
        bound = BoundProgram(program, tuple(steps))
        known = {d: self.values[d] for n in batch for d in n.deps if d in self.values}
        outcome = self.executor.run(bound, known, self.trace, deadline=self.deadline)
        for node in batch:
            node.finished = True
            record = self.trace.step(node.name)
            record.meta["wave"] = self.waves
            if outcome.status.get(node.name) == StepStatus.OK:
                node.value = outcome.values[node.name]
                self.values[node.name] = node.value
                self.produced_by[id(node.value)] = node.name
                for item in _parts(node.value):
                    self.produced_by.setdefault(id(item), node.name)
            else:
                node.error = outcome.errors.get(node.name) or VisChainError(
                    f"{node.tool} did not run",
                    code=ToolErrorCode.TOOL_ERROR,
                    step=node.name,
                    line=node.line,
                )
                self.errors[node.name] = node.error


def _sources(value: Any) -> set[str]:
    """The calls a derived value (a patch's pixels, a find's result) comes from."""
    found: set[str] = set()
    while isinstance(value, Derived):
        value = value._base
    if isinstance(value, CallNode):
        found.add(value.name)
    return found


def _parts(value: Any) -> list[Any]:
    """Objects inside a result whose later use should point back to the call that made it."""
    if isinstance(value, (list, tuple)):
        return list(value)
    items = getattr(value, "items", None)
    return list(items) if isinstance(items, tuple) else []


def tool_functions(runtime: PythonRuntime, registry: Registry) -> dict[str, Any]:
    """Every registered tool as a function of the program: ``Loc(image, 'dog')``."""

    def make(name: str) -> Any:
        params = [p.name for p in registry.get(name).spec.params]

        def call(*args: Any, **kwargs: Any) -> CallNode:
            if len(args) > len(params):
                raise EvalError(f"{name} takes {len(params)} argument(s), got {len(args)}")
            for p, a in zip(params, args, strict=False):
                if p in kwargs:
                    raise EvalError(f"{name}: argument '{p}' given twice")
                kwargs[p] = a
            return runtime.call(name, **kwargs)

        return call

    return {t.spec.name: make(t.spec.name) for t in registry}


def run_python(
    program: PythonProgram,
    args: Mapping[str, Any],
    *,
    registry: Registry,
    executor: Executor,
    limits: Limits,
    trace: Trace,
    seconds: float | None,
    max_calls: int,
    exposed: Mapping[type, Exposed],
) -> tuple[Any, dict[str, Any], dict[str, VisChainError]]:
    """Interpret ``program`` with its parameters bound to ``args`` (see
    :func:`orchestrator.forms.bind_inputs`) and ``exposed`` the types whose attributes and
    methods it may use; return its (forced) result, every call's value, and errors."""
    deadline = None if seconds is None else time.monotonic() + seconds
    runtime = PythonRuntime(
        executor, registry, trace, source=program.source, max_calls=max_calls, deadline=deadline
    )
    printed: list[str] = []
    interpreter = PythonInterpreter(
        Budget(limits.with_(time_limit=seconds)),
        functions={**tool_functions(runtime, registry), **PatchAPI(runtime).functions()},
        exposed=exposed,
        output=printed.append,
    )
    runtime.line_of = lambda: interpreter.line
    fired = False  # a limit stopped the program: nothing it queued may run after that
    variables: dict[str, Any] = {}
    try:
        result = interpreter.run(program, args)
        result = _plain(result)
        variables = _variables(interpreter.env, set(program.params))
    except LimitExceeded:
        fired = True
        raise
    finally:
        if fired:
            dropped = len(runtime.pending)
            runtime.pending = []
            if dropped:
                trace.meta["dropped_calls"] = dropped
        else:
            try:
                runtime.flush()  # calls never forced still run, so the trace shows them
            except VisChainError as exc:
                log.debug("pending calls failed after the program ended: %s", exc)
        if printed:
            trace.meta["printed"] = printed
        trace.meta["waves"] = runtime.waves
    return result, {**runtime.values, **variables}, dict(runtime.errors)


def _variables(env: Mapping[str, Any], params: set[str]) -> dict[str, Any]:
    """The program's own variables at its end, forced (a follow-up program in an agent round
    takes them as parameters); lambdas, values whose call failed and the ``np``/``math``
    namespaces every program starts with are left out."""
    out: dict[str, Any] = {}
    for name, value in env.items():
        if name in params or name.startswith("_") or NAMESPACES.get(name) is value:
            continue
        try:
            forced = force_deep(value)
        except VisChainError:
            continue
        if not isinstance(forced, Function):
            out[name] = forced
    return out


def _plain(value: Any) -> Any:
    """Results a user can use: a patch becomes its pixels, a video segment its frames, in
    lists, tuples and dict values too. Each distinct container is converted once and only
    copied when it holds something to convert, so what a program shares stays shared: a
    result ``[a] * 30`` of ``a = [[0] * 1000] * 1000`` is 1,000 values to look at, not 30
    million to copy."""
    return _Plain().convert(force_deep(value))


class _Plain:
    def __init__(self) -> None:
        self.done: dict[int, Any] = {}  # id of a container seen → what it became

    def convert(self, value: Any) -> Any:
        if isinstance(value, ImagePatch):
            return force(value.cropped_image)
        if isinstance(value, VideoSegment):
            return value.video
        if not isinstance(value, list | tuple | dict):
            return value
        key = id(value)
        if key in self.done:
            return self.done[key]
        self.done[key] = value  # a container that holds itself ends here
        items = list(value.values()) if isinstance(value, dict) else value
        converted = [self.convert(v) for v in items]
        if all(a is b for a, b in zip(converted, items, strict=True)):
            return value
        if isinstance(value, dict):
            made: Any = dict(zip(value, converted, strict=True))
        elif isinstance(value, tuple):
            made = type(value)(converted) if type(value) is tuple else type(value)(*converted)
        else:
            made = converted
        self.done[key] = made
        return made
