"""Before → after: one benchmark script run on two versions of the code, taking turns.

``.venv/bin/python bench/compare.py --base REV [--rounds N] 'SCRIPT ARGS' ['SCRIPT2 ARGS']``
extracts revision ``REV`` (``git archive``) into a temporary directory, puts this
checkout's ``bench/`` into it (so both versions run the very same measurement), then runs
each ``bench/SCRIPT ARGS`` there and here, alternately, ``N`` rounds (per round: each
script before, then after), each in a new process, so both see the same moments of a
shared machine. It prints every numeric column of the script's rows as before → after (each
side's median over the rounds, then its range) with the after/before ratio of the
medians, and writes ``bench/results/compare-<name>.json`` with every round's rows and
the load average (1-minute) before and after each run.

Nested values a script reports beside its rows (``report(name, rows, cols, extra={...})``)
are compared too where they are numbers (one level deep, e.g. ``lone_sequential_caller``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def extract(rev: str, into: Path) -> str:
    """Revision ``rev``'s tree in ``into`` with this checkout's ``bench/``; its commit."""
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", rev],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    shutil.rmtree(into / "bench")
    shutil.copytree(ROOT / "bench", into / "bench", ignore=shutil.ignore_patterns("results"))
    return commit


def run_once(tree: Path, script: str, args: list[str], results: Path) -> dict[str, Any]:
    """One run of ``bench/script`` in ``tree``: its JSON report and the load around it."""
    results.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "VISCHAIN_BENCH_RESULTS": str(results)}
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(tree / "bench" / script), *args], cwd=tree, env=env,
                   check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    seconds = time.perf_counter() - t0
    (found,) = results.glob("*.json")
    data = json.loads(found.read_text())
    return {"data": data, "load": [load, os.getloadavg()[0]], "seconds": seconds}


def numbers(data: dict[str, Any]) -> dict[str, float]:
    """Every number of a report, by a readable key: ``<identity> | <column>`` for the rows
    (identity: the row's first value, e.g. its case or size, and its other text values),
    ``<extra> | <key>`` for nested extras."""
    out: dict[str, float] = {}
    for row in data.get("rows", []):
        first, *rest = row.items()
        text = (v for k, v in rest if isinstance(v, str) and "load" not in k)
        ident = " ".join([str(first[1]), *text])
        for k, v in rest:
            if isinstance(v, int | float) and not isinstance(v, bool):
                out[f"{ident} | {k}"] = float(v)
    for name, value in data.items():
        if name in ("rows", "rounds") or not isinstance(value, dict):
            continue
        for k, v in value.items():
            if isinstance(v, int | float) and not isinstance(v, bool):
                out[f"{name} | {k}"] = float(v)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the revision measured as 'before'")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("commands", nargs="+",
                        help="scripts in bench/ with their arguments, each one quoted string, "
                             "e.g. 'batching.py --only vqa' throughput.py")  # fmt: skip
    opts = parser.parse_args(argv)
    commands = [shlex.split(c) for c in opts.commands]
    runs: dict[int, dict[str, list[dict[str, Any]]]] = {
        i: {"before": [], "after": []} for i in range(len(commands))
    }
    with tempfile.TemporaryDirectory(prefix="vischain-compare-") as tmp:
        base = Path(tmp) / "base"
        commit = extract(opts.base, base)
        trees = {"before": base, "after": ROOT}
        for r in range(opts.rounds):
            for i, (script, *args) in enumerate(commands):
                for side, tree in trees.items():
                    run = run_once(tree, script, args, Path(tmp) / f"{i}-{side}-{r}")
                    runs[i][side].append(run)
                    print(f"round {r + 1} {script} {side}: {run['seconds']:.1f} s, load "
                          f"{run['load'][0]:.2f} → {run['load'][1]:.2f}", flush=True)  # fmt: skip
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    for i, (script, *args) in enumerate(commands):
        side_runs = runs[i]
        rows = compared(side_runs)
        loads = [x for rs in side_runs.values() for run in rs for x in run["load"]]
        print(f"\n== {shlex.join([script, *args])}: before {commit} → after this checkout, "
              f"{opts.rounds} rounds taking turns, load average {min(loads):.1f}-{max(loads):.1f}"
              " (median of the rounds, then their range) ==")  # fmt: skip
        width = max((len(r["figure"]) for r in rows), default=10)
        for r in rows:
            ratio = "" if r["after_vs_before"] is None else f"×{r['after_vs_before']:.3f}"
            (b0, b1), (a0, a1) = r["before_range"], r["after_range"]
            print(f"{r['figure']:<{width}}  {r['before_median']:>10.4g} → "
                  f"{r['after_median']:<10.4g} {ratio:<7}  ({b0:.4g}–{b1:.4g} → {a0:.4g}–{a1:.4g})")  # fmt: skip
        name = Path(script).stem + "".join(f"-{a.strip('-')}" for a in args)
        (results / f"compare-{name}.json").write_text(json.dumps({
            "script": script, "args": args, "base": commit, "rounds": opts.rounds,
            "rows": rows, "load": [min(loads), max(loads)],
            "runs": {side: [{"load": run["load"], "seconds": run["seconds"],
                             "report": run["data"]} for run in rs]
                     for side, rs in side_runs.items()},
            "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        }, indent=2, default=str) + "\n")  # fmt: skip
        print(f"(written to {results / f'compare-{name}.json'})")


def compared(side_runs: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Each figure both sides reported in every round: medians, ratio, ranges."""
    per_side = {side: [numbers(run["data"]) for run in rs] for side, rs in side_runs.items()}
    keys = [k for k in per_side["after"][0] if all(k in n for ns in per_side.values() for n in ns)]
    rows = []
    for key in keys:
        before = [n[key] for n in per_side["before"]]
        after = [n[key] for n in per_side["after"]]
        b, a = statistics.median(before), statistics.median(after)
        rows.append({"figure": key, "before_median": b, "after_median": a,
                     "after_vs_before": a / b if b else None,
                     "before_range": [min(before), max(before)],
                     "after_range": [min(after), max(after)]})  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
