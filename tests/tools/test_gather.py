"""The gathering primitive both batching layers use: batches, leaders and a leader leaving."""

from __future__ import annotations

import threading
from typing import Any

from tools.gather import Entry, Gatherer, slices


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
