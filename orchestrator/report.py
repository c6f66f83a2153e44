"""A multi-run report for batch evaluations: one row per item, linking to its trace.

``write_report(rows, directory)`` writes ``report.html`` (self-contained, from the template
``templates/report.html.j2``) and ``report.jsonl``; each row names the item's instruction or
program, its answer, the expected answer when known, its status, time and step count, and
the trace directory (relative links, so the folder can be moved or zipped as a whole).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sandbox import normalize_for_eval
from tools.files import write_atomic

from .templating import render_template
from .writer import HTML_FILE

REPORT_HTML = "report.html"
REPORT_JSONL = "report.jsonl"


@dataclass
class ReportRow:
    """One evaluated item."""

    index: int
    query: str
    answer: str | None
    ok: bool
    seconds: float | None = None
    steps: int = 0
    error: str | None = None
    expected: str | None = None
    trace: str | None = None  # the trace directory

    @property
    def correct(self) -> bool | None:
        if self.expected is None or self.answer is None:
            return None
        return normalize_for_eval(self.answer).lower() == normalize_for_eval(self.expected).lower()


def row_for(index: int, query: str, result: Any, expected: str | None = None) -> ReportRow:
    """A row from a :class:`~orchestrator.api.RunResult`."""
    trace = result.trace
    return ReportRow(
        index=index,
        query=query,
        answer=result.answer if result.ok else None,
        ok=result.ok,
        seconds=None if trace.duration is None else round(trace.duration, 3),
        steps=len(trace.steps),
        error=None if result.ok else str(result.error),
        expected=expected,
        trace=str(trace.directory) if trace.directory else None,
    )


def write_report(
    rows: Iterable[ReportRow], directory: str | Path, *, title: str = "VisChain runs"
) -> Path:
    """Write ``report.html`` and ``report.jsonl`` into ``directory``; return the HTML path."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    rows = list(rows)
    with (out / REPORT_JSONL).open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps({**asdict(row), "correct": row.correct}) + "\n")
    write_atomic(out / REPORT_HTML, _html(rows, out, title))
    return out / REPORT_HTML


def trace_link(trace: str | None, out: Path) -> str | None:
    """A relative link from ``out`` to a trace directory's page (the folder moves as a whole)."""
    if not trace:
        return None
    return Path(os.path.relpath(Path(trace) / HTML_FILE, out)).as_posix()


def _html(rows: list[ReportRow], out: Path, title: str) -> str:
    ok = sum(r.ok for r in rows)
    judged = [r.correct for r in rows if r.correct is not None]
    accuracy = f" · accuracy {sum(judged) / len(judged):.1%} of {len(judged)}" if judged else ""
    times = [r.seconds for r in rows if r.seconds is not None]
    mean = f" · mean {sum(times) / len(times):.2f} s" if times else ""
    summary = f"{len(rows)} runs · {ok} ok · {len(rows) - ok} failed{accuracy}{mean}"
    shown = [{"row": r, "link": trace_link(r.trace, out)} for r in rows]
    return render_template("report.html.j2", title=title, summary=summary, rows=shown)
