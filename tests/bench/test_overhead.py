"""bench/overhead.py's rounds: each figure's best round, the worst CPU figures beside it."""

from __future__ import annotations

import pytest

from tests.support.bench import bench_script


@pytest.fixture(scope="module")
def bench():
    with bench_script("overhead") as module:
        yield module


def _row(cold: float, warm: float, visprog: float, load: float) -> dict:
    return {
        "steps": 100, "program": "chained", "cold_us": cold + 5, "warm_us": warm + 5,
        "cold_cpu_us": cold, "warm_cpu_us": warm, "overhead_us": 1.0,
        "visprog_cold_us": visprog + 5, "visprog_warm_us": visprog + 5,
        "visprog_cold_cpu_us": visprog, "visprog_warm_cpu_us": visprog, "load": load,
    }  # fmt: skip


def test_each_figure_takes_its_best_round_and_keeps_the_worst_beside_it(bench) -> None:
    row = bench.best((_row(40.0, 30.0, 100.0, 2.5), _row(60.0, 25.0, 80.0, 4.0)))
    assert (row["steps"], row["program"]) == (100, "chained")
    assert (row["cold_cpu_us"], row["cold_cpu_us_worst"]) == (40.0, 60.0)
    assert (row["warm_cpu_us"], row["warm_cpu_us_worst"]) == (25.0, 30.0)
    assert (row["visprog_cold_cpu_us"], row["visprog_cold_cpu_us_worst"]) == (80.0, 100.0)
    assert row["cold_cpu_vs_visprog"] == pytest.approx(0.5)
    assert row["load"] == "2.5-4.0"


def test_visprog_loop_computes_the_chain(bench) -> None:
    text = bench.program("chained", 5, "AB", "visprog")
    out, state = bench.visprog_execute(text)
    assert out == 5 and state["AB4"] == 5
