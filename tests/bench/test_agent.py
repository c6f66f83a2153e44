"""bench/agent.py's bookkeeping: rows saved as they come (even when a checkout replaces
the file), resumed runs, like-for-like summaries, and the reason a run ended in an error."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from orchestrator.agent import AgentLimitError
from orchestrator.rounds import Round, RoundKind
from sandbox import VisChainError
from tests.support.bench import bench_script


@pytest.fixture(scope="module")
def bench():
    with bench_script("agent") as module:
        yield module


def test_rows_land_in_the_file_even_after_it_was_replaced(bench, tmp_path: Path) -> None:
    """The last run's rows vanished: the file was tracked, a checkout replaced it while the
    benchmark held the old one open. Each row now goes to whatever file is at the path."""
    path = tmp_path / "agent-items.jsonl"
    bench.save_row(path, {"item": 0})
    path.unlink()
    path.write_text("")  # what a checkout of the tracked file did
    bench.save_row(path, {"item": 1})
    bench.save_row(path, {"item": 2})
    assert bench.load_rows(path) == [{"item": 1}, {"item": 2}]


def test_a_line_cut_short_by_a_killed_run_is_left_out(bench, tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({"item": 0}) + "\n" + '{"item": 1, "mo')
    assert bench.load_rows(path) == [{"item": 0}]
    assert bench.load_rows(tmp_path / "none.jsonl") == []


def row(item: int, mode: str, *, right: bool = True, error: str | None = None,
        seconds: float = 1.0, reason: str | None = None) -> dict:  # fmt: skip
    return {"item": item, "mode": mode, "right": right, "error": error, "rounds": 1,
            "seconds": seconds, "reason": reason or error}  # fmt: skip


def test_the_summary_compares_items_measured_in_both_modes(bench) -> None:
    rows = [
        row(0, "one-shot", seconds=2.0), row(0, "agent", seconds=3.0),
        row(1, "agent", right=False, error="agent-limit", reason="agent-limit: answer-kind"),
        row(1, "one-shot", right=False, error="planning"),
        row(2, "one-shot", seconds=50.0),  # its agent run never came: left out
    ]  # fmt: skip
    one, agent = bench.summary_of(rows)
    assert one["runs"] == agent["runs"] == 2
    assert one["median_seconds"] == 1.5 and agent["right_kind_share"] == 0.5
    assert agent["errors"] == {"agent-limit: answer-kind": 1} and one["errors"] == {"planning": 1}


def test_an_agent_limit_is_attributed_to_the_findings_left(bench) -> None:
    kind = {"check": "answer-kind", "message": "asks for text, got an image", "step": None}
    rounds = [Round(1, RoundKind.PLAN, "lines", "...", None, issues=(kind,), accepted=True)]
    stopped = SimpleNamespace(error=AgentLimitError("max_rounds (3) was reached"), rounds=rounds)
    assert bench.reason(stopped) == "agent-limit: answer-kind"
    failed = SimpleNamespace(error=VisChainError("x", code="planning"), rounds=[])
    assert bench.reason(failed) == "planning"
    assert bench.reason(SimpleNamespace(error=None, rounds=[])) is None


def test_a_runs_whole_trace_is_kept_for_diagnosis(bench, tmp_path: Path) -> None:
    """``--traces``: the row keeps 60 characters of the answer; the trace file keeps the
    rounds' programs, observations and the full error, readable as a trace again."""
    from orchestrator.trace import Trace

    trace = Trace(instruction="How many dogs?")
    trace.set_program("OBJ0=Loc(image=IMAGE, object='dog')\nRESULT=OBJ0", "lines")
    long = "the agent stopped after 2 round(s) because " + "x" * 200
    trace.add_round({"index": 1, "kind": "plan", "program": "RESULT=OBJ0",
                     "observation": "# What happened: ...", "error": {"message": long}})  # fmt: skip
    path = bench.save_trace(tmp_path / "traces", 13, "agent", SimpleNamespace(trace=trace))
    assert path.name == "item13-agent.jsonl"
    back = Trace.load(path)
    assert back.instruction == "How many dogs?" and back.program.startswith("OBJ0=Loc")
    assert back.rounds[0]["error"]["message"] == long
    assert back.rounds[0]["observation"] == "# What happened: ..."
