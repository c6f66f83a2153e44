"""Before → after: one benchmark script run on two versions of the code, taking turns.

``.venv/bin/python bench/compare.py --base REV [--rounds N] SCRIPT [ARGS...]`` extracts
revision ``REV`` (``git archive``) into a temporary directory, puts this checkout's
``bench/`` into it (so both versions run the very same measurement), then runs
``bench/SCRIPT ARGS`` there and here, alternately, ``N`` times each (before, after,
before, after, ...), each in a new process, so both see the same moments of a shared
machine. It prints every numeric column of the script's rows as before → after (each
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
        ident = " ".join([str(first[1]), *(v for _, v in rest if isinstance(v, str))])
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
    parser.add_argument("script", help="a script in bench/, e.g. batching.py")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the script's own arguments")
    opts = parser.parse_args(argv)
    runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="vischain-compare-") as tmp:
        base = Path(tmp) / "base"
        commit = extract(opts.base, base)
        trees = {"before": base, "after": ROOT}
        for r in range(opts.rounds):
            for side, tree in trees.items():
                out = Path(tmp) / f"{side}-{r}"
                runs[side].append(run_once(tree, opts.script, opts.args, out))
                print(f"round {r + 1} {side}: {runs[side][-1]['seconds']:.1f} s, load "
                      f"{runs[side][-1]['load']}", flush=True)  # fmt: skip
    per_side = {side: [numbers(run["data"]) for run in rs] for side, rs in runs.items()}
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
    loads = [x for rs in runs.values() for run in rs for x in run["load"]]
    print(f"\n== {opts.script} {' '.join(opts.args)}: before {commit} → after this checkout, "
          f"{opts.rounds} rounds taking turns, load average {min(loads):.1f}-{max(loads):.1f} ==")  # fmt: skip
    width = max(len(r["figure"]) for r in rows) if rows else 10
    for r in rows:
        ratio = "" if r["after_vs_before"] is None else f"×{r['after_vs_before']:.3f}"
        print(f"{r['figure']:<{width}}  {r['before_median']:>12.4g} → {r['after_median']:<12.4g}"
              f"  {ratio:<7}", end="")  # fmt: skip
        print(f"   (rounds {r['before_range'][0]:.4g}–{r['before_range'][1]:.4g} → "
              f"{r['after_range'][0]:.4g}–{r['after_range'][1]:.4g})")  # fmt: skip
    name = Path(opts.script).stem
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / f"compare-{name}.json").write_text(json.dumps({
        "script": opts.script, "args": opts.args, "base": commit, "rounds": opts.rounds,
        "rows": rows, "load": [min(loads), max(loads)],
        "runs": {side: [{"load": run["load"], "seconds": run["seconds"], "report": run["data"]}
                        for run in rs] for side, rs in runs.items()},
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }, indent=2, default=str) + "\n")  # fmt: skip
    print(f"(written to {results / f'compare-{name}.json'})")


if __name__ == "__main__":
    main()
