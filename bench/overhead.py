"""1. Orchestration overhead: 1,000-step programs of cheap tools; microseconds per step
spent in parsing, checking, scheduling and tracing, excluding the tools' own work."""

from __future__ import annotations

import time

from common import median_time, orchestrator, report

from tools import Registry, tool
from tools.builtin.logic import count, eval_

STEPS = 1000


@tool
def noop(x: int) -> int:
    """Return x (a tool that does no work, run on the worker threads).

    Args:
        x: a number
    """
    return x


@tool(inline=True)
def noop_inline(x: int) -> int:
    """Return x (a tool that does no work, run in the scheduler's thread).

    Args:
        x: a number
    """
    return x


def programs() -> dict[str, str]:
    return {
        "chain of pooled tools": "\n".join(
            ["A0=Noop(x=0)"] + [f"A{i}=Noop(x=A{i - 1})" for i in range(1, STEPS)]
        ),
        "1,000 independent pooled tools": "\n".join(f"A{i}=Noop(x={i})" for i in range(STEPS)),
        "chain of inline tools": "\n".join(
            ["A0=NoopInline(x=0)"] + [f"A{i}=NoopInline(x=A{i - 1})" for i in range(1, STEPS)]
        ),
        "chain of Eval steps": "\n".join(
            ["A0=Eval('1')"] + [f"A{i}=Eval('{{A{i - 1}}} + 1')" for i in range(1, STEPS)]
        ),
    }


def main() -> None:
    orch = orchestrator("offline", memo=False, registry=Registry([noop, noop_inline, count, eval_]))
    rows = []
    for name, program in programs().items():
        parse_check = median_time(lambda program=program: orch.check(program, inputs=[]), repeats=5)
        result = orch.execute(program)
        assert result.ok, result.error
        tool_seconds = sum(s.duration or 0.0 for s in result.trace.steps)
        total = median_time(lambda program=program: orch.execute(program), repeats=5)
        rows.append({
            "program": name,
            "steps": STEPS,
            "total_ms": total * 1e3,
            "tool_work_ms": tool_seconds * 1e3,
            "parse_check_us_per_step": parse_check / STEPS * 1e6,
            "overhead_us_per_step": (total - tool_seconds) / STEPS * 1e6,
        })  # fmt: skip
    orch.close()
    report("overhead", rows, ["program", "steps", "total_ms", "tool_work_ms",
                              "parse_check_us_per_step", "overhead_us_per_step"])  # fmt: skip


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"done in {time.perf_counter() - t0:.1f} s")
