"""Traces: the record, JSONL that round-trips, streamed records, and the HTML page."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from orchestrator import Orchestrator, StepStatus, Trace
from orchestrator.trace import TraceFormatError
from orchestrator.writer import stream

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
    assert step.artifact is None  # text has no picture
    crop = loaded.steps[1]
    assert crop.tool == "Crop" and crop.artifact == "artifacts/step-0001.png"
    assert (out / crop.artifact).read_bytes().startswith(b"\x89PNG")


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
    trace = Trace()
    stream(trace, tmp_path)
    offline.execute("A=Eval('1')\nB=Eval('{A} + 1')", trace=trace)
    streamed = (tmp_path / "trace.jsonl").read_text().splitlines()
    assert [json.loads(line)["type"] for line in streamed][-3:] == ["step", "step", "result"]


def test_streamed_file_holds_each_finished_step_before_the_run_ends(tmp_path: Path) -> None:
    from orchestrator.trace import StepRecord

    trace = Trace(instruction="count")
    trace.add_planning({"kind": "round", "output": "A=Eval('1')"})
    stream(trace, tmp_path)  # records made before streaming are written first
    rec = trace.add_step(StepRecord(step="A", index=0, line=1, text="A=Eval('1')", tool="Eval"))
    rec.status = "ok"
    trace.finish_step(rec)
    lines = [json.loads(x) for x in (tmp_path / "trace.jsonl").read_text().splitlines()]
    assert [r["type"] for r in lines] == ["run", "planning", "step"]
    assert lines[2]["step"] == "A" and lines[2]["status"] == "ok"
    trace.finish(output=1)
    assert Trace.load(tmp_path).result["text"] == "1"


def test_the_record_module_imports_no_writer() -> None:
    import ast
    import inspect

    import orchestrator.trace as record

    tree = ast.parse(inspect.getsource(record))
    imported = {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported.isdisjoint({"writer", "html", "templating"}), imported


@pytest.mark.parametrize(
    "line",
    [
        "not json",
        "[1, 2]",
        '{"type": "step", "step": "A"}',
        '{"type": "step", "step": "A", "index": "0", "line": 1, "text": "", "tool": null}',
        '{"type": "input", "name": 3, "summary": {}}',
        '{"type": "mystery"}',
        '{"type": "step", "step": "A", "index": 0, "line": 1, "text": "", "status": "bogus"}',
    ],
)
def test_malformed_trace_files_raise_a_typed_error(tmp_path: Path, line: str) -> None:
    (tmp_path / "trace.jsonl").write_text(line + "\n")
    with pytest.raises(TraceFormatError):
        Trace.load(tmp_path)


def test_step_statuses_are_an_enum_stored_as_the_plain_words(
    offline: Orchestrator, tmp_path: Path
) -> None:
    program = (
        "A=Loc(image=IMAGE, object='TOP')\nB=Vqa(image=IMAGE, question='what?')\nC=Eval('{B} == 1')"
    )
    result = offline.execute(program, image="sample:coffee", trace_dir=tmp_path)
    live = {s.step: s.status for s in result.trace.steps}
    assert live == {"A": StepStatus.OK, "B": StepStatus.ERROR, "C": StepStatus.SKIPPED}
    stored = [json.loads(line) for line in (tmp_path / "trace.jsonl").read_text().splitlines()]
    words = {r["step"]: r["status"] for r in stored if r["type"] == "step"}
    assert words == {"A": "ok", "B": "error", "C": "skipped"}
    assert [type(s.status) for s in Trace.load(tmp_path).steps] == [StepStatus] * 3
