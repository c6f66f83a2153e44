"""An evaluation's numbers and pages: ``summary.json``, ``report.html`` and the side-by-side
comparison of two evaluation folders (``vischain eval --compare A B``).

The summary holds the mean score (the dataset's metric) and the fraction answered
correctly, overall and per question type; micro-averaged precision/recall/F1 for tagging;
the attribution table (culprit × tool → items); latency percentiles over items (p50, p90,
p99, linear interpolation); and how many runs failed.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from tools.files import write_atomic

from ..templating import render_template
from .metrics import PairCounts

REPORT = "report.html"
COMPARE = "compare.html"


def _share(rows: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(rows)
    return {
        "items": n,
        "score": round(sum(float(r["score"]) for r in rows) / n, 4) if n else None,
        "correct": round(sum(bool(r["correct"]) for r in rows) / n, 4) if n else None,
    }


def summarize(rows: list[dict[str, Any]], plan: dict[str, Any]) -> dict[str, Any]:
    """The numbers of an evaluation from its rows (see the module docstring)."""
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_type[str(r["type"])].append(r)
    culprits: dict[str, Counter[str]] = defaultdict(Counter)
    for r in rows:
        if r.get("attribution"):
            a = r["attribution"]
            culprits[a["culprit"]][a.get("tool") or "-"] += 1
    seconds = [float(r["seconds"]) for r in rows if r.get("seconds") is not None]
    latency = None
    if seconds:
        p50, p90, p99 = (round(float(v), 3) for v in np.percentile(seconds, [50, 90, 99]))
        latency = {"p50": p50, "p90": p90, "p99": p99, "mean": round(float(np.mean(seconds)), 3)}
    summary: dict[str, Any] = {
        **_share(rows),
        **plan,  # "items": how many the evaluation holds; "evaluated": how many are done
        "evaluated": len(rows),
        "failed_runs": sum(not r["ok"] for r in rows),
        "by_type": {t: _share(rs) for t, rs in sorted(by_type.items())},
        "attribution": {c: dict(sorted(n.items())) for c, n in sorted(culprits.items())},
        "latency_s": latency,
        "tagging": None,
    }
    pairs = [PairCounts(**r["pairs"]) for r in rows if r.get("pairs")]
    if pairs:
        total = sum(pairs, PairCounts(0, 0, 0))
        summary["tagging"] = {
            "precision": round(total.precision, 4),
            "recall": round(total.recall, 4),
            "f1": round(total.f1, 4),
        }
    return summary


def write_report(out: Path, summary: dict[str, Any], rows: list[dict[str, Any]]) -> Path:
    """``report.html`` in ``out``: the summary, the tables and one row per item linking
    to its trace page."""
    attribution = [
        {"culprit": c, "tool": tool, "items": n}
        for c, tools in summary["attribution"].items()
        for tool, n in tools.items()
    ]
    page = render_template("eval.html.j2", summary=summary, rows=rows, attribution=attribution)
    path = out / REPORT
    write_atomic(path, page)
    return path


def _load(folder: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    rows = {}
    for line in (folder / "results.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        rows[str(row["id"])] = row
    return summary, rows


def compare(a: str | Path, b: str | Path, *, out: str | Path | None = None) -> dict[str, Any]:
    """Two evaluation folders side by side: overall and per-type numbers, and the items
    one got right and the other wrong. With ``out``, also writes ``compare.html`` there."""
    fa, fb = Path(a), Path(b)
    sa, ra = _load(fa)
    sb, rb = _load(fb)
    types = sorted(set(sa["by_type"]) | set(sb["by_type"]))
    common = [i for i in ra if i in rb]
    result = {
        "a": {"folder": str(fa), "dataset": sa.get("dataset"), **_share(list(ra.values()))},
        "b": {"folder": str(fb), "dataset": sb.get("dataset"), **_share(list(rb.values()))},
        "by_type": {t: {"a": sa["by_type"].get(t), "b": sb["by_type"].get(t)} for t in types},
        "common_items": len(common),
        "only_a_correct": [i for i in common if ra[i]["correct"] and not rb[i]["correct"]],
        "only_b_correct": [i for i in common if rb[i]["correct"] and not ra[i]["correct"]],
        "latency_s": {"a": sa.get("latency_s"), "b": sb.get("latency_s")},
    }
    if out is not None:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        flips = [
            {"id": i, "winner": side, "a": ra[i], "b": rb[i]}
            for side, ids in (("a", result["only_a_correct"]), ("b", result["only_b_correct"]))
            for i in ids
        ]
        page = render_template("compare.html.j2", cmp=result, flips=flips)
        write_atomic(folder / COMPARE, page)
    return result


def compare_text(result: dict[str, Any]) -> str:
    """The comparison as a plain-text table (what the CLI prints)."""

    def pct(share: dict[str, Any] | None, key: str = "score") -> str:
        return "-" if not share or share.get(key) is None else f"{share[key]:.1%}"

    lines = [
        f"A: {result['a']['folder']}  ({result['a']['items']} items)",
        f"B: {result['b']['folder']}  ({result['b']['items']} items)",
        "",
        f"{'type':<24}{'A':>10}{'B':>10}",
        f"{'all':<24}{pct(result['a']):>10}{pct(result['b']):>10}",
    ]
    for t, pair in result["by_type"].items():
        lines.append(f"{t:<24}{pct(pair['a']):>10}{pct(pair['b']):>10}")
    lines += [
        "",
        f"{result['common_items']} items in both; right only in A: "
        f"{len(result['only_a_correct'])}, right only in B: {len(result['only_b_correct'])}",
    ]
    return "\n".join(lines) + "\n"


def summary_text(summary: dict[str, Any]) -> str:
    """The summary as a Markdown table (what the CLI prints; the README's table)."""

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{x:.1%}"

    lines = [
        f"{summary['dataset']}: {summary['evaluated']} of {summary['items']} items, "
        f"seed {summary['seed']}",
        "",
        "| question type | items | score | correct |",
        "|---|---:|---:|---:|",
    ]
    for name, share in summary["by_type"].items():
        lines.append(
            f"| {name} | {share['items']} | {pct(share['score'])} | {pct(share['correct'])} |"
        )
    lines.append(
        f"| all | {summary['evaluated']} | {pct(summary['score'])} | {pct(summary['correct'])} |"
    )
    if summary.get("tagging"):
        t = summary["tagging"]
        lines.append(f"\ntagging P {pct(t['precision'])} R {pct(t['recall'])} F1 {pct(t['f1'])}")
    if summary["attribution"]:
        lines += ["", "| culprit | tool | items |", "|---|---|---:|"]
        for culprit, tools in summary["attribution"].items():
            lines.extend(f"| {culprit} | {tool} | {n} |" for tool, n in tools.items())
    if summary.get("latency_s"):
        lat = summary["latency_s"]
        lines.append(
            f"\nlatency per item: p50 {lat['p50']} s, p90 {lat['p90']} s, p99 {lat['p99']} s"
        )
    return "\n".join(lines) + "\n"
