"""Step values as a trace shows them (orchestrator.render)."""

from __future__ import annotations

from orchestrator.render import MAX_TEXT, summarize


class Counted:
    """An element that counts how often its text is asked for."""

    written = 0

    def __repr__(self) -> str:
        Counted.written += 1
        return "c"


def test_a_container_is_written_only_as_far_as_it_is_shown() -> None:
    Counted.written = 0
    row = [Counted()] * 1000
    text = summarize([row] * 1000)["text"]  # str() would write a million elements
    assert text.startswith("[[c, c, c") and len(text) <= MAX_TEXT
    assert 0 < Counted.written <= 50 * 50


def test_small_containers_read_as_python_writes_them() -> None:
    assert summarize([1, "a", (2,)])["text"] == "[1, 'a', (2,)]"
    assert summarize({"k": [1, 2]}) == {"type": "dict", "text": "{'k': [1, 2]}"}
