"""Evaluation-scale use: memoised tool calls, Orchestrator.map with cross-program batching,
and the multi-run report."""

from __future__ import annotations

import json
import re
from pathlib import Path

from orchestrator import Orchestrator

VQA = "ANSWER0=Vqa(image=IMAGE, question='What is in the picture?')\nRESULT=ANSWER0"


def test_asking_the_same_thing_twice_pays_once(tiny: Orchestrator) -> None:
    vlm = tiny.pool.get("vlm")
    program = (
        "A=Vqa(image=IMAGE, question='Is there a cat?')\n"
        "B=Loc(image=IMAGE, object='TOP')\n"
        "C=Crop(image=IMAGE, box=B)\n"
        "D=Vqa(image=C, question='Is there a cat?')\n"
        "RESULT=A"
    )
    first = tiny.execute(program, image="sample:chelsea")
    calls = vlm.stats["generate_calls"]
    again = tiny.execute(program, image="sample:chelsea")
    assert again.ok and again.output == first.output
    assert vlm.stats["generate_calls"] == calls  # both Vqa calls came from the memo
    assert again.trace.step("A").meta.get("memoised") is True
    other = tiny.execute(program.replace("cat", "dog"), image="sample:chelsea")
    assert other.ok and vlm.stats["generate_calls"] > calls  # new question: computed
    assert other.trace.step("A").meta.get("memoised") is not True


def test_map_runs_programs_concurrently_and_coalesces_batches(
    tiny: Orchestrator, tmp_path: Path
) -> None:
    vlm = tiny.pool.get("vlm")
    before = vlm.stats["generate_calls"]
    questions = [
        f"ANSWER0=Vqa(image=IMAGE, question='Question number {i}?')\nRESULT=ANSWER0"
        for i in range(8)
    ]
    images = ["sample:coffee", "sample:chelsea"] * 4
    results = tiny.map(questions, images, concurrency=8, trace_dir=tmp_path, progress=False)
    assert [r.ok for r in results] == [True] * 8
    assert vlm.stats["generate_calls"] - before < 8  # programs shared generate batches
    coalesced = [r.trace.step("ANSWER0").meta.get("coalesced", 1) for r in results]
    assert max(coalesced) > 1
    report = (tmp_path / "report.html").read_text()
    assert len(re.findall(r"<tr class=\"ok\"", report)) == 8
    assert 'href="00003/index.html"' in report
    rows = [json.loads(line) for line in (tmp_path / "report.jsonl").read_text().splitlines()]
    assert [r["index"] for r in rows] == list(range(8))


def test_map_takes_expected_answers_and_mixed_items(tiny: Orchestrator, tmp_path: Path) -> None:
    items = [
        "N=Eval('1 + 1')\nRESULT=N",
        "A=Loc(image=IMAGE, object='TOP')\nB=Count(object=A)\nRESULT=B",
    ]
    results = tiny.map(
        items, "sample:coffee", expected=["2", "3"], trace_dir=tmp_path, progress=False
    )
    assert [r.answer for r in results] == ["2", "1"]
    rows = [json.loads(line) for line in (tmp_path / "report.jsonl").read_text().splitlines()]
    assert [r["correct"] for r in rows] == [True, False]
    assert "accuracy 50.0% of 2" in (tmp_path / "report.html").read_text()


def test_map_reports_each_item_as_it_finishes_into_named_folders(
    tiny: Orchestrator, tmp_path: Path
) -> None:
    seen: list[tuple[int, str]] = []
    folders = [tmp_path / name for name in ("first", "second", "third")]
    results = tiny.map(
        [f"N=Eval('{k} * 2')\nRESULT=N" for k in range(3)],
        concurrency=2,
        mode="execute",
        progress=False,
        trace_dirs=folders,
        on_result=lambda i, r: seen.append((i, r.answer)),
    )
    assert [r.answer for r in results] == ["0", "2", "4"]
    assert sorted(seen) == [(0, "0"), (1, "2"), (2, "4")]
    assert all((f / "index.html").is_file() for f in folders)
    assert not (tmp_path / "report.html").exists()
