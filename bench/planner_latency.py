"""Planner latency of the README's main job in new processes: the first run (nothing cached:
every prompt token evaluated, prefix states written) against later runs (instructions + tool
docs and the chosen examples restored from ``<cache_dir>/llama_state``), per model, side by
side in one run.

Each run is ``vischain run "Cover the faces with a smiling emoji" --image sample:astronaut``
in a new process, with a fresh cache directory per model (the assembled GGUF files are
linked in, not rebuilt); the planning time is what the trace records for the LLM calls.

    .venv/bin/python bench/planner_latency.py [--runs 4] [--models 1.5b,0.5b]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, report

from tools.settings import default_cache_dir

MODELS = {
    "1.5b": "qwen2.5-coder-1.5b-instruct-q4_k_m",
    "0.5b": "qwen2.5-coder-0.5b-instruct-q4_k_m",
}
INSTRUCTION = "Cover the faces with a smiling emoji"


def one_run(model: str, cache: Path, out: Path) -> dict[str, float]:
    env = {
        **os.environ,
        "VISCHAIN_MODELS__CACHE_DIR": str(cache),
        "VISCHAIN_MODELS__ROLES": json.dumps({"llm": {"family": "llama_cpp", "model": model}}),
        "VISCHAIN_MODELS__PROGRESS": "false",
    }
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "run", INSTRUCTION, "--image", "sample:astronaut",
         "--trace-dir", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    trace = out / "trace.jsonl"
    if done.returncode not in (0, 1) or not trace.is_file():  # 1: the run ended in an error
        raise RuntimeError(
            f"vischain run exited {done.returncode}: {(done.stderr or done.stdout)[-2000:]}"
        )
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    planning = [r for r in records if r.get("type") == "planning"]
    program = next(r["program"] for r in records if r.get("type") == "run")
    return {
        "planning_s": sum(r["seconds"] for r in planning),
        "process_s": wall,
        "prompt_tokens": planning[0]["prompt_tokens"],
        "program": program,
        "ok": done.returncode == 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=4, help="processes per model (first + later)")
    parser.add_argument("--models", default="1.5b,0.5b")
    args = parser.parse_args()
    models_dir = default_cache_dir() / "models"
    rows = []
    for short in args.models.split(","):
        model = MODELS[short]
        with tempfile.TemporaryDirectory(prefix="vischain-latency-") as tmp:
            cache = Path(tmp) / "cache"
            cache.mkdir()
            if models_dir.is_dir():  # reuse assembled GGUF files
                (cache / "models").symlink_to(models_dir)
            runs = []
            for i in range(args.runs):
                runs.append(one_run(model, cache, Path(tmp) / f"out{i}"))
                print(f"{short} run {i + 1}: planning {runs[-1]['planning_s']:.1f} s, "
                      f"process {runs[-1]['process_s']:.1f} s", flush=True)  # fmt: skip
            states = sum(p.stat().st_size for p in (cache / "llama_state").glob("*.state"))
        later = [r["planning_s"] for r in runs[1:]]
        rows.append({
            "model": short,
            "first_s": runs[0]["planning_s"],
            "later_median_s": statistics.median(later) if later else float("nan"),
            "later_s": [round(s, 2) for s in later],
            "first_over_later": runs[0]["planning_s"] / statistics.median(later) if later else 0,
            "prompt_tokens": runs[0]["prompt_tokens"],
            "same_program": len({r["program"] for r in runs}) == 1,
            "runs_ok": sum(r["ok"] for r in runs),
            "state_mb": states / 2**20,
        })  # fmt: skip
    name = "planner_latency" if args.models == "1.5b,0.5b" else f"planner_latency-{args.models}"
    report(name, rows,
           ["model", "first_s", "later_median_s", "later_s", "first_over_later",
            "prompt_tokens", "same_program", "runs_ok", "state_mb"],
           instruction=INSTRUCTION, load_average=os.getloadavg())  # fmt: skip


if __name__ == "__main__":
    main()
