"""The gathering primitive both batching layers use: batches, leaders and a leader leaving."""

from __future__ import annotations

import threading
from typing import Any

from tools.gather import Entry, Gatherer, slices
from tools.waiting import Callers


class Torn(BaseException):
    """The leader's thread being torn down (not an ordinary failure)."""


def test_a_torn_down_leader_leaves_its_members_to_the_next_batch() -> None:
    """Without cancellation (the per-model lanes' kind), a leader whose batch raises a
    BaseException passes it on; the other members of that batch run again, not fail."""
    gatherer = Gatherer()
    batches: list[list[str]] = []

    def run(leader: Entry, batch: list[Entry]) -> list[Any]:
        names = [i for e in batch for i in e.items]
        batches.append(names)
        if "lead" in names:
            raise Torn()
        return slices([n.upper() for n in names], batch)

    out: dict[str, Any] = {}

    def call(name: str, max_batch: int, max_wait: float) -> None:
        entry = Entry([name])
        try:
            out[name] = gatherer.join(
                entry, run, max_batch=max_batch, max_wait=max_wait, fixed=True
            )
        except Torn:
            out[name] = "torn"

    # the leader gathers until three calls are queued (the hour is never reached)
    lead = threading.Thread(target=call, args=("lead", 3, 3600.0))
    lead.start()
    while gatherer.leader is None:
        threading.Event().wait(0.001)
    members = [threading.Thread(target=call, args=(n, 8, 0.0)) for n in ("a", "b")]
    for t in members:
        t.start()
    for t in [lead, *members]:
        t.join()
    assert out == {"lead": "torn", "a": ["A"], "b": ["B"]}
    assert batches[0] == ["lead", "a", "b"] and sorted(batches[1]) == ["a", "b"]
    assert gatherer.stats.batches == 2 and gatherer.stats.largest == 3


def _calls(gatherer: Gatherer, names: list[str], batches: list[list[str]], max_batch: int) -> list:
    """Join ``names`` one after another from this thread (a sequential caller)."""

    def run(leader: Entry, batch: list[Entry]) -> list[Any]:
        batches.append([i for e in batch for i in e.items])
        return slices([i for e in batch for i in e.items], batch)

    return [gatherer.join(Entry([n]), run, max_batch=max_batch, max_wait=3600.0) for n in names]


def test_a_lone_sequential_caller_never_waits_for_company() -> None:
    """Six calls one after another from the only caller in flight arrive often (the
    adaptive wait alone would make each leader wait for more), but nobody can join: each
    runs at once. No wait is counted, whatever the machine's speed."""
    callers = Callers()
    gatherer = Gatherer(callers=callers)
    gatherer.wait.gap = 0.5  # history: calls every half second, frequent for an hour's wait
    batches: list[list[str]] = []
    with callers.ticket():
        out = _calls(gatherer, list("abcdef"), batches, max_batch=8)
    assert out == [[n] for n in "abcdef"] and batches == [[n] for n in "abcdef"]
    assert gatherer.stats.batches == 6 and gatherer.stats.waits == 0


def test_two_callers_in_flight_still_share_a_batch() -> None:
    """With another caller in flight the leader waits for it (the hour bounds nothing:
    the batch fills at two), and both calls run as one batch."""
    callers = Callers()
    gatherer = Gatherer(callers=callers)
    gatherer.wait.gap = 30.0  # the leader waits up to a minute for the second call
    batches: list[list[str]] = []
    tickets = [callers.ticket(), callers.ticket()]
    out: dict[str, Any] = {}

    def call(name: str, ticket: Any) -> None:
        with ticket:
            out[name] = _calls(gatherer, [name], batches, max_batch=2)[0]

    first = threading.Thread(target=call, args=("a", tickets[0]))
    first.start()
    while gatherer.leader is None:
        threading.Event().wait(0.001)
    second = threading.Thread(target=call, args=("b", tickets[1]))
    second.start()
    for t in (first, second):
        t.join()
    assert out == {"a": ["a"], "b": ["b"]} and batches == [["a", "b"]]
    assert gatherer.stats.batches == 1 and gatherer.stats.waits == 1 and callers.open == 0
