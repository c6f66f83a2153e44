"""Run a checked program as a DAG: every ready step at once, batched where a tool batches.

The scheduler (the calling thread) keeps a networkx DAG of the steps. Whenever steps become
ready it resolves their arguments, validates them, groups calls to the same batched tool
into one ``run_batch`` call, and hands the groups to worker threads. Each group runs under a
deadline (step limit, capped by the program limit); an overrun is abandoned and recorded as
a ``time-limit`` error. A failed step keeps everything that finished; the steps that depend
on it are marked skipped; independent steps still run.
"""

from __future__ import annotations

import logging
import queue
import time
from collections import defaultdict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from sandbox import (
    BoundProgram,
    BoundStep,
    Const,
    ErrorCode,
    Expr,
    LimitExceeded,
    ListOf,
    Ref,
    Value,
    VisChainError,
    compile_expression,
)
from tools.base import Tool, ToolContext
from tools.batching import Batcher, default_batcher
from tools.cache import ByteLRU
from tools.errors import ToolError, ToolErrorCode
from tools.registry import Registry
from tools.types import Image, detached, fingerprint

from .errors import RunErrorCode
from .render import summarize
from .trace import ArgRecord, StepRecord, StepStatus, Trace
from .workers import Job, WorkerPool

log = logging.getLogger("vischain.executor")


@dataclass(frozen=True)
class ExecOptions:
    step_time_limit: float | None = 300.0
    program_time_limit: float | None = 1800.0
    max_batch: int = 32


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
        self.graph = nx.DiGraph()
        self.waiting: dict[str, int] = {}
        self.done: queue.SimpleQueue[tuple[_Group, list[Any], float]] = queue.SimpleQueue()
        self.running: dict[int, _Group] = {}
        limit = ex.options.program_time_limit
        own = None if limit is None else time.monotonic() + limit
        self.deadline = min((d for d in (own, deadline) if d is not None), default=None)
        self.keys: dict[str, Hashable] = {}  # memo keys of the calls that may be remembered
        self.probe = ex.context() if ex.memo is not None else None  # model identities for memo keys

    # --- setup -----------------------------------------------------------------------------

    def build(self) -> list[str]:
        for s in self.bound.steps:
            self.graph.add_node(s.target)
            record = StepRecord(
                step=s.target, index=0, line=s.line, text=s.text.strip(), tool=s.tool,
                deps=sorted(s.deps),
            )  # fmt: skip
            self.records[s.target] = self.trace.add_step(record)
            for d in s.deps:
                if d in self.steps:
                    self.graph.add_edge(d, s.target)
                elif d not in self.values:
                    raise VisChainError(
                        f"input '{d}' was not provided",
                        code=ToolErrorCode.BAD_INPUT,
                        line=s.line,
                        step=s.target,
                    )
        self.waiting = {n: self.graph.in_degree(n) for n in self.graph.nodes}
        return [n for n, k in self.waiting.items() if k == 0]

    # --- main loop -------------------------------------------------------------------------

    def execute(self) -> Outcome:
        ready = sorted(self.build(), key=lambda n: self.steps[n].line)
        while ready or self.running:
            if ready:
                ready = self.launch(ready)
                continue
            timeout = self.next_deadline()
            try:
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
        deadlines = [g.deadline for g in self.running.values() if g.deadline is not None]
        if not deadlines:
            return None
        return max(min(deadlines) - time.monotonic(), 0.0)

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
            if step.tool is None:
                record.start = record.end = time.time()
                newly += self.succeed(name, args["value"], duration=0.0)
                continue
            tool = self.ex.registry.get(step.tool)
            try:
                call = tool.prepare(args)
            except VisChainError as exc:
                newly += self.fail(name, exc)
                continue
            if getattr(tool, "inline", False):
                newly += self.run_inline(tool, step, call)
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
        for tool_name, items in groups.items():
            tool = self.ex.registry.get(tool_name)
            size = max(1, min(tool.max_batch, self.ex.options.max_batch))
            for i in range(0, len(items), size):
                self.submit(tool, items[i : i + size])
        return newly

    def resolve(self, step: BoundStep, record: StepRecord) -> dict[str, Any]:
        args: dict[str, Any] = {}
        record.args = []
        for pname, value in step.args.items():
            args[pname] = self.value(step, value)
            source = value.name if isinstance(value, Ref) else None
            record.args.append(ArgRecord(pname, _arg_summary(value, args[pname]), source))
        if step.tool is not None:
            record.context = next((v for v in args.values() if isinstance(v, Image)), None)
        return args

    def value(self, step: BoundStep, value: Value) -> Any:
        if isinstance(value, Const):
            return list(value.value) if isinstance(value.value, tuple) else value.value
        if isinstance(value, Ref):
            return self.values[value.name]
        if isinstance(value, ListOf):
            return [self.value(step, v) for v in value.items]
        if isinstance(value, Expr):
            return compile_expression(value.source).bind(self.values)
        raise TypeError(f"unknown value {value!r}")

    def context(self, deadline: float | None) -> ToolContext:
        ctx = self.ex.context()
        ctx.deadline = deadline
        return ctx

    def step_deadline(self) -> float | None:
        limit = self.ex.options.step_time_limit
        candidates = [
            d for d in (self.deadline, None if limit is None else time.monotonic() + limit) if d
        ]
        return min(candidates) if candidates else None

    def run_inline(self, tool: Tool, step: BoundStep, call: dict[str, Any]) -> list[str]:
        """Cheap tools (Count, Eval, Result...) run in the scheduler thread: no hand-off cost.
        Their own limits (the evaluator's budget) still apply."""
        ctx = self.context(self.step_deadline())
        record = self.records[step.target]
        record.start = time.time()
        t0 = time.perf_counter()
        try:
            value = tool.invoke(ctx, call)
        except Exception as exc:
            record.end = time.time()
            record.duration = time.perf_counter() - t0
            record.meta.update(ctx.meta)
            return self.fail(step.target, _as_error(exc, tool))
        record.end = time.time()
        record.meta.update(ctx.meta)
        return self.succeed(step.target, value, duration=time.perf_counter() - t0)

    def submit(self, tool: Tool, items: list[tuple[BoundStep, dict[str, Any]]]) -> None:
        deadline = self.step_deadline()
        group = _Group(
            tool=tool,
            steps=[s for s, _ in items],
            calls=[c for _, c in items],
            records=[self.records[s.target] for s, _ in items],
            ctx=self.context(deadline),
            deadline=deadline,
        )
        for s in group.steps:
            self.status[s.target] = StepStatus.RUNNING
            self.records[s.target].status = StepStatus.RUNNING
        batched = tool.max_batch > 1

        def work() -> None:
            group.started = time.time()
            t0 = time.perf_counter()
            try:
                if batched:
                    results = list(self.ex.batcher.run(tool, group.ctx, group.calls))
                    if len(results) != len(group.calls):
                        n, k = len(results), len(group.calls)
                        raise ToolError(f"{tool.name}.run_batch returned {n} results for {k} calls")
                else:
                    results = [tool.invoke(group.ctx, group.calls[0])]
            except Exception as exc:
                results = [exc] * len(group.calls)
            self.done.put((group, results, time.perf_counter() - t0))

        group.job = self.ex.pool.submit(work)
        self.running[group.job.id] = group

    def collect(self, group: _Group, results: list[Any], seconds: float) -> list[str]:
        newly: list[str] = []
        end = time.time()
        for step, record, result in zip(group.steps, group.records, results, strict=True):
            record.start = group.started
            record.end = end
            record.batch_size = len(group.steps)
            record.meta.update(group.ctx.meta)
            if isinstance(result, BaseException):
                newly += self.fail(step.target, _as_error(result, group.tool), duration=seconds)
            else:
                key = self.keys.get(step.target)
                if key is not None:
                    self.remember(key, result)
                newly += self.succeed(step.target, result, duration=seconds)
        return newly

    def expire(self) -> list[str]:
        """Abandon every running group whose deadline has passed."""
        now = time.monotonic()
        newly: list[str] = []
        for job_id, group in list(self.running.items()):
            if group.deadline is None or group.deadline > now:
                continue
            del self.running[job_id]
            group.ctx.cancel.set()
            if group.job is not None:
                self.ex.pool.abandon(group.job)
            which = (
                "program"
                if self.deadline is not None and group.deadline >= self.deadline
                else "step"
            )
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

    def succeed(self, name: str, value: Any, *, duration: float) -> list[str]:
        self.values[name] = value
        self.status[name] = StepStatus.OK
        record = self.records[name]
        record.status = StepStatus.OK
        record.duration = duration
        record.value = value
        record.output = summarize(value)
        self.trace.finish_step(record)
        newly = []
        for succ in self.graph.successors(name):
            self.waiting[succ] -= 1
            if self.waiting[succ] == 0 and self.status[succ] == StepStatus.PENDING:
                newly.append(succ)
        return newly

    def fail(self, name: str, error: VisChainError, *, duration: float | None = None) -> list[str]:
        step = self.steps[name]
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
        for desc in sorted(nx.descendants(self.graph, name), key=lambda n: self.steps[n].line):
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


def _as_error(exc: BaseException, tool: Tool) -> VisChainError:
    if isinstance(exc, VisChainError):
        return exc
    error = ToolError(f"{tool.name} failed: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


def _arg_summary(value: Value, resolved: Any) -> str:
    if isinstance(value, Ref):
        return f"{value.name}: {summarize(resolved)['text']}"
    if isinstance(value, Expr):
        return value.source
    return summarize(resolved)["text"] if not isinstance(resolved, list) else repr(resolved)
