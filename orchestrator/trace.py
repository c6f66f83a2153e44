"""The trace of one run: planning rounds, every step's arguments, output, timing and error.

A trace is written as ``trace.jsonl`` (one record per line: run, input, planning, step,
result) plus ``artifacts/*.png`` (pictures of the step outputs), and rendered as a
self-contained ``index.html``. With a directory given up front, records stream to disk as
steps finish, so a crash loses no finished step.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .render import render_artifact, summarize

TRACE_FILE = "trace.jsonl"
HTML_FILE = "index.html"
ARTIFACTS = "artifacts"


@dataclass
class ArgRecord:
    name: str
    summary: str
    source: str | None = None  # the step or input this value came from


@dataclass
class StepRecord:
    step: str
    index: int
    line: int
    text: str
    tool: str | None
    args: list[ArgRecord] = field(default_factory=list)
    deps: list[str] = field(default_factory=list)
    status: str = "pending"  # pending | running | ok | error | skipped
    output: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    start: float | None = None
    end: float | None = None
    duration: float | None = None
    batch_size: int = 1
    meta: dict[str, Any] = field(default_factory=dict)
    artifact: str | None = None
    value: Any = field(default=None, repr=False, compare=False)
    context: Any = field(default=None, repr=False, compare=False)  # the image it was drawn on

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step, "index": self.index, "line": self.line, "text": self.text,
            "tool": self.tool,
            "args": [{"name": a.name, "summary": a.summary, "source": a.source} for a in self.args],
            "deps": list(self.deps), "status": self.status, "output": self.output,
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


class Trace:
    """Everything that happened in one run. Thread-safe for the executor's updates."""

    def __init__(
        self,
        *,
        instruction: str | None = None,
        program: str | None = None,
        form: str | None = None,
        run_id: str | None = None,
        directory: str | Path | None = None,
    ) -> None:
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.created = time.time()
        self.instruction = instruction
        self.program = program
        self.form = form
        self.inputs: list[InputRecord] = []
        self.planning: list[dict[str, Any]] = []
        self.steps: list[StepRecord] = []
        self.result: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self.finished: float | None = None
        self.meta: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._stream: IO[str] | None = None
        self.directory: Path | None = None
        if directory is not None:
            self.open(directory)

    # --- streaming ---------------------------------------------------------------------------

    def open(self, directory: str | Path) -> None:
        """Start streaming records to ``directory/trace.jsonl`` (artifacts written at save)."""
        with self._lock:
            self.directory = Path(directory)
            self.directory.mkdir(parents=True, exist_ok=True)
            self._stream = (self.directory / TRACE_FILE).open("w", encoding="utf-8")
            self._emit(self._run_record())
            for rec in self.inputs:
                self._emit(self._input_record(rec))
            for plan in self.planning:
                self._emit({"type": "planning", **plan})

    def _emit(self, record: dict[str, Any]) -> None:
        if self._stream is not None:
            self._stream.write(json.dumps(record, default=_json_default) + "\n")
            self._stream.flush()

    # --- recording ---------------------------------------------------------------------------

    def set_program(self, program: str, form: str) -> None:
        with self._lock:
            self.program = program
            self.form = form
            self._emit({"type": "program", "program": program, "form": form})

    def add_input(self, name: str, value: Any) -> None:
        with self._lock:
            rec = InputRecord(name, summarize(value), value=value)
            self.inputs.append(rec)
            self._emit(self._input_record(rec))

    def add_planning(self, record: dict[str, Any]) -> None:
        with self._lock:
            self.planning.append(record)
            self._emit({"type": "planning", **record})

    def add_step(self, record: StepRecord) -> StepRecord:
        with self._lock:
            record.index = len(self.steps)
            self.steps.append(record)
            return record

    def finish_step(self, record: StepRecord) -> None:
        """A step reached a final status: stream it (when a directory is open)."""
        if self._stream is None:
            return
        with self._lock:
            self._emit(record.to_json())

    def finish(self, *, output: Any = None, error: Any = None) -> None:
        with self._lock:
            self.finished = time.time()
            self.result = summarize(output) if error is None else None
            if error is not None:
                self.error = (
                    error.to_dict() if hasattr(error, "to_dict") else {"message": str(error)}
                )
            self._emit(self._result_record())
            if self._stream is not None:
                self._stream.close()
                self._stream = None

    def step(self, name: str) -> StepRecord:
        for rec in self.steps:
            if rec.step == name:
                return rec
        raise KeyError(name)

    @property
    def duration(self) -> float | None:
        return None if self.finished is None else self.finished - self.created

    # --- files -------------------------------------------------------------------------------

    def save(self, directory: str | Path | None = None, *, html: bool = True) -> Path:
        """Write ``trace.jsonl``, the step pictures and ``index.html``; return the directory."""
        from .html import render_html

        with self._lock:
            out = Path(directory) if directory is not None else self.directory
            if out is None:
                raise ValueError("no directory to save the trace to")
            out.mkdir(parents=True, exist_ok=True)
            (out / ARTIFACTS).mkdir(exist_ok=True)
            for rec in self.inputs:
                if rec.value is not None:
                    rec.artifact = render_artifact(
                        rec.value, None, out / ARTIFACTS, f"input-{rec.name}"
                    )
            for srec in self.steps:
                if srec.value is not None:
                    srec.artifact = render_artifact(
                        srec.value, srec.context, out / ARTIFACTS, f"step-{srec.index:04d}"
                    )
            with (out / TRACE_FILE).open("w", encoding="utf-8") as f:
                for record in self.records():
                    f.write(json.dumps(record, default=_json_default) + "\n")
            if html:
                (out / HTML_FILE).write_text(render_html(self, out), encoding="utf-8")
            self.directory = out
            return out

    def records(self) -> list[dict[str, Any]]:
        out = [self._run_record()]
        out.extend(self._input_record(r) for r in self.inputs)
        out.extend({"type": "planning", **p} for p in self.planning)
        out.extend(s.to_json() for s in self.steps)
        out.append(self._result_record())
        return out

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

    @staticmethod
    def _input_record(rec: InputRecord) -> dict[str, Any]:
        return {"type": "input", "name": rec.name, "summary": rec.summary, "artifact": rec.artifact}

    def _result_record(self) -> dict[str, Any]:
        return {
            "type": "result",
            "result": self.result,
            "error": self.error,
            "finished": self.finished,
        }

    @classmethod
    def load(cls, directory: str | Path) -> Trace:
        """Read a trace back from ``trace.jsonl`` (values are summaries; pictures are files)."""
        path = Path(directory)
        path = path / TRACE_FILE if path.is_dir() else path
        trace = cls()
        trace.directory = path.parent
        steps: dict[int, StepRecord] = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            rec = json.loads(line)
            kind = rec.pop("type")
            if kind == "run":
                trace.run_id = rec["run_id"]
                trace.created = rec["created"]
                trace.instruction = rec.get("instruction")
                trace.program = rec.get("program")
                trace.form = rec.get("form")
                trace.meta = rec.get("meta") or {}
            elif kind == "program":
                trace.program, trace.form = rec["program"], rec["form"]
            elif kind == "input":
                trace.inputs.append(InputRecord(rec["name"], rec["summary"], rec.get("artifact")))
            elif kind == "planning":
                trace.planning.append(rec)
            elif kind == "step":
                rec["args"] = [ArgRecord(**a) for a in rec.get("args", [])]
                steps[rec["index"]] = StepRecord(**rec)
            elif kind == "result":
                trace.result = rec.get("result")
                trace.error = rec.get("error")
                trace.finished = rec.get("finished")
        trace.steps = [steps[i] for i in sorted(steps)]
        return trace


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)
