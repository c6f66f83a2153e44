"""Traces: JSONL that round-trips, streamed records, and the self-contained HTML page."""

from __future__ import annotations

import json
import re
from pathlib import Path

from orchestrator import Orchestrator, Trace

PROGRAM = """\
OBJ0=Loc(image=IMAGE, object='TOP')
IMAGE0=Crop(image=IMAGE, box=OBJ0)
N=Count(object=OBJ0)
TAGGED=Tag(image=IMAGE, object=OBJ0)
ANSWER0=Eval("'yes' if {N} == 1 else 'no'")
RESULT=ANSWER0
"""


def test_jsonl_round_trips_and_html_has_one_card_per_step(
    offline: Orchestrator, tmp_path: Path
) -> None:
    result = offline.execute(PROGRAM, image="sample:astronaut", trace_dir=tmp_path / "run")
    assert result.ok and result.output == "yes"
    out = tmp_path / "run"
    records = [json.loads(line) for line in (out / "trace.jsonl").read_text().splitlines()]
    kinds = [r["type"] for r in records]
    assert kinds[0] == "run" and kinds[-1] == "result" and kinds.count("step") == 6
    loaded = Trace.load(out)
    assert [s.step for s in loaded.steps] == [s.step for s in result.trace.steps]
    assert loaded.steps[1].output == result.trace.steps[1].output
    assert loaded.steps[0].args[0].source == "IMAGE"
    assert loaded.result["text"] == "yes"
    # saving the loaded trace again gives the same records
    again = loaded.save(tmp_path / "again")
    assert (again / "trace.jsonl").read_text().count('"type": "step"') == 6
    html = (out / "index.html").read_text()
    assert len(re.findall(r'<div class="card ', html)) == 6
    assert html.count("data:image/png;base64,") >= 4  # input, boxes, crop, tagged image
    assert "<svg" in html and "http://" not in html.replace(
        'xmlns="http://www.w3.org/2000/svg"', ""
    )
    step = loaded.steps[4]
    assert step.tool == "Eval" and step.line == 5 and step.duration is not None
    assert (out / step.artifact if step.artifact else out).exists()


def test_failed_run_still_writes_finished_steps(offline: Orchestrator, tmp_path: Path) -> None:
    program = "A=Loc(image=IMAGE, object='TOP')\nB=Vqa(image=IMAGE, question='what?')\nC=Crop(image=IMAGE, box=A)\nD=Eval('{B} == 1')"
    result = offline.execute(program, image="sample:coffee", trace_dir=tmp_path)
    assert not result.ok
    loaded = Trace.load(tmp_path)
    status = {s.step: s.status for s in loaded.steps}
    assert status == {"A": "ok", "B": "error", "C": "ok", "D": "skipped"}
    assert loaded.error["code"] == "no-backend" and loaded.error["line"] == 2
    html = (tmp_path / "index.html").read_text()
    assert "no-backend" in html and 'class="card error"' in html


def test_records_stream_while_running(offline: Orchestrator, tmp_path: Path) -> None:
    trace = Trace(directory=tmp_path)
    offline.execute("A=Eval('1')\nB=Eval('{A} + 1')", trace=trace)
    streamed = (tmp_path / "trace.jsonl").read_text().splitlines()
    assert [json.loads(line)["type"] for line in streamed][-3:] == ["step", "step", "result"]
