"""7. The agent loop against one-shot runs, side by side, on held-out instructions
(bench/data/agent.yaml: none is an example in programs/library or bench/data/heldout.yaml).

Each item has a written reference: the kind of answer asked for and the tools a program
needs. Every instruction runs twice on the same orchestrator (memo off; the order of the two
modes alternates from item to item so feature caches favour neither): ``run(...,
agent=False)`` and ``run(..., agent=True)``. Reported per mode: the share of runs whose
program does what was asked (its result is of the reference kind and it calls the needed
tools), the share ending in a typed error, mean rounds, mean and median seconds; and the
agent's median time over the one-shot median.

    .venv/bin/python bench/agent.py [--limit N] [--model qwen2.5-coder-0.5b-instruct-q4_k_m]
                                     [--profile tiny] [--max-rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import yaml
from common import RESULTS, ROOT, orchestrator, report

from orchestrator.answer_kind import AnswerKind, fits, kind_of_value
from sandbox import VisChainError, parse
from tools.settings import ModelSpec

QUESTION_KINDS = {AnswerKind.YESNO, AnswerKind.NUMBER, AnswerKind.TEXT, AnswerKind.LABEL}
STATIC_KINDS = {
    "Image": AnswerKind.IMAGE,
    "ObjectList": AnswerKind.OBJECTS,
    "Object": AnswerKind.OBJECTS,
    "PointList": AnswerKind.OBJECTS,
    "Number": AnswerKind.NUMBER,
    "Bool": AnswerKind.YESNO,
    "Text": AnswerKind.TEXT,
    "TextList": AnswerKind.TEXT,
}


COLUMNS = ["mode", "runs", "right_kind_share", "typed_error_share", "mean_rounds",
           "mean_seconds", "median_seconds"]  # fmt: skip


def returned_steps(result: Any) -> list[Any]:
    """The step records behind the returned result: for the agent, the rounds from the last
    fresh program (plan or rewrite) up to the returned round."""
    steps = list(result.trace.steps)
    if not result.rounds:
        return steps
    chosen = next((r for r in result.rounds if r.accepted), result.rounds[-1])
    first = chosen.index
    for r in reversed(result.rounds[: chosen.index]):
        first = r.index
        if r.kind != "continue":
            break
    return [s for s in steps if first <= s.meta.get("round", 0) <= chosen.index]


def program_of(result: Any) -> str | None:
    if result.rounds:
        chosen = next((r for r in result.rounds if r.accepted), result.rounds[-1])
        return chosen.program
    return result.trace.program


def judge(orch: Any, item: dict[str, Any], result: Any) -> dict[str, Any]:
    """Whether the returned program does what the reference asks: kind and tools."""
    expected = AnswerKind(item["kind"])
    steps = returned_steps(result)
    source = program_of(result)
    used = {s.tool for s in steps if s.tool}
    result_tool = None
    static = None
    if source:
        try:
            program = parse(source)
            used |= {orch.registry.get(s.tool).spec.name for s in program.steps if s.tool
                     and s.tool in orch.registry}  # fmt: skip
            named = {s.target: s for s in program.steps}
            target = program.result_name
            while target in named and named[target].tool in (None, "Result"):
                values = [a.value for a in named[target].args]
                refs = [getattr(v, "name", None) for v in values]
                target = next((r for r in refs if r), None)
            if target in named and named[target].tool:
                result_tool = orch.registry.get(named[target].tool).spec.name
                static = orch.registry.get(named[target].tool).spec.output
        except (VisChainError, KeyError):
            pass
    if result_tool == "Vqa":  # a VLM answers the question it is asked, whatever its kind
        got = expected if expected in QUESTION_KINDS else AnswerKind.TEXT
    elif result.output is not None:
        got = kind_of_value(result.output)
    else:
        got = STATIC_KINDS.get(static or "", AnswerKind.ANY)
    tools_ok = all(any(t in used for t in need.split("|")) for need in item["tools"])
    kind_ok = fits(expected, got) and got is not AnswerKind.ANY
    return {"kind_ok": kind_ok, "tools_ok": tools_ok, "got": str(got), "tools": sorted(used)}


def images_of(item: dict[str, Any]) -> dict[str, str]:
    if "images" in item:
        return {k: f"sample:{v}" for k, v in item["images"].items()}
    return {"IMAGE": f"sample:{item['image']}"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--model", default=None, help="llama_cpp model (default: the profile's)")
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--max-rounds", type=int, default=3)
    args = parser.parse_args()
    items = yaml.safe_load((ROOT / "bench" / "data" / "agent.yaml").read_text())["items"]
    items = items[: args.limit] if args.limit else items
    roles = {"llm": [ModelSpec(family="llama_cpp", model=args.model)]} if args.model else None
    orch = orchestrator(
        args.profile, memo=False, roles=roles, agent={"max_rounds": args.max_rounds}
    )
    llm = orch.pool.get("llm")
    print(f"planner: {llm.spec.label()}; {len(items)} instructions; profile {args.profile}")
    rows: list[dict[str, Any]] = []
    RESULTS.mkdir(parents=True, exist_ok=True)
    progress = (RESULTS / "agent-items.jsonl").open("w", encoding="utf-8")
    for i, item in enumerate(items):
        modes = ["one-shot", "agent"] if i % 2 == 0 else ["agent", "one-shot"]
        for mode in modes:
            t0 = time.perf_counter()
            result = orch.run(item["instruction"], images=images_of(item), agent=mode == "agent")
            seconds = time.perf_counter() - t0
            try:
                verdict = judge(orch, item, result)
            except Exception as exc:  # a judging bug must not lose the run
                verdict = {"kind_ok": False, "tools_ok": False, "got": f"judge failed: {exc}",
                           "tools": []}  # fmt: skip
            row = {
                "item": i,
                "mode": mode,
                "instruction": item["instruction"],
                "kind": item["kind"],
                "right": verdict["kind_ok"] and verdict["tools_ok"],
                **verdict,
                "error": None if result.error is None else str(result.error.code),
                "rounds": max(1, len(result.rounds)),
                "seconds": round(seconds, 2),
                "answer": result.answer[:60],
            }
            rows.append(row)
            progress.write(json.dumps(row) + "\n")
            progress.flush()
            print(
                f"{i:>2} {mode:<8} right={row['right']!s:<5} rounds={row['rounds']} "
                f"{seconds:6.1f}s error={row['error']}  {item['instruction']}",
                flush=True,
            )
    summary = []
    for mode in ("one-shot", "agent"):
        mine = [r for r in rows if r["mode"] == mode]
        times = [r["seconds"] for r in mine]
        summary.append({
            "mode": mode,
            "runs": len(mine),
            "right_kind_share": sum(r["right"] for r in mine) / len(mine),
            "typed_error_share": sum(r["error"] is not None for r in mine) / len(mine),
            "mean_rounds": statistics.mean(r["rounds"] for r in mine),
            "mean_seconds": statistics.mean(times),
            "median_seconds": statistics.median(times),
        })  # fmt: skip
    one, agent = summary
    ratio = agent["median_seconds"] / one["median_seconds"] if one["median_seconds"] else None
    fixed = sum(
        1
        for a, b in zip(
            [r for r in rows if r["mode"] == "one-shot"],
            [r for r in rows if r["mode"] == "agent"],
            strict=True,
        )
        if a["error"] is not None and b["error"] is None
    )
    report(
        "agent",
        summary,
        COLUMNS,
        planner=llm.spec.label(),
        profile=args.profile,
        median_time_ratio=ratio,
        one_shot_errors_fixed_by_agent=fixed,
        items=rows,
    )
    print(f"agent median time / one-shot median time: {ratio:.2f}" if ratio else "")
    print(f"one-shot errors the agent ended without: {fixed}")
    orch.close()


if __name__ == "__main__":
    main()
