"""Cross-program batching: concurrent callers of one batched tool share batches."""

from __future__ import annotations

import threading
import time
from typing import Any

from tools import Tool, ToolContext
from tools.batching import Batcher


class Echo(Tool):
    """Returns its inputs upper-cased; records every batch it ran."""

    name = "Echo"
    max_batch = 8

    def __init__(self, delay: float = 0.0) -> None:
        self.batches: list[int] = []
        self.delay = delay
        self.lock = threading.Lock()

    def run(self, ctx: ToolContext, text: str) -> str:
        """Args:
        text: any text
        """
        return self.one(ctx, text=text)

    def run_batch(self, ctx: ToolContext, calls: list[dict[str, Any]]) -> list[Any]:
        with self.lock:
            self.batches.append(len(calls))
        time.sleep(self.delay)
        return [ValueError("bad") if c["text"] == "bad" else c["text"].upper() for c in calls]


def callers(
    batcher: Batcher, tool: Echo, groups: list[list[str]], wait_ms: float = 50
) -> list[list[Any]]:
    out: list[list[Any]] = [[] for _ in groups]
    ctx_opts = {"Echo": {"max_wait_ms": wait_ms}}

    def go(i: int) -> None:
        ctx = ToolContext(options=ctx_opts)
        out[i] = batcher.run(tool, ctx, [{"text": t} for t in groups[i]])

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(groups))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_concurrent_callers_coalesce_into_one_batch() -> None:
    tool, batcher = Echo(), Batcher()
    out = callers(batcher, tool, [["a"], ["b", "c"], ["d"]])
    assert out == [["A"], ["B", "C"], ["D"]]
    assert tool.batches == [4]


def test_batches_are_bounded_and_everyone_is_served() -> None:
    tool, batcher = Echo(delay=0.01), Batcher()
    groups = [[f"{i}-{j}" for j in range(3)] for i in range(6)]  # 18 calls, max batch 8
    out = callers(batcher, tool, groups)
    assert out == [[t.upper() for t in g] for g in groups]
    assert all(b <= 8 for b in tool.batches) and sum(tool.batches) == 18


def test_a_bad_call_fails_only_its_caller() -> None:
    tool, batcher = Echo(), Batcher()
    out = callers(batcher, tool, [["ok"], ["bad"], ["fine"]])
    assert out[0] == ["OK"] and out[2] == ["FINE"]
    assert isinstance(out[1][0], ValueError)
    assert tool.batches == [3]


def test_no_wait_means_no_coalescing() -> None:
    tool, batcher = Echo(), Batcher()
    assert batcher.run(
        tool, ToolContext(options={"Echo": {"max_wait_ms": 0}}), [{"text": "x"}]
    ) == ["X"]
    assert batcher.batches("Echo") == 0 and tool.batches == [1]
