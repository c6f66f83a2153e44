"""7. The agent loop against one-shot runs, side by side, on held-out instructions
(bench/data/agent.yaml: none is an example in programs/library or bench/data/heldout.yaml).

Each item has a written reference: the kind of answer asked for and the tools a program
needs. Every instruction runs twice on the same orchestrator (memo off; the order of the two
modes alternates from item to item so feature caches favour neither): ``run(...,
agent=False)`` and ``run(..., agent=True)``. Reported per mode: the share of runs whose
program does what was asked (its result is of the reference kind and it calls the needed
tools), the share ending in a typed error, mean rounds, mean and median seconds; and the
agent's median time over the one-shot median. A run ending in an error is attributed:
for the agent's ``agent-limit``, to what its checks still found on the returned round
(answer-kind, empty-detection, ...), else to the error's code.

Every row is appended to ``bench/results/agent-items.jsonl`` as soon as it is measured (the
file is opened, appended to and closed per row, so a checkout that replaces the folder's
files cannot swallow them); ``--resume`` keeps the rows already there and measures the rest.

    .venv/bin/python bench/agent.py [--limit N] [--model qwen2.5-coder-0.5b-instruct-q4_k_m]
                                     [--profile tiny] [--max-rounds 3] [--resume]
                                     [--items 3,11,15-17] [--out agent] [--traces DIR]

``--traces DIR`` keeps what a diagnosis needs beyond the row's short answer: each run's
whole trace as JSON lines, ``DIR/item<N>-<mode>.jsonl`` (planning calls with their prompts
and outputs, steps with their errors, and the agent's rounds: program, findings,
observation, decision).
"""

from __future__ import annotations

import argparse
import calendar
import json
import os
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from common import RESULTS, ROOT, orchestrator, report

from orchestrator.answer_kind import AnswerKind, fits, kind_of_value
from orchestrator.errors import RunErrorCode
from orchestrator.rounds import findings, returned
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
    span = returned(result.rounds)
    if span is None:
        return steps
    return [s for s in steps if span[0] <= s.meta.get("round", 0) <= span[1]]


def reason(result: Any) -> str | None:
    """Why a run ended in an error: for the agent's limit, the checks its returned round
    still failed (``agent-limit: answer-kind``); else the error's code."""
    if result.error is None:
        return None
    code = str(result.error.code)
    if code == RunErrorCode.AGENT_LIMIT:
        checks = sorted({str(i["check"]) for i in findings(result.rounds)})
        return f"{code}: {', '.join(checks)}" if checks else code
    return code


def save_row(path: Path, row: dict[str, Any]) -> None:
    """Append one row to ``path`` now (open, write, flush, sync, close)."""
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


def load_rows(path: Path) -> list[dict[str, Any]]:
    """The rows saved in ``path`` (a line cut short by a killed run is left out)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def summary_of(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per mode: runs, right-kind share, typed-error share, mean rounds, mean and median
    seconds — over the items measured in both modes, so the two compare like for like."""
    both = {r["item"] for r in rows if r["mode"] == "agent"} & {
        r["item"] for r in rows if r["mode"] == "one-shot"
    }
    out = []
    for mode in ("one-shot", "agent"):
        mine = [r for r in rows if r["mode"] == mode and r["item"] in both]
        if not mine:
            continue
        times = [r["seconds"] for r in mine]
        out.append({
            "mode": mode,
            "runs": len(mine),
            "right_kind_share": sum(r["right"] for r in mine) / len(mine),
            "typed_error_share": sum(r["error"] is not None for r in mine) / len(mine),
            "mean_rounds": statistics.mean(r["rounds"] for r in mine),
            "mean_seconds": statistics.mean(times),
            "median_seconds": statistics.median(times),
            "errors": dict(Counter(r.get("reason") or r["error"] for r in mine if r["error"])),
        })  # fmt: skip
    return out


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


def save_trace(directory: Path, item: int, mode: str, result: Any) -> Path:
    """Write one run's trace records to ``directory/item<N>-<mode>.jsonl``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"item{item}-{mode}.jsonl"
    records = result.trace.records()
    path.write_text("".join(json.dumps(r, default=str) + "\n" for r in records), "utf-8")
    return path


def deadline(hhmm: str) -> float:
    """The epoch seconds of today's ``HH:MM`` UTC."""
    hours, minutes = (int(x) for x in hhmm.split(":"))
    now = time.gmtime()
    return float(calendar.timegm((*now[:3], hours, minutes, 0, 0, 0, 0)))


def indices(text: str) -> set[int]:
    """Item indices from ``3,11,15-17``."""
    out: set[int] = set()
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        out.update(range(int(first), int(last or first) + 1))
    return out


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
    parser.add_argument("--resume", action="store_true", help="keep the rows already saved")
    parser.add_argument("--items", default=None,
                        help="only these item indices, e.g. 3,11,15-17 (a focused run)")  # fmt: skip
    parser.add_argument("--out", default="agent", help="results name (bench/results/NAME.json)")
    parser.add_argument("--stop-at", default=None,
                        help="UTC HH:MM: start no item after it; the results say partial")  # fmt: skip
    parser.add_argument("--traces", type=Path, default=None,
                        help="write each run's whole trace to DIR/item<N>-<mode>.jsonl")  # fmt: skip
    args = parser.parse_args()
    items = yaml.safe_load((ROOT / "bench" / "data" / "agent.yaml").read_text())["items"]
    items = items[: args.limit] if args.limit else items
    wanted = indices(args.items) if args.items else set(range(len(items)))
    roles = {"llm": [ModelSpec(family="llama_cpp", model=args.model)]} if args.model else None
    orch = orchestrator(
        args.profile, memo=False, roles=roles, agent={"max_rounds": args.max_rounds}
    )
    llm = orch.pool.get("llm")
    print(f"planner: {llm.spec.label()}; {len(items)} instructions; profile {args.profile}")
    load_before = os.getloadavg()
    RESULTS.mkdir(parents=True, exist_ok=True)
    progress = RESULTS / f"{args.out}-items.jsonl"
    rows = load_rows(progress) if args.resume else []
    progress.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    done = {(r["item"], r["mode"]) for r in rows}
    stop_at = deadline(args.stop_at) if args.stop_at else None
    for i, item in enumerate(items):
        if i not in wanted:
            continue
        if stop_at is not None and time.time() >= stop_at:
            print(f"stopping at item {i}: --stop-at {args.stop_at} UTC passed", flush=True)
            break
        modes = ["one-shot", "agent"] if i % 2 == 0 else ["agent", "one-shot"]
        for mode in modes:
            if (i, mode) in done:
                continue
            t0 = time.perf_counter()
            result = orch.run(item["instruction"], images=images_of(item), agent=mode == "agent")
            seconds = time.perf_counter() - t0
            if args.traces is not None:
                save_trace(args.traces, i, mode, result)
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
                "reason": reason(result),
                "rounds": max(1, len(result.rounds)),
                "seconds": round(seconds, 2),
                "answer": result.answer[:60],
            }
            rows.append(row)
            save_row(progress, row)
            print(
                f"{i:>2} {mode:<8} right={row['right']!s:<5} rounds={row['rounds']} "
                f"{seconds:6.1f}s error={row['reason']}  {item['instruction']}",
                flush=True,
            )
    summary = summary_of(rows)
    measured = {r["item"] for r in rows if r["mode"] == "agent"} & {
        r["item"] for r in rows if r["mode"] == "one-shot"
    }
    partial = (
        f"{len(measured & wanted)} of {len(wanted)} items in both modes"
        if len(measured & wanted) < len(wanted)
        else None
    )
    one, agent = summary
    ratio = agent["median_seconds"] / one["median_seconds"] if one["median_seconds"] else None
    by_item = {(r["item"], r["mode"]): r for r in rows}
    fixed = sum(
        1
        for (i, mode), a in by_item.items()
        if mode == "one-shot" and a["error"] is not None
        and by_item.get((i, "agent"), a)["error"] is None
    )  # fmt: skip
    report(
        args.out,
        summary,
        COLUMNS,
        planner=llm.spec.label(),
        profile=args.profile,
        partial=partial,
        median_time_ratio=ratio,
        one_shot_errors_fixed_by_agent=fixed,
        load_average_before=load_before,
        load_average_after=os.getloadavg(),
        items=rows,
    )
    for mode in summary:
        print(f"{mode['mode']} errors: {mode['errors'] or 'none'}")
    print(f"agent median time / one-shot median time: {ratio:.2f}" if ratio else "")
    print(f"one-shot errors the agent ended without: {fixed}")
    orch.close()


if __name__ == "__main__":
    main()
