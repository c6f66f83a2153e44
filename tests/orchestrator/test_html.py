"""The trace page and the map report escape everything they show: a trace or an item is
data, never markup (both come from autoescaped Jinja2 templates)."""

from __future__ import annotations

from pathlib import Path

from orchestrator.html import render_html
from orchestrator.report import ReportRow, write_report
from orchestrator.trace import ArgRecord, InputRecord, StepRecord, Trace

SCRIPT = "<script>alert(1)</script>"
ATTR = '" onmouseover="alert(2)'


def hostile_trace() -> Trace:
    trace = Trace(instruction=SCRIPT, program=f"A=Eval('{SCRIPT}')\nB=Eval('{ATTR}')", form="lines")
    trace.inputs.append(InputRecord(name=ATTR, summary={"text": SCRIPT}))
    trace.add_planning({"kind": SCRIPT, "prompt": SCRIPT, "output": ATTR, "model": SCRIPT})
    a = trace.add_step(
        StepRecord(step=ATTR, index=0, line=1, text=SCRIPT, tool=SCRIPT, status=ATTR,
                   args=[ArgRecord(name=SCRIPT, summary=ATTR, source=ATTR)],
                   output={"text": SCRIPT}, meta={"device": SCRIPT, "cache_hit": True})
    )  # fmt: skip
    trace.add_step(
        StepRecord(step="B", index=1, line=2, text=ATTR, tool="Eval", deps=[a.step],
                   status="error", error={"type": SCRIPT, "code": ATTR, "message": SCRIPT})
    )  # fmt: skip
    trace.finish(error=ValueError(SCRIPT))
    return trace


def test_trace_page_escapes_every_string() -> None:
    page = render_html(hostile_trace())
    assert "<script" not in page
    assert 'onmouseover="' not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count('<div class="card ') == 2
    assert 'class="card unknown"' in page  # a status the page does not know is not a class


def test_map_report_escapes_every_string(tmp_path: Path) -> None:
    rows = [
        ReportRow(0, SCRIPT, ATTR, True, 0.5, 2, expected=SCRIPT, trace=str(tmp_path / "0")),
        ReportRow(1, ATTR, None, False, None, 0, error=SCRIPT, trace=str(tmp_path / ATTR)),
    ]
    page = write_report(rows, tmp_path, title=SCRIPT).read_text()
    assert "<script" not in page
    assert 'onmouseover="' not in page
    assert page.count("&lt;script&gt;") == 5  # <title>, <h1>, query, expected, error
    assert 'href="0/index.html"' in page
