"""1. Orchestration overhead: microseconds per step of trivial ``Eval`` programs, VisChain's
``Orchestrator.execute`` (parse, check, schedule, evaluate, trace) beside VisProg's own
interpreter loop, in one process, at 100 / 1,000 / 10,000 steps.

Programs (the same text for both systems, in each one's syntax):
* independent: ``A{i}=Eval('{i} + 1')`` — every step stands alone;
* chained: ``A0=Eval('1')``, ``A{i}=Eval('{A(i-1)} + 1')`` — each step reads the last.

*cold* is the first run of a program text this process has never seen (its variables get
a fresh prefix) with the compiled-expression cache emptied first, as in a new process;
*warm* is the median of repeated runs of one text after a warm-up. ``overhead_us`` is the warm total less the steps' own
recorded work (Eval's evaluation) in the same runs, so it can never go negative. Wall and
process-CPU microseconds are both shown for both systems (on a shared, loaded machine the
CPU figures are the reliable ones); the load average before and after goes into the JSON.

``--sizes 100,1000`` picks the sizes (default all three); ``--quick`` runs fewer repeats
(VisProg's own loop takes seconds per run at 10,000 steps, so the full run takes minutes).
``--rounds N`` measures everything N times, the systems taking turns, and reports each
figure's best round (its least-disturbed measurement, as ``timeit`` does; on a machine
others share, a busy moment inflates even CPU time) with every round's figures in the JSON.
``--vischain-only`` leaves VisProg's loop out (for ``bench/compare.py``'s before → after).

``--diagnose`` measures where a run's time goes besides its own work instead (VisChain
only): per run of 100 steps (50 runs) and of 10,000 steps (3 runs), cold and warm, the
CPU and wall µs per step, the process's voluntary context switches (waits: a lock, a
hand-off of the interpreter lock to another thread) and involuntary ones (the OS giving the
core to another process: what makes wall exceed CPU on a busy machine), the kernel's share
of the CPU and the page faults (memory growth), the peak RSS so far, and the garbage
collector's passes by generation with their milliseconds.

``visprog`` is a minimal re-implementation of VisProg's ``ProgramInterpreter`` for
EVAL-only programs, written from reading ``engine/utils.py`` and
``engine/step_interpreters.py`` in allenai/visprog. It reproduces what that loop does per
step: split the program into lines, wrap each in a ``Program`` sharing one state dict,
tokenize the line once to find the step name (and print it — here into a null stream), then
tokenize it again to parse the arguments, ``eval`` the quoted expression argument, convert
*every* state value (yes/no strings to booleans, other strings quoted), replace ``xor``,
``str.format`` the expression with the state and ``eval`` it. It leaves out the model-backed
interpreters and the HTML ``inspect`` path, which an Eval-only run never uses.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import time
import tokenize

from common import orchestrator, report

from sandbox.expressions import clear_compiled
from tools import Registry
from tools.builtin.logic import eval_, result

SIZES = (100, 1_000, 10_000)
REPEATS = {100: 9, 1_000: 5, 10_000: 3}  # warm runs (after one warm-up)
COLD = {100: 5, 1_000: 3, 10_000: 2}  # cold runs, each of a new text
QUICK = {100: 3, 1_000: 2, 10_000: 1}  # --quick: warm and cold runs alike


# --- VisProg's interpreter (Eval only), see the module docstring --------------------------


def _tokens(line: str) -> list[tokenize.TokenInfo]:
    return list(tokenize.generate_tokens(io.StringIO(line).readline))


def visprog_parse_step(line: str, partial: bool = False) -> dict:
    tokens = _tokens(line)
    parsed: dict = {"output_var": tokens[0].string, "step_name": tokens[2].string}
    if partial:
        return parsed
    arg_tokens = [t for t in tokens[4:-3] if t.string not in (",", "=")]
    parsed["args"] = {
        arg_tokens[2 * i].string: arg_tokens[2 * i + 1].string for i in range(len(arg_tokens) // 2)
    }
    return parsed


class VisProgStep:
    """VisProg's ``Program``: one line and the state every step shares."""

    def __init__(self, text: str, state: dict) -> None:
        self.prog_str = text
        self.state = state


def visprog_eval_step(step: VisProgStep) -> object:
    parsed = visprog_parse_step(step.prog_str)
    assert parsed["step_name"] == "EVAL"
    expression = eval(parsed["args"]["expr"])  # the quoted argument, as VisProg does
    state = {}
    for name, value in step.state.items():
        if isinstance(value, str):
            if value in ("yes", "no"):
                state[name] = value == "yes"
            elif value.isdecimal():
                state[name] = value
            else:
                state[name] = f"'{value}'"
        else:
            state[name] = value
    if "xor" in expression:
        expression = expression.replace("xor", "!=")
    output = eval(expression.format(**state))
    step.state[parsed["output_var"]] = output
    return output


def visprog_execute(program: str) -> tuple[object, dict]:
    state: dict = {}
    output = None
    sink = io.StringIO()
    for line in program.split("\n"):
        step = VisProgStep(line, state)
        with contextlib.redirect_stdout(sink):
            print(visprog_parse_step(step.prog_str, partial=True)["step_name"])
        output = visprog_eval_step(step)
        sink.seek(0)
        sink.truncate()
    return output, state


# --- programs --------------------------------------------------------------------------


def program(kind: str, n: int, prefix: str, syntax: str) -> str:
    def line(i: int, expr: str) -> str:
        if syntax == "visprog":
            return f'{prefix}{i}=EVAL(expr="{expr}")'
        return f"{prefix}{i}=Eval('{expr}')"

    if kind == "independent":
        return "\n".join(line(i, f"{i} + 1") for i in range(n))
    return "\n".join(
        line(i, "1" if i == 0 else f"{{{prefix}{i - 1}}} + 1") for i in range(n)
    )  # fmt: skip


def prefixes():
    """Fresh variable prefixes of equal length (AA, AB, ...), so every cold text is new."""
    for a in "ABCDEFGHIJKLMNOPQRSTUVWXYZ":
        for b in "ABCDEFGHIJKLMNOPQRSTUVWXYZ":
            yield a + b


def timed(run, text: str) -> tuple[float, float, float]:
    """(wall seconds, process CPU seconds, tool seconds) of one ``run(text)``."""
    w0, c0 = time.perf_counter(), time.process_time()
    tool = run(text)
    return time.perf_counter() - w0, time.process_time() - c0, tool


def cold_run(run, text: str) -> tuple[float, float, float]:
    clear_compiled()
    return timed(run, text)


def measure(run, kind: str, n: int, syntax: str, fresh, quick: bool) -> dict[str, float]:
    """Per-step microseconds, wall and process CPU time (the latter is what a loaded shared
    machine distorts least): cold (median over new texts) and warm (median of repeats);
    ``run(text)`` returns the seconds of tool work it recorded."""
    cold_runs, warm_runs = (QUICK[n], QUICK[n]) if quick else (COLD[n], REPEATS[n])
    cold = [cold_run(run, program(kind, n, next(fresh), syntax)) for _ in range(cold_runs)]
    text = program(kind, n, next(fresh), syntax)
    run(text)  # warm-up
    warm = [timed(run, text) for _ in range(warm_runs)]
    us = 1e6 / n

    def med(rows: list[tuple[float, float, float]], i: int) -> float:
        return statistics.median(r[i] for r in rows) * us

    return {
        "cold_us": med(cold, 0),
        "cold_cpu_us": med(cold, 1),
        "warm_us": med(warm, 0),
        "warm_cpu_us": med(warm, 1),
        "warm_tool_us": med(warm, 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)),
                        help="comma-separated step counts out of 100,1000,10000")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--rounds", type=int, default=1, help="measure N times, report the best")
    parser.add_argument("--diagnose", action="store_true", help="see the module docstring")
    parser.add_argument("--vischain-only", action="store_true",
                        help="skip VisProg's loop (its columns are NaN): for before → after "
                             "comparisons of VisChain (bench/compare.py)")  # fmt: skip
    args = parser.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",")]
    if not set(sizes) <= set(SIZES):
        parser.error(f"sizes must be among {SIZES}")
    load_before = os.getloadavg()
    if args.diagnose:
        return diagnose()
    orch = orchestrator(
        "offline",
        memo=False,
        registry=Registry([eval_, result]),
        limits={"max_program_chars": 2_000_000},  # 10,000 lines of ~28 characters
    )

    def vischain(text: str) -> float:
        res = orch.execute(text)
        assert res.ok, res.error
        return sum(s.duration or 0.0 for s in res.trace.steps)

    def visprog(text: str) -> float:
        out, _ = visprog_execute(text)
        assert isinstance(out, int)
        return float("nan")  # VisProg records no per-step times

    fresh = prefixes()
    rounds: list[list[dict]] = []
    for r in range(args.rounds):
        rounds.append([])
        for n in sizes:
            for kind in ("independent", "chained"):
                ours = measure(vischain, kind, n, "vischain", fresh, args.quick)
                theirs = (
                    dict.fromkeys(ours, float("nan"))
                    if args.vischain_only
                    else measure(visprog, kind, n, "visprog", fresh, args.quick)
                )
                rounds[-1].append({
                    "steps": n,
                    "program": kind,
                    "cold_us": ours["cold_us"],
                    "warm_us": ours["warm_us"],
                    "cold_cpu_us": ours["cold_cpu_us"],
                    "warm_cpu_us": ours["warm_cpu_us"],
                    "overhead_us": ours["warm_us"] - ours["warm_tool_us"],
                    "visprog_cold_us": theirs["cold_us"],
                    "visprog_warm_us": theirs["warm_us"],
                    "visprog_cold_cpu_us": theirs["cold_cpu_us"],
                    "visprog_warm_cpu_us": theirs["warm_cpu_us"],
                    "load": os.getloadavg()[0],
                })  # fmt: skip
                print(f"round {r + 1}:", rounds[-1][-1], flush=True)
    orch.close()
    rows = [best(same) for same in zip(*rounds, strict=True)]
    columns = ["steps", "program", "cold_us", "cold_cpu_us", "cold_cpu_us_worst", "warm_us",
               "warm_cpu_us", "warm_cpu_us_worst", "overhead_us", "visprog_cold_us",
               "visprog_cold_cpu_us", "visprog_warm_us", "visprog_warm_cpu_us",
               "cold_cpu_vs_visprog", "warm_cpu_vs_visprog", "load"]  # fmt: skip
    report("overhead", rows, columns, python=sys.version.split()[0], quick=args.quick,
           load_before=load_before, load_after=os.getloadavg(), rounds=rounds)  # fmt: skip


def diagnose() -> None:
    """See the module docstring (``--diagnose``)."""
    import gc
    import resource

    orch = orchestrator("offline", memo=False, registry=Registry([eval_, result]),
                        limits={"max_program_chars": 2_000_000})  # fmt: skip
    passes: list[tuple[int, float]] = []
    began = [0.0]

    def note(phase: str, info: dict) -> None:
        if phase == "start":
            began[0] = time.perf_counter()
        else:
            passes.append((info["generation"], time.perf_counter() - began[0]))

    fresh = prefixes()
    rows = []
    gc.callbacks.append(note)
    try:
        for n, runs in ((100, 50), (10_000, 3)):
            for kind in ("independent", "chained"):
                for mode in ("cold", "warm"):
                    warm_text = program(kind, n, next(fresh), "vischain")
                    orch.execute(warm_text)
                    wall = cpu = 0.0
                    voluntary = involuntary = faults = 0
                    system = 0.0
                    passes.clear()
                    for _ in range(runs):
                        text = (
                            warm_text
                            if mode == "warm"
                            else program(kind, n, next(fresh), "vischain")
                        )
                        if mode == "cold":
                            clear_compiled()
                        r0 = resource.getrusage(resource.RUSAGE_SELF)
                        w0, c0 = time.perf_counter(), time.process_time()
                        res = orch.execute(text)
                        w1, c1 = time.perf_counter(), time.process_time()
                        r1 = resource.getrusage(resource.RUSAGE_SELF)
                        assert res.ok, res.error
                        del res
                        wall, cpu = wall + w1 - w0, cpu + c1 - c0
                        voluntary += r1.ru_nvcsw - r0.ru_nvcsw
                        involuntary += r1.ru_nivcsw - r0.ru_nivcsw
                        faults += r1.ru_minflt - r0.ru_minflt
                        system += r1.ru_stime - r0.ru_stime
                    row = {"steps": n, "program": kind, "mode": mode,
                           "cpu_us": 1e6 * cpu / n / runs, "wall_us": 1e6 * wall / n / runs,
                           "voluntary_switches": voluntary / runs,
                           "involuntary_switches": involuntary / runs,
                           "system_cpu_us": 1e6 * system / n / runs,
                           "page_faults": faults / runs,
                           "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # fmt: skip
                    for g in (0, 1, 2):
                        mine = [s for gen, s in passes if gen == g]
                        row[f"gen{g}_passes"] = len(mine) / runs
                        row[f"gen{g}_ms"] = 1e3 * sum(mine) / runs
                    row["load"] = os.getloadavg()[0]
                    rows.append(row)
                    print(row, flush=True)
    finally:
        gc.callbacks.remove(note)
        orch.close()
    report("overhead-diagnose", rows, list(rows[0]))


def best(same: tuple[dict, ...]) -> dict:
    """One size and program over the rounds: each figure's best (least) round, its worst
    beside the CPU figures, and the CPU ratios of the best figures."""
    row = {k: min(r[k] for r in same) if isinstance(v, float) else v for k, v in same[0].items()}
    for k in ("cold_cpu_us", "warm_cpu_us", "visprog_cold_cpu_us", "visprog_warm_cpu_us"):
        row[f"{k}_worst"] = max(r[k] for r in same)
    row["load"] = f"{min(r['load'] for r in same):.1f}-{max(r['load'] for r in same):.1f}"
    row["cold_cpu_vs_visprog"] = row["cold_cpu_us"] / row["visprog_cold_cpu_us"]
    row["warm_cpu_vs_visprog"] = row["warm_cpu_us"] / row["visprog_warm_cpu_us"]
    return row


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"done in {time.perf_counter() - t0:.1f} s")
