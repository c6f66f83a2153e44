"""Run a checked program as a DAG: every ready step at once, batched where a tool batches.

The scheduler (the calling thread) keeps the DAG of the steps: each step's dependents and
how many of its dependencies are still unfinished. Whenever steps become ready it resolves
their arguments, validates them, groups calls to the same batched tool
into one ``run_batch`` call, and hands the groups to worker threads. Each group runs under a
deadline (the step limit, counted from when a worker starts it, capped by the program
limit); an overrun is abandoned and recorded as a ``time-limit`` error. A failed step keeps
everything that finished; the steps that depend on it are marked skipped; independent
steps still run. Each group counts as a caller in flight (a ticket in
:data:`tools.waiting.CALLERS`) from its hand-off until its work ends, so a batching leader
with no other caller in flight runs at once instead of waiting for company.

Faults stay contained: a tool whose abandoned call is still running is *degraded* — new
calls to it fail at once with :class:`~tools.errors.ToolDegraded` naming it, until that call
returns (the worker pool bounds the threads such calls hold). Inline tools run in the
scheduler thread under a watchdog that interrupts them at the step deadline (one watchdog
slot per run, given each inline step's deadline in turn), each with a
context of its own derived from the run's (one cancellation event for the run's inline
calls, which nothing but their deadline stops). The cyclic garbage collector is paused
while the scheduler works (from building the run's records on) and runs while it waits
for workers (``ExecOptions.pause_gc``, see :mod:`orchestrator.heap`). Every value a tool
returns is checked against its declared output type, and nothing a tool raises leaves the
run as anything but a typed error on its step.
"""

from __future__ import annotations

import copy
import logging
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sandbox import (
    BoundProgram,
    BoundStep,
    Const,
    ErrorCode,
    Expr,
    Expression,
    LimitExceeded,
    ListOf,
    Ref,
    Value,
    VisChainError,
    compile_expression,
)
from tools.base import Tool, ToolContext
from tools.batching import Batcher, default_batcher, run_calls
from tools.cache import ByteLRU
from tools.errors import ToolDegraded, ToolError, ToolErrorCode, ToolInputError, ToolOutputError
from tools.isolate import IsolatedTool, wants_process
from tools.registry import Registry
from tools.types import Image, detached, fingerprint
from tools.waiting import CALLERS, Ticket

from .errors import RunErrorCode
from .heap import collector_paused, collector_running
from .render import summarize
from .trace import ArgRecord, StepRecord, StepStatus, Trace
from .workers import DeadlineExceeded, Job, Slot, WorkerPool, watchdog

log = logging.getLogger("vischain.executor")


@dataclass(frozen=True)
class ExecOptions:
    step_time_limit: float | None = 300.0
    program_time_limit: float | None = 1800.0
    max_batch: int = 32
    pause_gc: bool = True  # no cyclic collection while the scheduler runs (orchestrator.heap)


class StepSkipped(VisChainError):
    """A step did not run because a step it depends on failed."""

    code = RunErrorCode.SKIPPED


@dataclass
class _Group:
    tool: Tool
    steps: list[BoundStep]
    calls: list[dict[str, Any]]
    records: list[StepRecord]
    ctx: ToolContext
    deadline: float | None
    job: Job | None = None
    started: float | None = None
    isolated: IsolatedTool | None = None  # runs in a child process that can be killed
    ticket: Ticket | None = None  # a caller in flight (tools.waiting.CALLERS) until its work ends


@dataclass
class Outcome:
    """What a run produced: every value by name, and the first error that matters."""

    values: dict[str, Any]
    status: dict[str, StepStatus]
    errors: dict[str, VisChainError] = field(default_factory=dict)


ContextFactory = Callable[[], ToolContext]


class Executor:
    """Schedules bound programs on a shared worker pool."""

    def __init__(
        self,
        registry: Registry,
        *,
        context: ContextFactory = ToolContext,
        options: ExecOptions | None = None,
        pool: WorkerPool | None = None,
        batcher: Batcher | None = None,
        memo: ByteLRU | None = None,
    ) -> None:
        """``batcher`` coalesces batched tools' calls with other programs' (default: the
        process-wide one); ``memo`` remembers tool results by content (None: no memo)."""
        self.registry = registry
        self.context = context
        self.options = options or ExecOptions()
        self.pool = pool or WorkerPool(4)
        self.batcher = batcher or default_batcher()
        self.memo = memo
        self._isolated: dict[str, IsolatedTool] = {}
        self._isolated_lock = threading.Lock()

    def isolated(self, tool: Tool, ctx: ToolContext) -> IsolatedTool | None:
        """The child process that runs ``tool``, when the config isolates it."""
        if not wants_process(ctx, tool):
            return None
        with self._isolated_lock:
            runner = self._isolated.get(tool.spec.name)
            if runner is None:
                runner = IsolatedTool(tool, getattr(ctx.models, "settings", None))
                self._isolated[tool.spec.name] = runner
            return runner

    def close(self) -> None:
        """Stop the isolated tools' processes."""
        with self._isolated_lock:
            runners, self._isolated = list(self._isolated.values()), {}
        for runner in runners:
            runner.close()

    def memo_key(
        self, tool: Tool, call: Mapping[str, Any], ctx: ToolContext | None
    ) -> Hashable | None:
        """(tool, the models it uses, its arguments' content), or None if not memoisable."""
        if self.memo is None or ctx is None or not tool.cacheable or getattr(tool, "inline", False):
            return None
        models = []
        for role in tool.requires:
            spec = ctx.models.resolve(role)[0] if ctx.models is not None else None
            models.append(spec.key() if spec is not None else role)
        try:
            args = tuple((k, fingerprint(v)) for k, v in sorted(call.items()))
        except TypeError:
            return None
        return (tool.spec.name, tuple(models), args)

    def run(
        self,
        bound: BoundProgram,
        inputs: Mapping[str, Any],
        trace: Trace,
        *,
        deadline: float | None = None,
    ) -> Outcome:
        """Run ``bound`` on ``inputs`` (values by name), recording into ``trace``; stop at
        the program time limit or ``deadline`` (a ``time.monotonic()`` instant), if sooner."""
        with collector_paused(self.options.pause_gc):  # building the run is scheduler work
            return _Run(self, bound, inputs, trace, deadline).execute()


class _Run:
    def __init__(
        self,
        ex: Executor,
        bound: BoundProgram,
        inputs: Mapping[str, Any],
        trace: Trace,
        deadline: float | None = None,
    ) -> None:
        self.ex = ex
        self.bound = bound
        self.trace = trace
        self.values: dict[str, Any] = dict(inputs)
        self.steps = {s.target: s for s in bound.steps}
        self.status: dict[str, StepStatus] = dict.fromkeys(self.steps, StepStatus.PENDING)
        self.errors: dict[str, VisChainError] = {}
        self.records: dict[str, StepRecord] = {}
        self.dependents: dict[str, list[str]] = {name: [] for name in self.steps}
        self.waiting: dict[str, int] = {}  # unfinished dependencies of each step
        self.done: queue.SimpleQueue[tuple[_Group, list[Any], float]] = queue.SimpleQueue()
        self.running: dict[int, _Group] = {}
        limit = ex.options.program_time_limit
        own = None if limit is None else time.monotonic() + limit
        self.deadline = min((d for d in (own, deadline) if d is not None), default=None)
        self.keys: dict[str, Hashable] = {}  # memo keys of the calls that may be remembered
        self.tools: dict[str, tuple[Tool, bool]] = {}  # by name: the tool, whether inline
        self.probe = ex.context() if ex.memo is not None else None  # model identities for memo keys
        self.guard: Slot  # the watchdog's slot for inline steps, while execute runs

    # --- setup -----------------------------------------------------------------------------

    def build(self) -> list[str]:
        for s in self.bound.steps:
            record = StepRecord(
                step=s.target, index=0, line=s.line, text=s.text.strip(), tool=s.tool,
                deps=sorted(s.deps),
            )  # fmt: skip
            self.records[s.target] = self.trace.add_step(record)
            waiting = 0
            for d in s.deps:
                if d in self.steps:
                    self.dependents[d].append(s.target)
                    waiting += 1
                elif d not in self.values:
                    raise VisChainError(
                        f"input '{d}' was not provided",
                        code=ToolErrorCode.BAD_INPUT,
                        line=s.line,
                        step=s.target,
                    )
            self.waiting[s.target] = waiting
        return [n for n, k in self.waiting.items() if k == 0]

    # --- main loop -------------------------------------------------------------------------

    def execute(self) -> Outcome:
        ready = sorted(self.build(), key=lambda n: self.steps[n].line)
        pause = self.ex.options.pause_gc
        with watchdog().slot() as self.guard:  # the collector paused (Executor.run)
            while ready or self.running:
                if ready:
                    ready = self.launch(ready)
                    continue
                timeout = self.next_deadline()
                try:
                    with collector_running(pause):  # while the workers work (every pause)
                        group, results, finished = self.done.get(timeout=timeout)
                except queue.Empty:
                    ready = self.expire()
                    continue
                if group.job is None or group.job.id not in self.running:
                    continue  # abandoned earlier; its result is dropped
                del self.running[group.job.id]
                ready = self.collect(group, results, finished)
        return Outcome(self.values, self.status, self.errors)

    def next_deadline(self) -> float | None:
        """Seconds until the soonest deadline of a running group. A group that has not
        started yet may start while the scheduler waits, so the wait is at most one step
        limit: no group that starts meanwhile can pass its deadline unseen."""
        now = time.monotonic()
        deadlines = [g.deadline for g in self.running.values() if g.deadline is not None]
        limit = self.ex.options.step_time_limit
        if limit is not None and any(g.started is None for g in self.running.values()):
            deadlines.append(now + limit)
        if not deadlines:
            return None
        return max(min(deadlines) - now, 0.0)

    def launch(self, ready: list[str]) -> list[str]:
        """Start every ready step; return steps made ready by those that finished inline."""
        newly: list[str] = []
        groups: dict[str, list[tuple[BoundStep, dict[str, Any]]]] = defaultdict(list)
        for name in ready:
            if self.status[name] != StepStatus.PENDING:
                continue
            if self.deadline is not None and time.monotonic() > self.deadline:
                self.fail(
                    name, LimitExceeded("the program ran out of time", code=ErrorCode.TIME_LIMIT)
                )
                continue
            step = self.steps[name]
            record = self.records[name]
            try:
                args = self.resolve(step, record)
            except VisChainError as exc:
                newly += self.fail(name, exc)
                continue
            except Exception as exc:  # e.g. an argument whose summary cannot be made
                newly += self.fail(name, ToolInputError(f"bad argument: {_describe(exc)}"))
                continue
            if step.tool is None:
                record.start = record.end = time.time()
                newly += self.succeed(name, args["value"], duration=0.0)
                continue
            tool, inline = self.tool(step.tool)
            try:
                call = tool.prepare(args)
            except VisChainError as exc:
                newly += self.fail(name, exc)
                continue
            except Exception as exc:  # a plug-in's own validation may raise anything
                error = ToolInputError(f"{tool.name}: bad arguments: {_describe(exc)}")
                newly += self.fail(name, error)
                continue
            if inline:
                newly += self.run_inline(tool, step, call)
                continue
            degraded = self.degraded(tool)
            if degraded is not None:
                newly += self.fail(name, degraded)
                continue
            key = self.ex.memo_key(tool, call, self.probe)
            if key is not None:
                self.keys[name] = key
                found = self.ex.memo.get(key)  # type: ignore[union-attr]
                if found is not None:
                    record.start = record.end = time.time()
                    record.meta.update(cache_hit=True, memoised=True)
                    newly += self.succeed(name, detached(found[0]), duration=0.0)  # own copy
                    continue
            groups[tool.spec.name].append((step, call))
        parts = []
        for tool_name, items in groups.items():
            tool = self.ex.registry.get(tool_name)
            size = max(1, min(tool.max_batch, self.ex.options.max_batch))
            parts += [(tool, items[i : i + size]) for i in range(0, len(items), size)]
        tickets = [CALLERS.ticket() for _ in parts]  # all in flight before any starts
        for (tool, part), ticket in zip(parts, tickets, strict=True):
            self.submit(tool, part, ticket)
        return newly

    def resolve(self, step: BoundStep, record: StepRecord) -> dict[str, Any]:
        args: dict[str, Any] = {}
        record.args = []
        for pname, value in step.args.items():
            args[pname] = self.value(step, value)
            source = value.name if isinstance(value, Ref) else None
            summary, kind = _arg_summary(value, args[pname])
            record.args.append(ArgRecord(pname, summary, source, kind))
        if step.tool is not None:
            for v in args.values():
                if isinstance(v, Image):
                    record.context = v
                    break
        return args

    def value(self, step: BoundStep, value: Value) -> Any:
        if isinstance(value, Const):
            return list(value.value) if isinstance(value.value, tuple) else value.value
        if isinstance(value, Ref):
            return self.values[value.name]
        if isinstance(value, ListOf):
            return [self.value(step, v) for v in value.items]
        if isinstance(value, Expr):
            compiled = value.compiled  # the checker's, shared: parsed once per run
            if not isinstance(compiled, Expression):
                compiled = compile_expression(value.source)
            return compiled.bind(self.values)
        raise TypeError(f"unknown value {value!r}")

    def tool(self, name: str) -> tuple[Tool, bool]:
        """The tool called ``name`` and whether it runs inline here (an inline tool the
        config isolates in a process does not); looked up once per run."""
        found = self.tools.get(name)
        if found is None:
            tool = self.ex.registry.get(name)
            inline = getattr(tool, "inline", False)
            inline = inline and not wants_process(self.probe_context(), tool)
            found = self.tools[name] = (tool, inline)
        return found

    def probe_context(self) -> ToolContext:
        """A context for reading options (made once per run)."""
        if self.probe is None:
            self.probe = self.ex.context()
        return self.probe

    def context(self, deadline: float | None) -> ToolContext:
        ctx = self.ex.context()
        ctx.deadline = deadline
        return ctx

    def step_deadline(self) -> float | None:
        """The deadline of a step starting now: the step limit, capped by the program's."""
        limit = self.ex.options.step_time_limit
        if limit is None:
            return self.deadline
        own = time.monotonic() + limit
        return own if self.deadline is None else min(own, self.deadline)

    def run_inline(self, tool: Tool, step: BoundStep, call: dict[str, Any]) -> list[str]:
        """Cheap tools (Count, Eval, Result...) run in the scheduler thread: no hand-off cost.
        Their own limits (the evaluator's budget) still apply."""
        ctx = self.probe_context().derive(deadline=self.step_deadline())
        record = self.records[step.target]
        record.start = time.time()
        t0 = time.perf_counter()
        try:
            with self.guard.until(ctx.deadline):
                value = tool.invoke(ctx, call)
        except DeadlineExceeded:
            value = LimitExceeded(
                f"{tool.name} did not finish within the {self.limit_name(ctx.deadline)} time limit",
                code=ErrorCode.TIME_LIMIT,
            )
        except Exception as exc:
            value = exc
        record.end = time.time()
        record.duration = time.perf_counter() - t0
        record.meta.update(ctx.meta)
        return self.outcome(step.target, tool, value, duration=record.duration)

    def degraded(self, tool: Tool) -> ToolDegraded | None:
        """The error for a call to ``tool`` while an abandoned call of it still runs, or
        while abandoned calls hold every worker."""
        pool = self.ex.pool
        stuck = pool.stuck(tool.spec.name)
        if stuck:
            return ToolDegraded(
                f"{tool.name} is degraded: {stuck} earlier call(s) overran the time limit and "
                "have not returned yet; it accepts calls again once they do",
                tool=tool.spec.name,
            )
        if pool.exhausted():
            held = ", ".join(sorted(pool.stuck_tags()))
            return ToolDegraded(
                f"{tool.name} cannot run: every worker is held by a call that overran its time "
                f"limit ({held}); calls run again once one returns",
                tool=tool.spec.name,
            )
        return None

    def limit_name(self, deadline: float | None) -> str:
        """Which limit a deadline is: the program's (when it is the sooner) or the step's."""
        if self.deadline is not None and deadline is not None and deadline >= self.deadline:
            return "program"
        return "step"

    def submit(
        self, tool: Tool, items: list[tuple[BoundStep, dict[str, Any]]], ticket: Ticket
    ) -> None:
        """Queue one group on the worker pool, a caller in flight under ``ticket`` until its
        work ends. While it waits only the program deadline applies; the step limit counts
        from when a worker starts it."""
        deadline = self.deadline
        group = _Group(
            tool=tool,
            steps=[s for s, _ in items],
            calls=[c for _, c in items],
            records=[self.records[s.target] for s, _ in items],
            ctx=self.context(deadline),
            deadline=deadline,
            ticket=ticket,
        )
        try:
            group.isolated = self.ex.isolated(tool, group.ctx)
        except VisChainError as exc:  # the config isolates a tool that cannot be
            ticket.close()
            for s in group.steps:
                self.fail(s.target, exc)
            return
        for s in group.steps:
            self.status[s.target] = StepStatus.RUNNING
            self.records[s.target].status = StepStatus.RUNNING
        batched = tool.max_batch > 1

        def work() -> None:
            group.deadline = group.ctx.deadline = self.step_deadline()
            group.started = time.time()  # after the deadline: see next_deadline
            t0 = time.perf_counter()
            with ticket:  # closed before the scheduler hears: a next group finds it gone
                try:
                    degraded = self.degraded(tool)  # a call of it got stuck while this queued
                    if degraded is not None:
                        raise degraded
                    if group.isolated is not None:
                        results = group.isolated.run_batch(group.ctx, group.calls)
                    elif batched:
                        results = list(self.ex.batcher.run(tool, group.ctx, group.calls))
                        if len(results) != len(group.calls):
                            n, k = len(results), len(group.calls)
                            raise ToolError(
                                f"{tool.name}.run_batch returned {n} results for {k} calls"
                            )
                    else:
                        results = run_calls(tool, group.ctx, group.calls)
                except Exception as exc:
                    results = [exc] * len(group.calls)
            self.done.put((group, results, time.perf_counter() - t0))

        try:
            group.job = self.ex.pool.submit(work, tag=tool.spec.name)
        except VisChainError as exc:  # closed while the program ran
            ticket.close()
            for s in group.steps:
                self.fail(s.target, exc)
            return
        self.running[group.job.id] = group

    def collect(self, group: _Group, results: list[Any], seconds: float) -> list[str]:
        newly: list[str] = []
        end = time.time()
        for step, record, result in zip(group.steps, group.records, results, strict=True):
            record.start = group.started
            record.end = end
            record.batch_size = len(group.steps)
            record.meta.update(group.ctx.meta)
            newly += self.outcome(step.target, group.tool, result, duration=seconds)
        return newly

    def outcome(self, name: str, tool: Tool, result: Any, *, duration: float) -> list[str]:
        """Record what a tool returned for step ``name``: a value of its declared type, or a
        typed error (whatever it raised or returned instead)."""
        summary: dict[str, Any] | None = None
        if not isinstance(result, BaseException):
            try:
                tool.check_output(result)
                summary = summarize(result)
            except VisChainError as exc:
                result = exc
            except Exception as exc:  # e.g. a plug-in value whose __str__ raises
                result = ToolOutputError(
                    f"{tool.name} returned a {type(result).__name__} that cannot be shown: "
                    f"{_describe(exc)}"
                )
        if isinstance(result, BaseException):
            return self.fail(name, _as_error(result, tool), duration=duration)
        key = self.keys.get(name)
        if key is not None:
            self.remember(key, result)
        return self.succeed(name, result, duration=duration, summary=summary)

    def expire(self) -> list[str]:
        """Abandon every running group whose deadline has passed."""
        now = time.monotonic()
        newly: list[str] = []
        for job_id, group in list(self.running.items()):
            if group.deadline is None or group.deadline > now:
                continue
            del self.running[job_id]
            group.ctx.cancel.set()  # an isolated tool's child is killed when it sees this
            if group.ticket is not None:  # a job dropped before it started never closes it
                group.ticket.close()
            if group.job is not None and group.isolated is None:
                self.ex.pool.abandon(group.job)
            which = self.limit_name(group.deadline)
            for step, record in zip(group.steps, group.records, strict=True):
                record.start = group.started
                record.end = time.time()
                record.batch_size = len(group.steps)
                error = LimitExceeded(
                    f"{group.tool.name} did not finish within the {which} time limit",
                    code=ErrorCode.TIME_LIMIT,
                )
                newly += self.fail(step.target, error)
        return newly

    # --- outcomes --------------------------------------------------------------------------

    def remember(self, key: Hashable, result: Any) -> None:
        """Memoise a private copy: the run goes on using (and may mutate) its own value."""
        try:
            self.ex.memo.put(key, (detached(result),))  # type: ignore[union-attr]
        except ValueError:
            log.debug("not memoised: %s", key)  # nested too deeply to copy

    def succeed(
        self, name: str, value: Any, *, duration: float, summary: dict[str, Any] | None = None
    ) -> list[str]:
        self.values[name] = value
        self.status[name] = StepStatus.OK
        record = self.records[name]
        record.status = StepStatus.OK
        record.duration = duration
        record.value = value
        record.output = summary if summary is not None else summarize(value)
        self.trace.finish_step(record)
        newly = []
        for succ in self.dependents[name]:
            self.waiting[succ] -= 1
            if self.waiting[succ] == 0 and self.status[succ] == StepStatus.PENDING:
                newly.append(succ)
        return newly

    def fail(self, name: str, error: VisChainError, *, duration: float | None = None) -> list[str]:
        step = self.steps[name]
        if error.step is not None and error.step != name:  # one error shared by a group
            error = copy.copy(error)
            error.line = error.step = None
        error.located(line=step.line, step=name)
        self.status[name] = StepStatus.ERROR
        self.errors[name] = error
        record = self.records[name]
        record.status = StepStatus.ERROR
        record.error = error.to_dict()
        if duration is not None:
            record.duration = duration
        self.trace.finish_step(record)
        log.info("step %s (line %s) failed: %s", name, step.line, error)
        for desc in sorted(self.descendants(name), key=lambda n: self.steps[n].line):
            if self.status[desc] == StepStatus.PENDING:
                self.status[desc] = StepStatus.SKIPPED
                skipped = StepSkipped(
                    f"skipped because step {name} (line {step.line}) failed",
                    line=self.steps[desc].line,
                    step=desc,
                )
                self.errors[desc] = skipped
                rec = self.records[desc]
                rec.status = StepStatus.SKIPPED
                rec.error = skipped.to_dict()
                self.trace.finish_step(rec)
        return []

    def descendants(self, name: str) -> set[str]:
        """Every step that depends on ``name``, directly or through others."""
        found: set[str] = set()
        stack = list(self.dependents[name])
        while stack:
            step = stack.pop()
            if step not in found:
                found.add(step)
                stack.extend(self.dependents[step])
        return found


def _as_error(exc: BaseException, tool: Tool) -> VisChainError:
    """A typed error for whatever a tool raised (its message names the tool)."""
    if isinstance(exc, VisChainError):
        return exc
    if isinstance(exc, RecursionError):
        error: VisChainError = LimitExceeded(
            f"{tool.name} failed: its data is nested too deeply", code=ErrorCode.DEPTH_LIMIT
        )
    elif isinstance(exc, MemoryError):
        error = LimitExceeded(
            f"{tool.name} failed: it ran out of memory ({_describe(exc)})",
            code=ErrorCode.SIZE_LIMIT,
        )
    else:
        error = ToolError(f"{tool.name} failed: {_describe(exc)}")
    error.__cause__ = exc
    return error


def _describe(exc: BaseException) -> str:
    """``Type: message``, even for an exception whose ``__str__`` raises."""
    try:
        text = str(exc)
    except Exception:
        text = "(its message cannot be shown)"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _arg_summary(value: Value, resolved: Any) -> tuple[str, str | None]:
    """An argument's summary for its record, and its value's type (None for an expression:
    its summary is its text)."""
    if isinstance(value, Expr):
        return value.source, None
    summary = summarize(resolved)
    if isinstance(value, Ref):
        return f"{value.name}: {summary['text']}", summary["type"]
    return summary["text"] if not isinstance(resolved, list) else repr(resolved), summary["type"]
