"""Reading JSON Lines whose every line must be a JSON object (traces, datasets)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any


def json_objects(
    lines: Iterable[str], fail: Callable[[int, str], Exception]
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line; ``fail(n, why)`` is raised for a
    line that is not JSON or not an object."""
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise fail(n, f"not JSON ({exc})") from None
        except RecursionError:  # '[[[[…' past the decoder's depth
            raise fail(n, "JSON nested too deeply") from None
        if not isinstance(record, dict):
            raise fail(n, "not a JSON object")
        yield n, record
