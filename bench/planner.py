"""6. The planner on held-out instructions (bench/data/heldout.yaml, never used as
examples): the share of programs that parse and check, the share whose structure (the
sequence of tools) matches the reference program, and tokens and seconds per program.

    .venv/bin/python bench/planner.py [--limit N] [--model qwen2.5-coder-0.5b-instruct-q4_k_m]
"""

from __future__ import annotations

import argparse
import statistics
import time

import yaml
from common import ROOT, orchestrator, report

from orchestrator.config import PlannerConfig
from orchestrator.planner import Planner
from sandbox import parse
from tools import default_registry
from tools.settings import ModelSpec


def structure(source: str) -> list[str]:
    program = parse(source)
    registry = default_registry(plugins=False)
    return [registry.get(s.tool).spec.name for s in program.steps if s.tool]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument(
        "--model", default=None, help="llama_cpp model name (default: the profile's)"
    )
    args = parser.parse_args()
    items = yaml.safe_load((ROOT / "bench" / "data" / "heldout.yaml").read_text())["items"]
    items = items[: args.limit] if args.limit else items
    roles = {"llm": [ModelSpec(family="llama_cpp", model=args.model)]} if args.model else None
    orch = orchestrator("offline", roles=roles)
    llm = orch.pool.get("llm")
    embedder = orch.pool.get("embeddings")
    # told about every tool, as a user with all the models would be
    planner = Planner(default_registry(plugins=False), llm, PlannerConfig(), embedder=embedder)
    per_family: dict[str, list[dict]] = {}
    rows = []
    for item in items:
        t0 = time.perf_counter()
        [plan] = planner.plan(item["instruction"], item["inputs"])
        seconds = time.perf_counter() - t0
        reference = structure(item["reference"])
        got = structure(plan.source) if plan.ok else []
        record = {
            "family": item["family"],
            "ok": plan.ok,
            "first_try": plan.ok and len(plan.attempts) == 1,
            "structure_match": plan.ok and got == reference,
            "same_tools": plan.ok and set(got) == set(reference),
            "seconds": seconds,
            "completion_tokens": sum(a.completion_tokens for a in plan.attempts),
            "prompt_tokens": plan.attempts[0].prompt_tokens,
        }
        per_family.setdefault(item["family"], []).append(record)
        print(f"{item['family']:9s} ok={plan.ok!s:5s} match={record['structure_match']!s:5s} "
              f"{seconds:5.1f}s  {item['instruction']}")  # fmt: skip
    for family, records in [
        *sorted(per_family.items()),
        ("ALL", [r for rs in per_family.values() for r in rs]),
    ]:
        n = len(records)
        rows.append({
            "family": family,
            "n": n,
            "parse_and_check": sum(r["ok"] for r in records) / n,
            "first_try": sum(r["first_try"] for r in records) / n,
            "structure_match": sum(r["structure_match"] for r in records) / n,
            "same_tools": sum(r["same_tools"] for r in records) / n,
            "median_s": statistics.median(r["seconds"] for r in records),
            "completion_tokens": statistics.mean(r["completion_tokens"] for r in records),
            "prompt_tokens": statistics.mean(r["prompt_tokens"] for r in records),
        })  # fmt: skip
    orch.close()
    name = "planner" if not args.model else f"planner-{args.model}"
    report(name, rows, ["family", "n", "parse_and_check", "first_try", "structure_match",
                             "same_tools", "median_s", "completion_tokens", "prompt_tokens"],
           model=llm.spec.label())  # fmt: skip


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"done in {time.perf_counter() - t0:.1f} s")
