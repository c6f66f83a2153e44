"""The trace of one run, as a plain record: planning rounds, every step's arguments, output,
timing and error, and the agent loop's rounds.

The record knows its own JSON form — :meth:`Trace.records` (one dict per line of
``trace.jsonl``: run, input, planning, program, step, result) and :meth:`Trace.from_records`
— and nothing about files, pictures or pages. Whoever wants each record as it happens
attaches a :class:`TraceSink`; :mod:`orchestrator.writer` is the one that streams records to
``trace.jsonl`` and writes pictures and ``index.html`` (``Trace.save`` hands over to it).

A trace read back from disk is untrusted data: :meth:`Trace.from_records` keeps only the
fields it knows, of the types it expects, and raises :class:`TraceFormatError` otherwise.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from .jsonl import json_objects
from .render import summarize

TRACE_FILE = "trace.jsonl"


class TraceFormatError(ValueError):
    """A ``trace.jsonl`` that is not a trace (names the line)."""


class StepStatus(StrEnum):
    """Where a step is: ``pending`` → ``running`` → ``ok`` | ``error``; ``skipped`` when a
    step it depends on failed. The values are what ``trace.jsonl`` stores."""

    PENDING = "pending"
    RUNNING = "running"
    OK = "ok"
    ERROR = "error"
    SKIPPED = "skipped"


@dataclass
class ArgRecord:
    name: str
    summary: str
    source: str | None = None  # the step or input this value came from
    type: str | None = None  # the value's type as summaries name it (Text, Image, TextList…)


@dataclass
class StepRecord:
    step: str
    index: int
    line: int
    text: str
    tool: str | None
    args: list[ArgRecord] = field(default_factory=list)
    deps: list[str] = field(default_factory=list)
    status: StepStatus = StepStatus.PENDING
    output: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    start: float | None = None
    end: float | None = None
    duration: float | None = None
    batch_size: int = 1
    meta: dict[str, Any] = field(default_factory=dict)
    artifact: str | None = None  # "artifacts/<name>.png" inside the trace directory
    value: Any = field(default=None, repr=False, compare=False)
    context: Any = field(default=None, repr=False, compare=False)  # the image it was drawn on

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step, "index": self.index, "line": self.line, "text": self.text,
            "tool": self.tool,
            "args": [
                {"name": a.name, "summary": a.summary, "source": a.source, "type": a.type}
                for a in self.args
            ],
            "deps": list(self.deps), "status": str(self.status), "output": self.output,
            "error": self.error, "start": self.start, "end": self.end, "duration": self.duration,
            "batch_size": self.batch_size, "meta": dict(self.meta), "artifact": self.artifact,
            "type": "step",
        }  # fmt: skip


@dataclass
class InputRecord:
    name: str
    summary: dict[str, Any]
    artifact: str | None = None
    value: Any = field(default=None, repr=False, compare=False)


class TraceSink(Protocol):
    """Receives each record of a trace as it is made (the JSON form of :meth:`Trace.records`)."""

    def emit(self, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class TraceSaver(Protocol):
    """Writes a trace's files into a directory and returns it (see ``orchestrator.writer``)."""

    def __call__(self, trace: Trace, directory: str | Path | None, *, html: bool) -> Path: ...


_saver: TraceSaver | None = None


def use_saver(saver: TraceSaver) -> None:
    """Make ``saver`` what :meth:`Trace.save` calls (``orchestrator.writer`` registers itself)."""
    global _saver
    _saver = saver


class Trace:
    """Everything that happened in one run. Thread-safe for the executor's updates."""

    def __init__(
        self,
        *,
        instruction: str | None = None,
        program: str | None = None,
        form: str | None = None,
        run_id: str | None = None,
    ) -> None:
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.created = time.time()
        self.instruction = instruction
        self.program = program
        self.form = form
        self.inputs: list[InputRecord] = []
        self.planning: list[dict[str, Any]] = []
        self.steps: list[StepRecord] = []
        self.rounds: list[dict[str, Any]] = []  # the agent loop's rounds (Round.to_dict())
        self.round: int | None = None  # the agent round new steps belong to
        self.result: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self.finished: float | None = None
        self.meta: dict[str, Any] = {}
        self.directory: Path | None = None  # where its files are, once a writer put them there
        self.lock = threading.RLock()  # held by writers while they read a live trace
        self._sinks: list[TraceSink] = []

    # --- observers ---------------------------------------------------------------------------

    def attach(self, sink: TraceSink) -> None:
        """Send ``sink`` every record made so far, then each new one as it is made."""
        with self.lock:
            for record in self.records(final=False):
                sink.emit(record)
            self._sinks.append(sink)

    def _emit(self, record: dict[str, Any] | Callable[[], dict[str, Any]]) -> None:
        if not self._sinks:
            return
        made = record() if callable(record) else record
        for sink in self._sinks:
            sink.emit(made)

    # --- recording ---------------------------------------------------------------------------

    def set_program(self, program: str, form: str) -> None:
        with self.lock:
            self.program = program
            self.form = form
            self._emit({"type": "program", "program": program, "form": form})

    def add_input(self, name: str, value: Any) -> None:
        with self.lock:
            rec = InputRecord(name, summarize(value), value=value)
            self.inputs.append(rec)
            self._emit(lambda: _input_record(rec))

    def add_planning(self, record: dict[str, Any]) -> None:
        with self.lock:
            if self.round is not None:
                record = {**record, "round": self.round}
            self.planning.append(record)
            self._emit({"type": "planning", **record})

    def add_round(self, record: dict[str, Any]) -> None:
        """An agent round was decided (see :class:`orchestrator.rounds.Round`)."""
        with self.lock:
            self.rounds.append(record)
            self._emit({"type": "round", **record})

    def add_step(self, record: StepRecord) -> StepRecord:
        with self.lock:
            if self.round is not None:
                record.meta.setdefault("round", self.round)
            record.index = len(self.steps)
            self.steps.append(record)
            return record

    def finish_step(self, record: StepRecord) -> None:
        """A step reached a final status: tell the sinks."""
        with self.lock:
            self._emit(record.to_json)

    def finish(self, *, output: Any = None, error: Any = None) -> None:
        with self.lock:
            self.finished = time.time()
            self.result = summarize(output) if error is None else None
            if error is not None:
                self.error = (
                    error.to_dict() if hasattr(error, "to_dict") else {"message": str(error)}
                )
            self._emit(self._result_record)
            for sink in self._sinks:
                sink.close()
            self._sinks.clear()

    def __getstate__(self) -> dict[str, Any]:
        """Traces cross process boundaries (``map(engine="ray")``): the record travels, its
        lock and attached sinks (open files) stay behind."""
        state = self.__dict__.copy()
        state["lock"] = None
        state["_sinks"] = []
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.lock = threading.RLock()

    def step(self, name: str) -> StepRecord:
        for rec in self.steps:
            if rec.step == name:
                return rec
        raise KeyError(name)

    @property
    def duration(self) -> float | None:
        return None if self.finished is None else self.finished - self.created

    # --- files (through the writer) ------------------------------------------------------

    def save(self, directory: str | Path | None = None, *, html: bool = True) -> Path:
        """Write ``trace.jsonl``, the step pictures and ``index.html`` into ``directory``
        (default: where the trace was streamed to) with :func:`orchestrator.writer.save`."""
        if _saver is None:
            raise RuntimeError("no trace writer registered: import orchestrator.writer")
        return _saver(self, directory, html=html)

    @classmethod
    def load(cls, directory: str | Path) -> Trace:
        """Read a trace back from ``trace.jsonl`` (values are summaries; pictures are files)."""
        path = Path(directory)
        path = path / TRACE_FILE if path.is_dir() else path
        with path.open(encoding="utf-8") as f:
            trace = cls.from_records(_json_lines(f))
        trace.directory = path.parent
        return trace

    # --- JSON form -----------------------------------------------------------------------

    def records(self, *, final: bool = True) -> list[dict[str, Any]]:
        """The trace as JSON records: run, inputs, planning, steps (all of them, or with
        ``final=False`` only those that reached a final status), agent rounds and, when
        finished, result."""
        with self.lock:
            out = [self._run_record()]
            out.extend(_input_record(r) for r in self.inputs)
            out.extend({"type": "planning", **p} for p in self.planning)
            out.extend(
                s.to_json()
                for s in self.steps
                if final or s.status not in (StepStatus.PENDING, StepStatus.RUNNING)
            )
            out.extend({"type": "round", **r} for r in self.rounds)
            if final or self.finished is not None:
                out.append(self._result_record())
            return out

    @classmethod
    def from_records(cls, records: Iterable[dict[str, Any]]) -> Trace:
        """A trace from its JSON records (untrusted: unknown fields are dropped, wrong
        types raise :class:`TraceFormatError`)."""
        trace = cls()
        steps: dict[int, StepRecord] = {}
        for n, rec in enumerate(records, start=1):
            try:
                _load_record(trace, steps, dict(rec))
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise TraceFormatError(f"trace record {n} is malformed: {exc!r}") from None
        trace.steps = [steps[i] for i in sorted(steps)]
        return trace

    def _run_record(self) -> dict[str, Any]:
        return {
            "type": "run",
            "run_id": self.run_id,
            "created": self.created,
            "instruction": self.instruction,
            "program": self.program,
            "form": self.form,
            "meta": self.meta,
        }

    def _result_record(self) -> dict[str, Any]:
        return {
            "type": "result",
            "result": self.result,
            "error": self.error,
            "finished": self.finished,
        }


def _input_record(rec: InputRecord) -> dict[str, Any]:
    return {"type": "input", "name": rec.name, "summary": rec.summary, "artifact": rec.artifact}


def _json_lines(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    fail = lambda n, why: TraceFormatError(f"line {n} of the trace is {why}")  # noqa: E731
    for _n, record in json_objects(lines, fail):
        yield record


_STEP_FIELDS = {f.name for f in fields(StepRecord)} - {"value", "context"}
_TYPES: dict[str, type | tuple[type, ...]] = {
    "step": str, "index": int, "line": int, "text": str, "tool": (str, type(None)),
    "deps": list, "status": str, "output": (dict, type(None)), "error": (dict, type(None)),
    "start": (int, float, type(None)), "end": (int, float, type(None)),
    "duration": (int, float, type(None)), "batch_size": int, "meta": dict,
    "artifact": (str, type(None)), "name": str, "summary": (dict, str),
    "source": (str, type(None)), "instruction": (str, type(None)),
    "program": (str, type(None)), "form": (str, type(None)), "run_id": str,
    "created": (int, float), "finished": (int, float, type(None)),
    "result": (dict, type(None)),
}  # fmt: skip


def _typed(rec: dict[str, Any], key: str, default: Any = None, *, required: bool = False) -> Any:
    if required and key not in rec:
        raise KeyError(key)
    value = rec.get(key, default)
    expected = _TYPES.get(key)
    if expected is not None and value is not default and not isinstance(value, expected):
        raise TypeError(f"{key} is {type(value).__name__}")
    return value


def _load_record(trace: Trace, steps: dict[int, StepRecord], rec: dict[str, Any]) -> None:
    kind = rec.pop("type", None)
    if kind == "run":
        trace.run_id = _typed(rec, "run_id", trace.run_id)
        trace.created = _typed(rec, "created", trace.created)
        trace.instruction = _typed(rec, "instruction")
        trace.program = _typed(rec, "program")
        trace.form = _typed(rec, "form")
        meta = rec.get("meta") or {}
        trace.meta = meta if isinstance(meta, dict) else {}
    elif kind == "program":
        trace.program, trace.form = _typed(rec, "program"), _typed(rec, "form")
    elif kind == "input":
        summary = _typed(rec, "summary", {})
        summary = summary if isinstance(summary, dict) else {"text": summary}
        name = _typed(rec, "name", required=True)
        trace.inputs.append(InputRecord(name, summary, _typed(rec, "artifact")))
    elif kind == "planning":
        trace.planning.append(rec)
    elif kind == "round":
        if not isinstance(rec.get("index"), int):
            raise TypeError("a round's index is not an integer")
        trace.rounds.append(rec)
    elif kind == "step":
        values = {k: _typed(rec, k) for k in _STEP_FIELDS if k in rec and k != "args"}
        values["args"] = [
            ArgRecord(
                _typed(a, "name", required=True),
                str(a.get("summary", "")),
                a.get("source"),
                a.get("type"),
            )
            for a in rec.get("args") or []
        ]
        values["deps"] = [str(d) for d in values.get("deps") or []]
        values["status"] = StepStatus(values.get("status", StepStatus.PENDING))
        step = StepRecord(**values)
        steps[step.index] = step
    elif kind == "result":
        trace.result = _typed(rec, "result")
        trace.error = rec.get("error") if isinstance(rec.get("error"), dict) else None
        trace.finished = _typed(rec, "finished")
    else:
        raise ValueError(f"unknown record type {kind!r}")
