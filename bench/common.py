"""Shared pieces of the benchmark scripts: timing with warm-up and medians, result tables,
JSON output, and orchestrators on the tiny (or realistic random-weight) models.

Run any script with the project's venv, e.g. ``.venv/bin/python bench/overhead.py``; each
prints a table and writes ``bench/results/<name>.json``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
RESULTS = Path(os.environ.get("VISCHAIN_BENCH_RESULTS") or ROOT / "bench" / "results")


def median_time(fn: Callable[[], Any], *, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds, after ``warmup`` unmeasured calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved_medians(
    fns: list[Callable[[], Any]], *, repeats: int = 9, warmup: int = 1
) -> list[float]:
    """Median wall time of each of ``fns`` in seconds, measured taking turns (one call of
    each per round, after ``warmup`` unmeasured rounds), so a machine's slow moments fall
    on all of them alike and their ratios hold where each alone would swing."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, spent in zip(fns, times, strict=True):
            t0 = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - t0)
    return [statistics.median(spent) for spent in times]


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    widths = [max(len(c), *(len(cell(r.get(c, ""))) for r in rows)) for c in columns]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append(
            "  ".join(cell(r.get(c, "")).ljust(w) for c, w in zip(columns, widths, strict=True))
        )
    return "\n".join(lines)


def report(name: str, rows: list[dict[str, Any]], columns: list[str], **extra: Any) -> None:
    """Print the table and write ``bench/results/<name>.json``."""
    print(f"\n== {name} ==")
    print(table(rows, columns))
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {
        "benchmark": name,
        "rows": rows,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        **extra,
    }
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(f"(written to {RESULTS / f'{name}.json'})")


def orchestrator(
    profile: str = "tiny",
    *,
    memo: bool = True,
    registry: Any = None,
    roles: dict | None = None,
    **config: Any,
) -> Any:
    """An orchestrator on ``profile`` with a cache directory of its own; ``roles`` override."""
    from orchestrator import Config, Orchestrator

    cache = Path(os.environ.get("VISCHAIN_BENCH_CACHE", tempfile.gettempdir())) / "vischain-bench"
    cfg = Config(
        models={"profile": profile, "cache_dir": cache, "progress": False, "roles": roles or {}},
        plugins=False,
        executor={"memo_mb": 512 if memo else 0, **config.pop("executor", {})},
        **config,
    )
    return Orchestrator(cfg, registry=registry)


def sequential(orch: Any, program: str, images: dict[str, Any]) -> Any:
    """A VisProg-style baseline: the same tools, one step at a time, in program order —
    no DAG parallelism, no batching, no memo."""
    from sandbox import Const, ListOf, Ref, check, parse
    from tools.convert import to_image

    values: dict[str, Any] = {k: to_image(v) for k, v in images.items()}
    bound = check(parse(program), orch.registry, inputs=list(values))

    def value(v: Any) -> Any:
        if isinstance(v, Ref):
            return values[v.name]
        if isinstance(v, ListOf):
            return [value(i) for i in v.items]
        if isinstance(v, Const):
            return list(v.value) if isinstance(v.value, tuple) else v.value
        from sandbox import compile_expression

        return compile_expression(v.source).bind(values)

    for step in bound.steps:
        args = {k: value(v) for k, v in step.args.items()}
        if step.tool is None:
            values[step.target] = args["value"]
            continue
        tool = orch.registry.get(step.tool)
        values[step.target] = tool.invoke(orch.context(), tool.prepare(args))
    return values[bound.result]


def faces_grid(n: int = 20) -> Any:
    """A picture of ``n`` faces (the astronaut's, tiled), for Classify over many faces."""
    from PIL import Image as PILImage

    from tools.convert import to_image

    face = to_image("sample:astronaut").pil.crop((150, 20, 290, 190)).resize((120, 140))
    cols = 5
    rows = (n + cols - 1) // cols
    grid = PILImage.new("RGB", (120 * cols, 140 * rows), (255, 255, 255))
    for i in range(n):
        grid.paste(face, ((i % cols) * 120, (i // cols) * 140))
    return to_image(grid)


def realistic_clip() -> Any:
    """CLIP ViT-B-32 with random weights: a realistic size where cost depends on it."""
    from tools.settings import ModelSpec

    return ModelSpec(family="open_clip", model="ViT-B-32", options={"random_init": True})
