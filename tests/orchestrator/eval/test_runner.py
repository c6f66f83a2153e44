"""``vischain eval`` end to end on a 10-item generic JSONL made here: real MTCNN counts and
real OCR reads on the offline and tiny profiles, scores, attribution, the report, resuming
after a kill, determinism with a seed, and comparing two runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator import Orchestrator
from orchestrator.cli import main
from orchestrator.eval import EvalError, compare, evaluate
from orchestrator.eval.offline_set import write_offline_set

COUNT = "OBJ0=FaceDet(image=IMAGE)\nN=Count(object=OBJ0)\nRESULT=N"
READ = "def execute_command(image):\n    return ' '.join(Ocr(image).labels)\n"
BLUR = "OBJ0=FaceDet(image=IMAGE)\nIMAGE0=BgBlur(image=IMAGE, object=OBJ0)\nRESULT=IMAGE0"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten items on the offline set's pictures, with programs: eight the offline models
    answer right, one with a wrong expected count, one whose program blurs instead of
    counting."""
    folder = tmp_path_factory.mktemp("set")
    source = [json.loads(line) for line in write_offline_set(folder).read_text().splitlines()]
    by_id = {r["id"]: r for r in source}
    rows = []
    for key in ("faces-00", "faces-02", "faces-04", "faces-06"):
        rows.append({**by_id[key], "program": COUNT})
    for key in ("sign-00", "sign-01", "sign-02", "sign-03"):
        rows.append({**by_id[key], "program": READ})
    rows.append({**by_id["faces-07"], "id": "wrong-count", "answer": "5", "program": COUNT})
    rows.append({**by_id["faces-05"], "id": "blurs", "program": BLUR})
    path = folder / "ten.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def check_run(out: Path, summary: dict) -> None:
    assert summary["items"] == summary["evaluated"] == 10
    assert summary["correct"] == 0.8 and summary["failed_runs"] == 0
    assert summary["by_type"]["count faces"] == {"items": 6, "score": 0.6667, "correct": 0.6667}
    assert summary["by_type"]["read text"]["correct"] == 1.0
    assert summary["attribution"] == {"answer": {"Count": 1}, "program": {"-": 1}}
    assert summary["latency_s"]["p50"] > 0
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 10 and len({r["id"] for r in rows}) == 10
    wrong = {r["id"]: r for r in rows if not r["correct"]}
    assert set(wrong) == {"wrong-count", "blurs"}
    assert wrong["wrong-count"]["prediction"] == "3"  # MTCNN counted the three faces
    assert wrong["blurs"]["attribution"]["culprit"] == "program"
    page = (out / "report.html").read_text()
    assert page.count("<tr class=") == 10
    for r in rows:
        assert (out / r["trace"] / "index.html").is_file()
        assert f'href="{r["trace"]}/index.html"' in page
    assert json.loads((out / "summary.json").read_text()) == summary


@pytest.fixture(scope="module")
def offline_run(offline: Orchestrator, dataset: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("offline-run")
    return out, evaluate("jsonl", dataset, out=out, orchestrator=offline, progress=False)


@pytest.fixture(scope="module")
def tiny_run(tiny: Orchestrator, dataset: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("tiny-run")
    return out, evaluate("jsonl", dataset, out=out, orchestrator=tiny, progress=False)


def test_offline_profile_end_to_end(offline_run: tuple[Path, dict]) -> None:
    check_run(*offline_run)


def test_tiny_profile_end_to_end(tiny_run: tuple[Path, dict]) -> None:
    check_run(*tiny_run)


def test_a_finished_folder_evaluates_nothing_again(
    offline: Orchestrator, dataset: Path, offline_run: tuple[Path, dict]
) -> None:
    out, summary = offline_run
    before = (out / "results.jsonl").read_bytes()
    assert evaluate("jsonl", dataset, out=out, orchestrator=offline, progress=False) == summary
    assert (out / "results.jsonl").read_bytes() == before
    with pytest.raises(EvalError, match="another evaluation"):
        evaluate("jsonl", dataset, out=out, orchestrator=offline, limit=3, progress=False)


def test_the_same_seed_evaluates_the_same_items_the_same_way(
    offline: Orchestrator, dataset: Path, tmp_path: Path
) -> None:
    runs = []
    for name in ("a", "b"):
        evaluate("jsonl", dataset, out=tmp_path / name, orchestrator=offline, limit=4, seed=7,
                 progress=False)  # fmt: skip
        rows = [json.loads(x) for x in (tmp_path / name / "results.jsonl").read_text().splitlines()]
        runs.append(sorted((r["id"], r["prediction"], r["score"]) for r in rows))
    assert runs[0] == runs[1] and len(runs[0]) == 4


def test_compare_two_runs(offline_run: tuple[Path, dict], tiny_run: tuple[Path, dict],
                          tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    result = compare(offline_run[0], tiny_run[0], out=tmp_path)
    assert result["common_items"] == 10
    assert result["only_a_correct"] == result["only_b_correct"] == []
    assert result["by_type"]["read text"]["a"]["correct"] == 1.0
    assert (tmp_path / "compare.html").is_file()
    assert main(["eval", "--compare", str(offline_run[0]), str(tiny_run[0])]) == 0
    printed = capsys.readouterr().out
    assert "count faces" in printed and "right only in A: 0" in printed


def test_a_killed_run_resumes_without_evaluating_anything_twice(
    offline: Orchestrator, dataset: Path, tmp_path: Path
) -> None:
    config = tmp_path / "vischain.yaml"
    config.write_text(
        f"models:\n  profile: offline\n  cache_dir: {tmp_path / 'cache'}\nplugins: false\n"
    )
    out = tmp_path / "run"
    results = out / "results.jsonl"
    env = {**os.environ, "VISCHAIN_CONFIG": str(config)}
    command = [sys.executable, "-m", "orchestrator", "eval", "jsonl", "--data", str(dataset),
               "--out", str(out), "--concurrency", "1", "--quiet"]  # fmt: skip
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while proc.poll() is None and not (
            results.exists() and results.read_text().count("\n") >= 2
        ):
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    first = results.read_text().splitlines()
    assert 2 <= len(first) < 10, "the run finished before it could be killed"
    assert not (out / "summary.json").exists()
    summary = evaluate("jsonl", dataset, out=out, orchestrator=offline, progress=False)
    rows = results.read_text().splitlines()
    assert rows[: len(first)] == first  # what was done stayed as it was
    assert len(rows) == 10 and len({json.loads(r)["id"] for r in rows}) == 10
    assert summary["correct"] == 0.8
