"""The Python API: ``execute(program, images=...)`` and ``run(instruction, image=...)``.

An :class:`Orchestrator` holds what many calls share — the config, the tool registry, the
model pool, the worker threads and the planner's LLM — so build one and reuse it. The
module-level ``execute``/``run`` use a process-wide default orchestrator.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox import (
    BoundProgram,
    ErrorCode,
    Program,
    ProgramError,
    ProgramInvalid,
    VisChainError,
    check,
    parse,
    to_text,
)
from sandbox.ir import value_names
from tools import Registry, ToolContext, default_registry
from tools.convert import to_image
from tools.pool import ModelPool
from tools.types import Image

from .config import Config
from .executor import ExecOptions, Executor
from .render import summarize
from .trace import Trace
from .workers import WorkerPool

log = logging.getLogger("vischain")
ImageLike = Any  # Image, PIL image, numpy array, torch tensor, bytes, path, "sample:<name>"


@dataclass
class RunResult:
    """The outcome of a run: the ``output`` value (or None), the ``program`` that ran, the
    ``trace``, and the ``error`` that stopped it (None when it succeeded)."""

    output: Any
    program: Program | None
    trace: Trace
    error: VisChainError | None = None
    values: dict[str, Any] = field(default_factory=dict)
    step_errors: dict[str, VisChainError] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def answer(self) -> str:
        """The output as text (yes/no for booleans, a summary for images and objects)."""
        if self.error is not None:
            return f"error: {self.error}"
        if isinstance(self.output, (str, int, float, bool)) or self.output is None:
            return to_text(self.output)
        return str(summarize(self.output).get("text", self.output))

    def save_trace(self, directory: str | Path) -> Path:
        return self.trace.save(directory)

    def __repr__(self) -> str:
        status = "ok" if self.ok else f"error={self.error}"
        return f"RunResult({status}, answer={self.answer!r})"


class Orchestrator:
    """Shared state for many runs: config, registry, model pool, workers, planner."""

    def __init__(
        self,
        config: Config | None = None,
        *,
        registry: Registry | None = None,
        pool: ModelPool | None = None,
    ) -> None:
        self.config = config or Config.load()
        self.registry = registry or default_registry(plugins=self.config.plugins)
        self.pool = pool or ModelPool(self.config.model_settings())
        self.limits = self.config.limits.sandbox()
        self.workers = WorkerPool(self.config.executor.workers)
        self.executor = Executor(
            self.registry,
            context=self.context,
            options=ExecOptions(
                step_time_limit=self.config.limits.step_seconds,
                program_time_limit=self.config.limits.program_seconds,
                max_batch=self.config.executor.max_batch,
            ),
            pool=self.workers,
        )
        self._planner: Any = None
        self._planner_lock = threading.Lock()

    # --- tools -----------------------------------------------------------------------------

    def context(self) -> ToolContext:
        return ToolContext(models=self.pool, options=self.config.tools, limits=self.limits)

    def tool_status(self) -> dict[str, str | None]:
        """For each tool, why it cannot run here (None when it can)."""
        ctx = self.context()
        status: dict[str, str | None] = {}
        for t in self.registry:
            try:
                status[t.spec.name] = t.unavailable(ctx)
            except Exception as exc:  # a broken optional dependency disables only that tool
                status[t.spec.name] = f"{type(exc).__name__}: {exc}"
        return status

    def available_tools(self) -> Registry:
        """The tools that can run with the models present (what the planner is told about)."""
        return self.registry.subset(n for n, reason in self.tool_status().items() if reason is None)

    # --- programs --------------------------------------------------------------------------

    def check(
        self, program: str | Program, *, inputs: Any = None, form: str = "auto"
    ) -> BoundProgram:
        """Parse (if needed) and type-check a program; raise ProgramInvalid listing problems."""
        parsed = (
            program
            if isinstance(program, Program)
            else parse(program, form=form, limits=self.limits)
        )
        return check(parsed, self.registry, inputs=inputs)

    def execute(
        self,
        program: str | Program,
        *,
        image: ImageLike | None = None,
        images: Mapping[str, ImageLike] | None = None,
        form: str = "auto",
        trace_dir: str | Path | None = None,
        instruction: str | None = None,
        trace: Trace | None = None,
    ) -> RunResult:
        """Run a given program on named images (``image=`` is shorthand for IMAGE)."""
        trace = trace or Trace(instruction=instruction)
        directory = trace_dir or self.config.trace_dir
        if directory is not None and trace.directory is None:
            trace.open(directory)
        source = program.source if isinstance(program, Program) else program
        if isinstance(source, str):
            trace.set_program(source, form)
        parsed: Program | None = None
        try:
            named = _named_images(image, images)
            for name, value in named.items():
                named[name] = to_image(value, name=name)
                trace.add_input(name, named[name])
            parsed = (
                program
                if isinstance(program, Program)
                else parse(program, form=form, limits=self.limits)
            )
            trace.form = parsed.form
            inputs = _bind_inputs(parsed, named)
            bound = check(parsed, self.registry, inputs={n: "Image" for n in inputs})
        except VisChainError as exc:
            return self._finish(trace, parsed, None, exc, {}, {})
        t0 = time.perf_counter()
        outcome = self.executor.run(bound, inputs, trace)
        log.debug("executed %d steps in %.3f s", len(bound.steps), time.perf_counter() - t0)
        result = bound.result
        error = None
        output = None
        if result is not None and outcome.status.get(result) == "ok":
            output = outcome.values[result]
        elif result is not None:
            error = _root_error(bound, result, outcome.errors)
        return self._finish(trace, parsed, output, error, outcome.values, outcome.errors)

    def _finish(
        self,
        trace: Trace,
        program: Program | None,
        output: Any,
        error: VisChainError | None,
        values: dict[str, Any],
        errors: dict[str, VisChainError],
    ) -> RunResult:
        trace.finish(output=output, error=error)
        if trace.directory is not None:
            try:
                trace.save(trace.directory)
            except OSError as exc:  # the run's result matters more than its report
                log.warning("could not save the trace to %s: %s", trace.directory, exc)
        return RunResult(output, program, trace, error, values, errors)

    def close(self) -> None:
        self.workers.shutdown()


def _named_images(
    image: ImageLike | None, images: Mapping[str, ImageLike] | None
) -> dict[str, Any]:
    named: dict[str, Any] = dict(images or {})
    if image is not None:
        if "IMAGE" in named:
            raise VisChainError(
                "give the image either as image= or as images['IMAGE']", code=ErrorCode.BAD_INPUT
            )
        named["IMAGE"] = image
    return named


def _bind_inputs(program: Program, named: dict[str, Image]) -> dict[str, Image]:
    """Map the program's free names to the given images (exact name first, then ignoring
    case, so ``image`` finds IMAGE). Unused images are allowed."""
    defined = {s.target for s in program.steps}
    free: set[str] = set()
    for s in program.steps:
        for a in s.args:
            free |= value_names(a.value)
    free -= defined
    by_lower = {n.lower(): n for n in named}
    bound: dict[str, Image] = {}
    for name in sorted(free):
        if name in named:
            bound[name] = named[name]
        elif name.lower() in by_lower:
            bound[name] = named[by_lower[name.lower()]]
    for name, value in named.items():
        bound.setdefault(name, value)
    return bound


def _root_error(
    bound: BoundProgram, result: str, errors: dict[str, VisChainError]
) -> VisChainError:
    """The failure that stopped the result: the earliest failed step it depends on."""
    ancestors = {result}
    changed = True
    deps = {s.target: s.deps for s in bound.steps}
    while changed:
        changed = False
        for name in list(ancestors):
            for d in deps.get(name, ()):
                if d not in ancestors:
                    ancestors.add(d)
                    changed = True
    failed = [
        (bound.step(n).line, errors[n])
        for n in ancestors
        if n in errors and errors[n].code != ErrorCode.SKIPPED
    ]
    if failed:
        return min(failed, key=lambda x: x[0])[1]
    return errors.get(result) or VisChainError("the result was not computed", step=result)


_DEFAULT: Orchestrator | None = None
_DEFAULT_LOCK = threading.Lock()


def default_orchestrator() -> Orchestrator:
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = Orchestrator()
        return _DEFAULT


def execute(program: str | Program, **kwargs: Any) -> RunResult:
    """Run a program with the default orchestrator (see :meth:`Orchestrator.execute`)."""
    return default_orchestrator().execute(program, **kwargs)


__all__ = [
    "Orchestrator",
    "ProgramError",
    "ProgramInvalid",
    "RunResult",
    "default_orchestrator",
    "execute",
]
