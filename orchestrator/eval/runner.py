"""``evaluate``: run a benchmark's items through an orchestrator and score them.

The algorithm:

1. read the dataset (:mod:`.datasets`) and pick the items: all of them, or ``limit`` drawn
   with ``random.Random(seed)`` (kept in dataset order) — the same seed, the same items;
2. check ``out/run.json`` (what this folder evaluates): a folder holding another
   evaluation is refused, never mixed;
3. skip every item already in ``out/results.jsonl`` — a killed run continues where it
   stopped, and nothing is evaluated twice;
4. run the rest through :meth:`Orchestrator.map` (planned from the instruction, or the
   item's own program executed), ``concurrency`` at a time so batched tool calls coalesce;
   as each item finishes it is scored (:mod:`.scoring`), a wrong one attributed
   (:mod:`.attribution`), and its row appended and flushed to ``results.jsonl``; its trace
   goes to ``out/traces/<id>/``;
5. summarise every row (:mod:`.report`) into ``summary.json`` and ``report.html``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..api import Orchestrator, RunResult
from ..writer import safe_name
from .attribution import attribute
from .datasets import DatasetError, Item, Source, load
from .report import summarize, write_report
from .scoring import score

MANIFEST = "run.json"
RESULTS = "results.jsonl"
SUMMARY = "summary.json"
TRACES = "traces"


class EvalError(ValueError):
    """An evaluation that cannot start (another evaluation's folder, bad arguments)."""


@dataclass(frozen=True)
class Plan:
    """What one evaluation folder evaluates (written to ``run.json``)."""

    dataset: str
    data: str
    split: str | None
    limit: int | None
    seed: int
    ids: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        digest = hashlib.sha256("\n".join(self.ids).encode()).hexdigest()
        return {"dataset": self.dataset, "data": self.data, "split": self.split,
                "limit": self.limit, "seed": self.seed, "items": len(self.ids),
                "ids_sha256": digest}  # fmt: skip


def choose(items: Sequence[Item], limit: int | None, seed: int) -> list[Item]:
    """All items, or ``limit`` of them drawn with ``seed`` (in dataset order)."""
    if limit is None or limit >= len(items):
        return list(items)
    if limit < 1:
        raise EvalError("--limit must be at least 1")
    picked = sorted(random.Random(seed).sample(range(len(items)), limit))
    return [items[i] for i in picked]


def read_rows(out: Path) -> list[dict[str, Any]]:
    """The rows already in ``results.jsonl`` (a line cut short by a kill is ignored)."""
    path = out / RESULTS
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "id" in row:
            rows.append(row)
    return rows


def trace_folder(item_id: str) -> str:
    """The trace folder of an item, relative to the evaluation folder (unique per id)."""
    digest = hashlib.sha256(item_id.encode()).hexdigest()[:8]
    return f"{TRACES}/{safe_name(item_id, limit=40)}-{digest}"


class _Recorder:
    """Scores finished runs and appends their rows; thread-safe (map's workers call it)."""

    def __init__(self, out: Path, dataset: str, orch: Orchestrator) -> None:
        self.out = out
        self.dataset = dataset
        self.registry = orch.registry
        self._lock = threading.Lock()

    def __call__(self, item: Item, result: RunResult) -> None:
        row = self.row(item, result)
        line = json.dumps(row, default=str) + "\n"
        with self._lock, (self.out / RESULTS).open("a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def row(self, item: Item, result: RunResult) -> dict[str, Any]:
        answer = result.answer if result.ok else None
        got = score(item, ok=result.ok, answer=answer, output=result.output, values=result.values)
        culprit = None
        if not got.correct:
            culprit = attribute(
                result.trace, instruction=item.instruction, output=result.output, ok=result.ok,
                kind=item.kind, registry=self.registry,
            ).to_json()  # fmt: skip
        trace = result.trace
        return {
            "id": item.id, "dataset": self.dataset, "type": item.question_type,
            "instruction": item.instruction, "images": item.images,
            "expected": _jsonable(item.answer), "prediction": _jsonable(got.prediction),
            "score": got.value, "correct": got.correct, "ok": result.ok,
            "error": None if result.ok else str(result.error),
            "pairs": None if got.pairs is None else vars(got.pairs),
            "seconds": None if trace.duration is None else round(trace.duration, 4),
            "steps": len(trace.steps), "program": trace.program, "attribution": culprit,
            "trace": trace_folder(item.id),
        }  # fmt: skip


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def evaluate(
    dataset: str,
    data: str | Path,
    *,
    out: str | Path,
    images: str | Path | None = None,
    annotations: str | Path | None = None,
    split: str | None = None,
    limit: int | None = None,
    seed: int = 0,
    orchestrator: Orchestrator | None = None,
    concurrency: int = 4,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate ``dataset`` read from ``data`` into the folder ``out``; return the summary
    (also in ``out/summary.json``; ``out/report.html`` shows it). Run it again on the same
    folder to finish a run that was stopped."""
    source = Source(
        data=Path(data),
        images=None if images is None else Path(images),
        annotations=None if annotations is None else Path(annotations),
        split=split,
    )
    items = choose(load(dataset, source), limit, seed)
    if not items:
        raise DatasetError(f"{source.data} holds no {dataset} items")
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        raise DatasetError(f"{source.data}: item ids are not unique")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    plan = Plan(dataset, str(source.data.resolve()), split, limit, seed, tuple(ids)).to_json()
    manifest = folder / MANIFEST
    if manifest.exists():
        before = json.loads(manifest.read_text(encoding="utf-8"))
        if before != plan:
            raise EvalError(f"{folder} holds another evaluation ({before}); use a new --out")
    else:
        manifest.write_text(json.dumps(plan, indent=2) + "\n", encoding="utf-8")
    done = {row["id"] for row in read_rows(folder)}
    pending = [it for it in items if it.id not in done]
    if pending:
        orch = orchestrator or Orchestrator()
        try:
            _run(orch, pending, folder, dataset, concurrency, progress)
        finally:
            if orchestrator is None:
                orch.close()
    rows = {row["id"]: row for row in read_rows(folder)}
    ordered = [rows[i] for i in ids if i in rows]
    summary = summarize(ordered, plan)
    (folder / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    write_report(folder, summary, ordered)
    return summary


def _run(
    orch: Orchestrator, items: list[Item], out: Path, dataset: str, concurrency: int,
    progress: bool,
) -> None:  # fmt: skip
    record = _Recorder(out, dataset, orch)
    for mode, group in (
        ("execute", [it for it in items if it.program]),
        ("run", [it for it in items if not it.program]),
    ):
        if not group:
            continue
        orch.map(
            [it.program or it.instruction for it in group],
            [it.images for it in group],
            concurrency=concurrency,
            mode=mode,
            progress=progress,
            trace_dirs=[out / trace_folder(it.id) for it in group],
            on_result=lambda i, result, group=group: record(group[i], result),
        )
