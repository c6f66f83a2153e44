"""Progress display for slow things (model loading, batch runs): a tqdm bar on a terminal,
nothing otherwise (tqdm turns itself off when stderr is not a TTY), and always a log line."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
log = logging.getLogger("vischain")


@contextmanager
def task(description: str, *, enabled: bool = True) -> Iterator[None]:
    """Show ``description`` with a running clock until the block ends."""
    bar = tqdm(total=1, desc=description, disable=None if enabled else True, leave=False,
               bar_format="{desc} {elapsed}")  # fmt: skip
    t0 = time.perf_counter()
    try:
        yield
    finally:
        bar.update(1)
        bar.close()
        log.debug("%s took %.1f s", description, time.perf_counter() - t0)


def bar(
    items: Iterable[T], *, total: int | None = None, description: str = "", enabled: bool = True
) -> Iterator[T]:
    """Iterate ``items`` with a progress bar."""
    yield from tqdm(items, total=total, desc=description, disable=None if enabled else True)
