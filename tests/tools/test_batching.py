"""Cross-program batching: concurrent callers of one batched tool share batches."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from sandbox import ErrorCode, LimitExceeded
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
    batcher: Batcher, tool: Echo, groups: list[list[str]], *, max_batch: int | None = None
) -> list[list[Any]]:
    """Run each group from its own thread, all released together by a barrier. With
    ``max_batch`` set to the number of calls, the leader's batch fires exactly when the last
    call has joined the queue (the minute-long wait is an upper bound never reached), so
    coalescing does not depend on how fast the threads happen to start."""
    out: list[list[Any]] = [[] for _ in groups]
    options: dict[str, Any] = {"max_wait_ms": 60_000 if max_batch else 50, "wait": "fixed"}
    if max_batch:
        options["max_batch"] = max_batch
    start = threading.Barrier(len(groups))

    def go(i: int) -> None:
        ctx = ToolContext(options={"Echo": options})
        start.wait()
        out[i] = batcher.run(tool, ctx, [{"text": t} for t in groups[i]])

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(groups))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_concurrent_callers_coalesce_into_one_batch() -> None:
    tool, batcher = Echo(), Batcher()
    out = callers(batcher, tool, [["a"], ["b", "c"], ["d"]], max_batch=4)
    assert out == [["A"], ["B", "C"], ["D"]]
    assert tool.batches == [4]
    stats = batcher.stats("Echo")
    assert (stats.batches, stats.calls, stats.largest) == (1, 3, 3)  # entries (callers), not rows
    assert batcher.stats("Nobody").batches == 0


def test_batches_are_bounded_and_everyone_is_served() -> None:
    tool, batcher = Echo(delay=0.01), Batcher()
    groups = [[f"{i}-{j}" for j in range(3)] for i in range(6)]  # 18 calls, max batch 8
    out = callers(batcher, tool, groups)
    assert out == [[t.upper() for t in g] for g in groups]
    assert all(b <= 8 for b in tool.batches) and sum(tool.batches) == 18


def test_a_bad_call_fails_only_its_caller() -> None:
    tool, batcher = Echo(), Batcher()
    out = callers(batcher, tool, [["ok"], ["bad"], ["fine"]], max_batch=3)
    assert out[0] == ["OK"] and out[2] == ["FINE"]
    assert isinstance(out[1][0], ValueError)
    assert tool.batches == [3]


class Brittle(Echo):
    """Like Echo, but a batch holding 'boom' raises as a whole (a model refusing one row
    fails its batch)."""

    def run_batch(self, ctx: ToolContext, calls: list[dict[str, Any]]) -> list[Any]:
        results = super().run_batch(ctx, calls)
        if any(c["text"] == "boom" for c in calls):
            raise ValueError("a row the model refuses")
        return results


def test_a_batch_that_raises_runs_each_call_alone() -> None:
    tool, batcher = Brittle(), Batcher()
    out = callers(batcher, tool, [["ok"], ["boom"], ["fine", "also"]], max_batch=4)
    assert out[0] == ["OK"] and out[2] == ["FINE", "ALSO"]
    assert isinstance(out[1][0], ValueError) and "refuses" in str(out[1][0])
    assert tool.batches == [4, 1, 1, 1, 1]


def test_uncoalesced_calls_that_raise_together_run_alone() -> None:
    tool, batcher = Brittle(), Batcher()
    ctx = ToolContext(options={"Echo": {"max_wait_ms": 0}})
    out = batcher.run(tool, ctx, [{"text": "ok"}, {"text": "boom"}])
    assert out[0] == "OK" and isinstance(out[1], ValueError)
    with pytest.raises(ValueError, match="refuses"):
        batcher.run(tool, ctx, [{"text": "boom"}])  # alone, it raises as before


def test_no_wait_means_no_coalescing() -> None:
    tool, batcher = Echo(), Batcher()
    assert batcher.run(
        tool, ToolContext(options={"Echo": {"max_wait_ms": 0}}), [{"text": "x"}]
    ) == ["X"]
    assert batcher.batches("Echo") == 0 and tool.batches == [1]


class Blocky(Tool):
    """Upper-cases texts; a batch holding 'block' waits in native code until released."""

    name = "Blocky"
    max_batch = 8

    def __init__(self) -> None:
        self.release = threading.Event()
        self.batches: list[list[str]] = []

    def run(self, ctx: ToolContext, text: str) -> str:
        """Args:
        text: any text
        """
        return self.one(ctx, text=text)

    def run_batch(self, ctx: ToolContext, calls: list[dict[str, Any]]) -> list[Any]:
        texts = [c["text"] for c in calls]
        self.batches.append(texts)
        if "block" in texts:
            self.release.wait()
        return [t.upper() for t in texts]


def _start(
    batcher: Batcher, tool: Tool, ctx: ToolContext, text: str, out: dict
) -> threading.Thread:
    def go() -> None:
        out[text] = batcher.run(tool, ctx, [{"text": text}])

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread


def test_a_cancelled_leader_hands_its_members_to_a_new_leader() -> None:
    """The leader is stuck in native code when its step is cancelled: its members run in a
    new batch at once, and later callers are not blocked either."""
    tool, batcher = Blocky(), Batcher()
    options = {"Blocky": {"max_wait_ms": 200, "wait": "fixed"}}
    leader, member = ToolContext(options=options), ToolContext(options=options)
    out: dict[str, Any] = {}
    a = _start(batcher, tool, leader, "block", out)
    while not batcher.queue(tool).pending:
        time.sleep(0.001)
    b = _start(batcher, tool, member, "b", out)
    while not tool.batches:  # the leader's batch (with the member in it) is running
        time.sleep(0.001)
    assert tool.batches == [["block", "b"]]
    leader.cancel.set()  # the leading step's time limit fired
    b.join(timeout=60)
    assert out["b"] == ["B"] and tool.batches[1] == ["b"]  # run again, not stranded
    c = _start(batcher, tool, ToolContext(options=options), "c", out)  # not blocked
    c.join(timeout=60)
    assert out["c"] == ["C"] and a.is_alive()  # while the stuck batch still runs
    tool.release.set()
    a.join(timeout=60)
    error = out["block"][0]
    assert isinstance(error, LimitExceeded) and error.code == ErrorCode.CANCELLED
    assert "Blocky" in str(error) and out["b"] == ["B"]


class Spinner(Blocky):
    """A batch holding 'spin' loops in Python, checking its context between units."""

    name = "Spinner"

    def __init__(self) -> None:
        super().__init__()
        self.stopped: list[str] = []

    def run_batch(self, ctx: ToolContext, calls: list[dict[str, Any]]) -> list[Any]:
        texts = [c["text"] for c in calls]
        self.batches.append(texts)
        try:
            while "spin" in texts:
                ctx.check()
                time.sleep(0.005)
        except LimitExceeded:
            self.stopped.append(",".join(texts))
            raise
        return [t.upper() for t in texts]


def test_the_leaders_cancellation_stops_the_batch_and_its_members_run_again() -> None:
    tool, batcher = Spinner(), Batcher()
    options = {"Spinner": {"max_wait_ms": 200, "wait": "fixed"}}
    leader = ToolContext(options=options)
    out: dict[str, Any] = {}
    raised: list[BaseException] = []

    def lead() -> None:
        try:
            batcher.run(tool, leader, [{"text": "spin"}])
        except LimitExceeded as exc:
            raised.append(exc)

    a = threading.Thread(target=lead, daemon=True)
    a.start()
    while not batcher.queue(tool).pending:
        time.sleep(0.001)
    b = _start(batcher, tool, ToolContext(options=options), "m", out)
    while not tool.batches:
        time.sleep(0.001)
    leader.cancel.set()
    a.join(timeout=60)
    b.join(timeout=60)
    assert tool.stopped == ["spin,m"]  # the shared batch stopped at its next check
    assert raised and raised[0].code == ErrorCode.CANCELLED
    assert out["m"] == ["M"] and tool.batches == [["spin", "m"], ["m"]]


def test_a_caller_cancelled_while_queued_never_runs() -> None:
    tool, batcher = Blocky(), Batcher()
    options = {"Blocky": {"max_wait_ms": 100, "wait": "fixed"}}
    gone = ToolContext(options=options)
    gone.cancel.set()
    out: dict[str, Any] = {}
    _start(batcher, tool, gone, "gone", out).join(timeout=60)
    assert out["gone"][0].code == ErrorCode.CANCELLED and tool.batches == []


def test_a_leader_interrupted_mid_batch_leaves_no_member_stranded() -> None:
    """The leader's thread is abandoned (an exception raised inside ``run_batch``): the
    other members of its batch run in the next batch, never an IndexError or a hang."""

    class Interrupted(BaseException):
        pass

    class Exploding(Blocky):
        name = "Exploding"

        def run_batch(self, ctx: ToolContext, calls: list[dict[str, Any]]) -> list[Any]:
            texts = [c["text"] for c in calls]
            self.batches.append(texts)
            if "a" in texts:
                raise Interrupted()
            return [t.upper() for t in texts]

    tool, batcher = Exploding(), Batcher()
    options = {"Exploding": {"max_wait_ms": 200, "wait": "fixed"}}
    out: dict[str, Any] = {}

    def lead() -> None:
        try:
            batcher.run(tool, ToolContext(options=options), [{"text": "a"}])
        except Interrupted:
            out["a"] = "interrupted"

    a = threading.Thread(target=lead, daemon=True)
    a.start()
    while not batcher.queue(tool).pending:
        time.sleep(0.001)
    b = _start(batcher, tool, ToolContext(options=options), "b", out)
    a.join(timeout=60)
    b.join(timeout=60)
    assert out["a"] == "interrupted"
    assert out["b"] == ["B"]
    assert tool.batches == [["a", "b"], ["b"]]
