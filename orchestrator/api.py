"""The Python API: ``execute(program, images=...)`` and ``run(instruction, image=...)``.

An :class:`Orchestrator` holds what many calls share — the config, the tool registry, the
model pool, the worker threads and the planner's LLM — so build one and reuse it. The
module-level ``execute``/``run`` use a process-wide default orchestrator.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sandbox import (
    ErrorCode,
    ProgramError,
    ProgramInvalid,
    VisChainError,
    to_text,
)
from tools import Registry, ToolContext, default_registry
from tools.cache import ByteLRU
from tools.convert import to_inputs
from tools.errors import ToolErrorCode
from tools.pool import ModelPool
from tools.progress import bar
from tools.types import Image, value_type

from .agent import AgentRun
from .capability import unavailable_tools
from .config import Config
from .errors import RunErrorCode
from .executor import ExecOptions, Executor
from .forms import Checked, LineForm, Machinery, Parsed, detect, form_of, parse_program
from .heap import collector_paused, freeze_long_lived
from .planner import Plan, Planner, PlanningError
from .render import summarize
from .report import row_for, write_report
from .rounds import Round
from .telemetry import export_trace
from .trace import StepStatus, Trace
from .workers import WorkerPool
from .writer import stream

log = logging.getLogger("vischain")
ImageLike = Any  # Image, PIL image, numpy array, torch tensor, bytes, path, "sample:<name>"


@dataclass
class RunResult:
    """The outcome of a run: the ``output`` value (or None), the ``program`` that ran, the
    ``trace``, and the ``error`` that stopped it (None when it succeeded)."""

    output: Any
    program: Parsed | None
    trace: Trace
    error: VisChainError | None = None
    values: dict[str, Any] = field(default_factory=dict)
    step_errors: dict[str, VisChainError] = field(default_factory=dict)
    rounds: list[Round] = field(default_factory=list)  # the agent loop's rounds (run())
    # findings the agent accepted its result with (``agent.warn_at_limit``): each as
    # ``{"check": "low-confidence", "message": ..., "step": ...}``
    warnings: list[dict[str, Any]] = field(default_factory=list)

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
        tracer: Any | None = None,
    ) -> None:
        """``tracer``: an OpenTelemetry tracer to export every run to (also enabled, with the
        global tracer provider, by ``telemetry: true`` in the config)."""
        self.config = config or Config.load()
        self.tracer = tracer
        self.registry = registry or default_registry(plugins=self.config.plugins)
        self.pool = pool or ModelPool(self.config.model_settings())
        self.limits = self.config.limits.sandbox()
        self.image_limits = self.config.limits.images()
        self.workers = WorkerPool(
            self.config.executor.workers,
            max_stuck=self.config.executor.max_stuck,
            max_parked=self.config.executor.max_parked,
        )
        self.executor = Executor(
            self.registry,
            context=self.context,
            options=ExecOptions(
                step_time_limit=self.config.limits.step_seconds,
                program_time_limit=self.config.limits.program_seconds,
                max_batch=self.config.executor.max_batch,
                pause_gc=self.config.executor.gc_pause,
            ),
            pool=self.workers,
            memo=ByteLRU(self.config.executor.memo_mb * 2**20, "memo")
            if self.config.executor.memo_mb
            else None,
        )
        self.machinery = Machinery(
            self.registry,
            self.executor,
            self.limits,
            seconds=self.config.limits.python_seconds,
            max_tool_calls=self.config.limits.max_tool_calls,
        )
        self._planners: dict[bool, Planner] = {}
        self._planner_lock = threading.Lock()
        self._closed = False
        if self.config.executor.gc_freeze:
            freeze_long_lived()

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

    def check(self, program: str | Parsed, *, inputs: Any = None, form: str = "auto") -> Checked:
        """Parse (if needed) and check a program; raise ProgramInvalid listing problems.
        ``inputs`` names the inputs (a mapping may give their type names; see
        :mod:`orchestrator.forms` for how they bind)."""
        parsed = self._parse(program, form)
        return form_of(parsed).check(parsed, self.registry, inputs=inputs)

    def _parse(self, program: str | Parsed, form: str) -> Parsed:
        if isinstance(program, str):
            return parse_program(program, form=form, limits=self.limits)
        return program

    def execute(
        self,
        program: str | Parsed,
        *,
        image: ImageLike | None = None,
        images: Mapping[str, ImageLike] | None = None,
        form: str = "auto",
        trace_dir: str | Path | None = None,
        instruction: str | None = None,
        trace: Trace | None = None,
        video: Any = None,
        values: Mapping[str, Any] | None = None,
    ) -> RunResult:
        """Run a given program on named images and videos (``image=`` is shorthand for
        IMAGE, ``video=`` for VIDEO; a video file, a list of frames or a T×H×W×3 array in
        ``images`` is a video too). ``values`` are other named inputs — text, numbers,
        lists of them — such as a Python program's ``query`` or ``possible_answers``.

        Never raises: whatever goes wrong comes back as a typed ``error`` on the result,
        with every step that finished kept in its trace."""
        trace = trace or Trace(instruction=instruction)
        try:
            inputs = (image, images, video, values)
            with collector_paused(self.config.executor.gc_pause):  # up to the finished trace
                return self._execute(program, inputs, form, trace_dir, trace)
        except Exception as exc:  # a bug: still a typed error, and the trace is kept
            return self._failed(trace, exc)

    def _failed(self, trace: Trace, exc: Exception) -> RunResult:
        error = _internal(exc)
        done = {r.step: r.value for r in trace.steps if r.status == StepStatus.OK}
        try:
            return self._finish(trace, None, None, error, done, {})
        except Exception:  # even the trace cannot be finished: the result still comes back
            log.exception("could not finish the trace")
            return RunResult(None, None, trace, error, done, {})

    def _execute(
        self,
        program: str | Parsed,
        given: tuple[Any, Mapping[str, Any] | None, Any, Mapping[str, Any] | None],
        form: str,
        trace_dir: str | Path | None,
        trace: Trace,
    ) -> RunResult:
        try:
            if self._closed:
                raise OrchestratorClosed("this orchestrator is closed: build a new one")
            directory = trace_dir or self.config.trace_dir
            if directory is not None and trace.directory is None:
                stream(trace, directory)
            source = getattr(program, "source", program)
            if not isinstance(source, str):
                raise VisChainError(
                    "a program is text, a Program or a PythonProgram, not a "
                    f"{type(source).__name__}",
                    code=ToolErrorCode.BAD_INPUT,
                )
            image, images, video, values = given
            named = to_inputs(
                _named_images(image, images, video),
                limits=self.image_limits,
                on_loaded=trace.add_input,
            )
            for name, value in _plain_values(values, named).items():
                named[name] = value
                trace.add_input(name, value)
        except VisChainError as exc:
            return self._finish(trace, None, None, exc, {}, {})
        except OSError as exc:  # the trace directory cannot be written
            error = VisChainError(f"cannot write the trace: {exc}", code=ToolErrorCode.BAD_INPUT)
            return self._finish(trace, None, None, error, {}, {})
        return self._complete(self.run_program(program, named, trace, form=form))

    def run_program(
        self,
        program: str | Parsed,
        named: Mapping[str, Image],
        trace: Trace,
        *,
        form: str = "auto",
        known: Mapping[str, Any] | None = None,
        deadline: float | None = None,
    ) -> RunResult:
        """Parse, check and run ``program`` on ``named`` images into ``trace``, leaving the
        trace open (:meth:`execute` finishes it).

        ``known`` are values computed earlier (an agent round's state): the program may read
        them by name — a line program as variables, a Python program as parameters — and
        they are not computed again; a step that assigns one of their names replaces it.
        ``deadline`` (a ``time.monotonic()`` instant) stops the run early.
        """
        known = dict(known or {})
        source = getattr(program, "source", program)
        if isinstance(source, str):
            trace.set_program(source, form)
        # One pause of the collector over parsing, checking and running (orchestrator.heap):
        # the executor lifts it while it waits for workers, a Python program while its own
        # code runs; a gap between pauses would walk the parsed program once more.
        with collector_paused(self.config.executor.gc_pause):
            return self._run_program(program, named, trace, form, known, deadline)

    def _run_program(
        self,
        program: str | Parsed,
        named: Mapping[str, Image],
        trace: Trace,
        form: str,
        known: dict[str, Any],
        deadline: float | None,
    ) -> RunResult:
        parsed: Parsed | None = None
        try:
            parsed = self._parse(program, form)
            trace.form = parsed.form
            program_form = form_of(parsed)
            readable = program_form.readable(parsed, known)
            inputs = program_form.bind(parsed, {**readable, **named})
            types = {n: value_type(v) for n, v in inputs.items()}
            checked = program_form.check(parsed, self.registry, inputs=types)
        except VisChainError as exc:
            return RunResult(None, parsed, trace, exc, known)
        self._prefetch(program_form.tools_used(parsed))
        machinery = (
            self.machinery if deadline is None else replace(self.machinery, deadline=deadline)
        )
        try:
            run = program_form.run(checked, inputs, machinery, trace)
        except Exception as exc:  # a typed error for the user; the trace keeps finished steps
            error = exc if isinstance(exc, VisChainError) else _internal(exc)
            done = {r.step: r.value for r in trace.steps if r.status == StepStatus.OK}
            return RunResult(None, parsed, trace, error, {**known, **done})
        return RunResult(run.output, parsed, trace, run.error, run.values, run.errors)

    def _prefetch(self, tools: set[str]) -> None:
        """Start loading the models of a checked program's tools (on the pool's loader
        thread), so they load while its first steps run; a failure shows at the step."""
        roles: list[str] = []
        for name in sorted(tools):
            tool = self.registry.get(name) if name in self.registry else None
            roles += getattr(tool, "requires", ())
        if roles and isinstance(self.pool, ModelPool) and self.pool.settings.prefetch:
            self.pool.prefetch(roles)

    def _complete(self, result: RunResult) -> RunResult:
        """Finish the result's trace: record the outcome, export it, save it."""
        done = self._finish(
            result.trace, result.program, result.output, result.error, result.values,
            result.step_errors, rounds=result.rounds,
        )  # fmt: skip
        done.warnings = list(result.warnings)
        return done

    def _finish(
        self,
        trace: Trace,
        program: Parsed | None,
        output: Any,
        error: VisChainError | None,
        values: dict[str, Any],
        errors: dict[str, VisChainError],
        *,
        rounds: Sequence[Round] = (),
    ) -> RunResult:
        trace.finish(output=output, error=error)
        if self.tracer is not None or self.config.telemetry:
            try:
                export_trace(trace, self.tracer)
            except Exception as exc:  # telemetry must never break a run
                log.warning("could not export the run to OpenTelemetry: %s", exc)
        if trace.directory is not None:
            try:
                trace.save(trace.directory)
            except Exception as exc:  # the run's result matters more than its report
                log.warning("could not save the trace to %s: %s", trace.directory, exc)
        return RunResult(output, program, trace, error, values, errors, list(rounds))

    # --- planning ---------------------------------------------------------------------------

    def planner(self, *, agent: bool = False) -> Planner:
        """The planner over the tools that can run here (built on first use). The agent
        loop's planner is also told which tools exist but cannot run here, and why, and
        stops repairing when the same errors come back."""
        with self._planner_lock:
            if agent not in self._planners:
                llm = self.pool.get("llm")
                embedder = (
                    None if self.pool.unavailable("embeddings") else self.pool.get("embeddings")
                )
                extra: dict[str, Any] = {}
                if agent:
                    missing = unavailable_tools(self.registry, self.tool_status())
                    extra = {"unavailable": missing, "catalog": self.registry,
                             "stop_repeated": True}  # fmt: skip
                self._planners[agent] = Planner(
                    self.available_tools(),
                    llm,
                    self.config.planner,
                    embedder=embedder,
                    limits=self.limits,
                    **extra,
                )
            return self._planners[agent]

    def run(
        self,
        instruction: str,
        *,
        image: ImageLike | None = None,
        images: Mapping[str, ImageLike] | None = None,
        voting: int | None = None,
        fallback: str | None = None,
        form: str | None = None,
        trace_dir: str | Path | None = None,
        agent: bool | None = None,
    ) -> RunResult:
        """Plan a program for ``instruction`` with the LLM, then execute it.

        With the agent loop on (``agent: {...}`` in the config, the default; ``agent=False``
        turns it off for this call) the result is checked after each round and the planner
        may accept it, continue from it or rewrite the program (see
        :mod:`orchestrator.agent`); ``RunResult.rounds`` lists the rounds.

        ``voting`` > 1 samples that many programs, runs them all and returns the majority
        answer. ``fallback`` (or the configured one) is a program to run when planning or
        execution fails; ``{instruction}`` in it becomes the instruction as a quoted string.
        Both are recorded in the trace. ``form`` ('lines', 'python' or 'auto') overrides the
        configured program form.
        """
        trace = Trace(instruction=instruction)
        directory = trace_dir or self.config.trace_dir
        if directory is not None:
            stream(trace, directory)
        fallback = fallback if fallback is not None else self.config.planner.fallback
        if self.config.agent.enabled if agent is None else agent:
            return self._run_agent(instruction, image, images, voting, fallback, form, trace)
        try:
            named = to_inputs(_named_images(image, images), limits=self.image_limits)
            planner = self.planner()
            plans = planner.plan(
                instruction,
                list(named) or ["IMAGE"],
                n=voting or self.config.planner.voting,
                form=form,
            )
        except VisChainError as exc:
            return self._finish(trace, None, None, exc, {}, {})
        for plan in plans:
            for attempt in plan.attempts:
                trace.add_planning(attempt.record())
        valid = [p for p in plans if p.ok]
        if not valid:
            error = plans[0].error or PlanningError("no valid program")
            if fallback:
                return self._fallback(
                    instruction, fallback, named, trace, f"planning failed: {error}"
                )
            if plans[0].source:
                trace.set_program(plans[0].source, plans[0].form)
            return self._finish(trace, None, None, error, {}, {})
        if len(valid) == 1:
            result = self.execute(
                valid[0].program, images=named, trace=trace, instruction=instruction
            )
        else:
            result = self._complete(self.vote(valid, named, trace))
        if not result.ok and fallback:
            fresh = Trace(instruction=instruction)
            if directory is not None:
                # keep the failed run's trace beside the fallback's, which takes the main place
                result.trace.save(Path(directory) / "failed-program")
                stream(fresh, directory)
            reason = f"execution failed: {result.error}"
            return self._fallback(instruction, fallback, named, fresh, reason, previous=result)
        return result

    def _run_agent(
        self,
        instruction: str,
        image: ImageLike | None,
        images: Mapping[str, ImageLike] | None,
        voting: int | None,
        fallback: str | None,
        form: str | None,
        trace: Trace,
    ) -> RunResult:
        """``run()`` with the agent loop; the fallback runs when the loop ends in an error
        (not when the instruction needs a tool that cannot run here)."""
        try:
            if self._closed:
                raise OrchestratorClosed("this orchestrator is closed: build a new one")
            named = to_inputs(
                _named_images(image, images), limits=self.image_limits, on_loaded=trace.add_input
            )
            loop = AgentRun(
                self, instruction, named, trace,
                voting=voting or self.config.planner.voting, form=form,
            )  # fmt: skip
            result = loop.run()
        except VisChainError as exc:
            return self._finish(trace, None, None, exc, {}, {})
        except Exception as exc:  # a bug: still a typed error, and the trace is kept
            return self._failed(trace, exc)
        if result.error is not None and fallback and result.error.code != RunErrorCode.CAPABILITY:
            reason = f"the agent loop ended in an error: {result.error}"
            fell_back = self._fallback(instruction, fallback, named, trace, reason)
            fell_back.rounds = result.rounds
            return fell_back
        return self._complete(result)

    def vote(self, plans: list[Plan], named: dict[str, Image], trace: Trace) -> RunResult:
        """Run every candidate; the majority answer wins (ties: the earliest candidate).
        The winner's steps are copied into ``trace``, which is left open."""
        runs = [self.execute(p.program, images=named) for p in plans]
        answers = [r.answer if r.ok else None for r in runs]
        tally = Counter(a for a in answers if a is not None)
        votes = [
            {
                "candidate": i,
                "program": p.source,
                "answer": a,
                "error": None if r.ok else str(r.error),
            }
            for i, (p, a, r) in enumerate(zip(plans, answers, runs, strict=True))
        ]
        trace.add_planning({"kind": "vote", "votes": votes, "tally": dict(tally)})
        winner_answer = tally.most_common(1)[0][0] if tally else None
        index = answers.index(winner_answer) if winner_answer is not None else 0
        winner = runs[index]
        trace.set_program(plans[index].source or "", plans[index].form)
        have = {rec.name for rec in trace.inputs}
        for rec in winner.trace.inputs:
            if rec.name not in have:
                trace.inputs.append(rec)
        for rec in winner.trace.steps:
            trace.add_step(rec)
            trace.finish_step(rec)
        return RunResult(
            winner.output, winner.program, trace, winner.error, winner.values, winner.step_errors
        )

    def _fallback(
        self,
        instruction: str,
        fallback: str,
        named: dict[str, Image],
        trace: Trace,
        reason: str,
        previous: RunResult | None = None,
    ) -> RunResult:
        program = fallback.replace("{instruction}", repr(instruction))
        record: dict[str, Any] = {"kind": "fallback", "reason": reason, "program": program}
        if previous is not None:
            record["failed_program"] = previous.trace.program
            for rec in previous.trace.planning:
                trace.add_planning(rec)
        trace.add_planning(record)
        trace.meta["fallback"] = True
        log.info("running the fallback program (%s)", reason)
        return self.execute(program, images=named, trace=trace, instruction=instruction)

    # --- many at once ---------------------------------------------------------------------

    def map(
        self,
        items: Sequence[str],
        images: Sequence[ImageLike | Mapping[str, ImageLike]] | ImageLike | None = None,
        *,
        concurrency: int = 4,
        mode: str = "auto",
        expected: Sequence[str | None] | None = None,
        trace_dir: str | Path | None = None,
        progress: bool = True,
        engine: str = "threads",
        workers: int | None = None,
        trace_dirs: Sequence[str | Path] | None = None,
        on_result: Callable[[int, RunResult], None] | None = None,
    ) -> list[RunResult]:
        """Run many instructions or programs at once (for evaluations).

        ``items`` are instructions (planned with the LLM) or programs (``mode='execute'``;
        'auto' treats text that parses as a program as one). ``images`` is one image for all,
        or one image (or dict of named images) per item. Up to ``concurrency`` items run at
        the same time, so their batched tool calls coalesce. With ``trace_dir``, item i's
        trace goes to ``trace_dir/i`` and ``report.html`` links them all; ``trace_dirs``
        instead names each item's trace folder (no report). ``on_result(i, result)`` is
        called from the worker thread as each item finishes (e.g. to persist it at once);
        both need the threads engine.

        ``engine="ray"`` spreads the items over ``workers`` Ray worker processes (default:
        ``concurrency``, at most one per item) that share the models of the Serve
        application (``models.serve`` must be set); ``concurrency`` items run at once in all.
        """
        if engine not in ("threads", "ray"):
            raise ValueError(f"unknown engine {engine!r} (use 'threads' or 'ray')")
        if engine == "ray" and (trace_dirs is not None or on_result is not None):
            raise ValueError("trace_dirs and on_result need engine='threads'")
        items = list(items)
        if (
            images is None
            or isinstance(images, (str, bytes, Path))
            or not isinstance(images, Sequence)
        ):
            per_item: list[Any] = [images] * len(items)
        else:
            per_item = list(images)
            if len(per_item) != len(items):
                raise ValueError(f"{len(items)} items but {len(per_item)} images")
        if trace_dirs is not None and len(trace_dirs) != len(items):
            raise ValueError(f"{len(items)} items but {len(trace_dirs)} trace folders")
        results: list[RunResult | None] = [None] * len(items)

        def one(i: int) -> None:
            item, imgs = items[i], per_item[i]
            kwargs: dict[str, Any] = (
                {"images": imgs} if isinstance(imgs, Mapping) else {"image": imgs}
            )
            if trace_dirs is not None:
                kwargs["trace_dir"] = Path(trace_dirs[i])
            elif trace_dir is not None:
                kwargs["trace_dir"] = Path(trace_dir) / f"{i:05d}"
            try:
                if _is_program(item, mode):
                    results[i] = self.execute(item, **kwargs)
                else:
                    results[i] = self.run(item, **kwargs)
            except Exception as exc:  # one item's failure never costs the others theirs
                results[i] = self._failed(Trace(instruction=str(item)), exc)
            if on_result is not None:
                on_result(i, results[i])

        try:
            if engine == "ray":
                from .distributed import map_on_ray

                results[:] = map_on_ray(
                    self.config,
                    items,
                    per_item,
                    mode=mode,
                    concurrency=concurrency,
                    workers=workers,
                    trace_dir=trace_dir,
                    progress=progress,
                    failed=lambda i, exc: self._failed(Trace(instruction=str(items[i])), exc),
                )
            else:
                with ThreadPoolExecutor(
                    max_workers=max(1, concurrency), thread_name_prefix="vischain-map"
                ) as ex:
                    futures = [ex.submit(one, i) for i in range(len(items))]
                    for _ in bar(as_completed(futures), total=len(futures), description="runs",
                                 enabled=progress):  # fmt: skip
                        pass
        finally:
            done = [
                r if r is not None else self._failed(Trace(instruction=str(items[i])),
                                                     RuntimeError("the item did not run"))
                for i, r in enumerate(results)
            ]  # fmt: skip
            if trace_dir is not None:
                expect = list(expected) if expected is not None else [None] * len(items)
                rows = [row_for(i, items[i], r, expect[i]) for i, r in enumerate(done)]
                write_report(rows, trace_dir)
        return done

    def close(self) -> None:
        """Stop the worker threads; later calls return an ``OrchestratorClosed`` error."""
        self._closed = True
        self.workers.shutdown()
        self.executor.close()


class OrchestratorClosed(VisChainError):
    """The orchestrator was closed; it runs nothing more."""

    code = ErrorCode.CANCELLED


def _internal(exc: BaseException) -> VisChainError:
    log.exception("internal error", exc_info=exc)
    error = VisChainError(
        f"internal error: {type(exc).__name__}: {exc}", code=ToolErrorCode.TOOL_ERROR
    )
    error.__cause__ = exc
    return error


_STEP = re.compile(r"^[ \t]*[A-Za-z_]\w*[ \t]*=[ \t]*[A-Za-z_]\w*[ \t]*\(", re.M)


def _is_program(item: str, mode: str) -> bool:
    """Whether ``map`` runs ``item`` as a program (else it plans it as an instruction). In
    'auto' mode, text that has the shape of a program (a ``NAME=Tool(`` line, or text
    another form recognizes) is one, errors and all: its errors are reported, never
    planned."""
    if mode in ("execute", "program"):
        return True
    if mode == "run":
        return False
    if not isinstance(item, str):
        return False
    if detect(item).name != LineForm.name or _STEP.search(item):
        return True
    try:
        parse_program(item)
    except VisChainError:
        return False
    return True


def _named_images(
    image: ImageLike | None, images: Mapping[str, ImageLike] | None, video: Any = None
) -> dict[str, Any]:
    if images is not None and not isinstance(images, Mapping):
        raise VisChainError(
            f"images= takes a dict of named images, not a {type(images).__name__} "
            "(e.g. images={'LEFT': a, 'RIGHT': b}; image= takes one image)",
            code=ToolErrorCode.BAD_INPUT,
        )
    bad = [repr(k) for k in (images or {}) if not isinstance(k, str)]
    if bad:
        raise VisChainError(
            f"image names must be text, got {', '.join(bad[:3])}", code=ToolErrorCode.BAD_INPUT
        )
    named: dict[str, Any] = dict(images or {})
    for key, value in (("IMAGE", image), ("VIDEO", video)):
        if value is not None:
            if key in named:
                raise VisChainError(
                    f"give {key} either as {key.lower()}= or as images['{key}']",
                    code=ToolErrorCode.BAD_INPUT,
                )
            named[key] = value
    return named


_PLAIN = (str, int, float, bool, type(None))


def _plain_values(values: Mapping[str, Any] | None, named: Mapping[str, Any]) -> dict[str, Any]:
    """Non-picture inputs, checked to be text, numbers, booleans or lists/dicts of them
    (copied, so a run never changes the caller's objects)."""

    def plain(value: Any, depth: int = 0) -> Any:
        if isinstance(value, _PLAIN):
            return value
        if depth < 4 and isinstance(value, (list, tuple)):
            return [plain(v, depth + 1) for v in value]
        if depth < 4 and isinstance(value, dict):
            return {str(k): plain(v, depth + 1) for k, v in value.items()}
        raise VisChainError(
            f"input values must be text, numbers or lists of them, not {type(value).__name__}",
            code=ToolErrorCode.BAD_INPUT,
        )

    if values is not None and not isinstance(values, Mapping):
        raise VisChainError("values= takes a dict of named values", code=ToolErrorCode.BAD_INPUT)
    out = {}
    for name, value in (values or {}).items():
        if not isinstance(name, str) or name in named:
            raise VisChainError(
                f"input {name!r} is given twice or is not a name", code=ToolErrorCode.BAD_INPUT
            )
        out[name] = plain(value)
    return out


_DEFAULT: Orchestrator | None = None
_DEFAULT_LOCK = threading.Lock()


def default_orchestrator() -> Orchestrator:
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = Orchestrator()
        return _DEFAULT


def execute(program: str | Parsed, **kwargs: Any) -> RunResult:
    """Run a program with the default orchestrator (see :meth:`Orchestrator.execute`)."""
    return default_orchestrator().execute(program, **kwargs)


def run(instruction: str, **kwargs: Any) -> RunResult:
    """Plan and run with the default orchestrator (see :meth:`Orchestrator.run`)."""
    return default_orchestrator().run(instruction, **kwargs)


__all__ = [
    "Orchestrator",
    "ProgramError",
    "ProgramInvalid",
    "RunResult",
    "default_orchestrator",
    "execute",
]
