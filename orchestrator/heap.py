"""Keep the process's long-lived heap out of the garbage collector's full passes.

Importing torch, transformers and the tools leaves a few hundred thousand Python objects
that live as long as the process. CPython's full (generation 2) collection walks all of
them — about 0.2 s on a 2-core machine, far more under load — and a long program's own
allocations trigger such passes in the middle of a run (one every ~1,000 steps of a line
program). :func:`freeze_long_lived` runs one full collection, so nothing that is already
garbage is kept, and then moves every surviving object into the collector's permanent
generation (:func:`gc.freeze`); later passes walk only what was allocated since. It acts
once per process (the first orchestrator built, after the heavy imports); objects frozen
are still freed by reference counting, only cycles among them are never collected.

:func:`collector_paused` pauses the cyclic collector while a scheduler runs cheap steps back
to back (an executor run's inline steps): such a run keeps every step's records alive, so
the collector's passes would walk them again and again (a few µs a step at 10,000 steps)
and free nothing. Reference counting still frees everything acyclic at once; cycles made
meanwhile wait for the next pass. Pauses nest, in one thread and across threads: the
collector runs again when the last one ends, and only if it was running when the first
began. :func:`collector_running` lifts every pause the calling thread holds while its body
runs (e.g. while a scheduler waits for its workers, or runs a program's own code), so an
outer pause (a whole ``execute``: parse, check, run, trace) never keeps the collector off
while that thread waits. One pause over a whole run matters: the run's young objects (its
parsed program, step records) are walked by the first pass after any pause ends, so every
gap between pauses costs a pass over all of them.
When overlapping pauses (many programs at once) have kept it off for over
:data:`MAX_PAUSE_SECONDS`, the next pause to begin runs one young-generation pass first,
and every ``gc.get_threshold()[2]``-th such pass is a full one (as the collector's own
schedule would), so garbage cycles cannot pile up, in any generation, while a busy service
is never without a pause.
"""

from __future__ import annotations

import contextlib
import gc
import threading
import time
from collections.abc import Iterator

_lock = threading.Lock()
_frozen = False


def freeze_long_lived() -> bool:
    """Collect once and freeze the surviving heap; True if this call did it (at most once
    per process)."""
    global _frozen
    with _lock:
        if _frozen:
            return False
        gc.collect()
        gc.freeze()
        _frozen = True
        return True


MAX_PAUSE_SECONDS = 1.0
_pause_lock = threading.Lock()
_pauses = 0  # pauses in effect, in any thread
_restart = False  # whether the collector ran when the first of them began
_since = 0.0  # when the collector last ran or was turned off by a pause (monotonic)
_overdue_passes = 0  # young passes run for overdue pauses since the last full one
_held = threading.local()  # depth: the pauses the current thread holds


def _pause(n: int = 1) -> None:
    global _pauses, _restart, _since, _overdue_passes
    overdue = 0
    _held.depth = getattr(_held, "depth", 0) + n
    with _pause_lock:
        if _pauses == 0:
            _restart = gc.isenabled()
            gc.disable()
            _since = time.monotonic()
        elif _restart and time.monotonic() - _since > MAX_PAUSE_SECONDS:
            _since = time.monotonic()  # overlapping pauses held it off too long
            _overdue_passes += 1
            overdue = 1
            if _overdue_passes >= max(1, gc.get_threshold()[2]):
                _overdue_passes, overdue = 0, 2  # the oldest generation's turn
        _pauses += n
    if overdue:  # outside the lock: finalizers may run
        gc.collect(overdue)


def _unpause(n: int = 1) -> None:
    global _pauses
    _held.depth -= n
    with _pause_lock:
        _pauses -= n
        if _pauses == 0 and _restart:
            gc.enable()


@contextlib.contextmanager
def collector_paused(pause: bool = True) -> Iterator[None]:
    """No automatic cyclic collection while the body runs (``pause=False``: no effect)."""
    if not pause:
        yield
        return
    _pause()
    try:
        yield
    finally:
        _unpause()


@contextlib.contextmanager
def collector_running(pause: bool = True) -> Iterator[None]:
    """Every pause the calling thread holds lifted while the body runs (other threads'
    pauses still hold; ``pause=False`` or no pause held: no effect)."""
    held = getattr(_held, "depth", 0) if pause else 0
    if not held:
        yield
        return
    _unpause(held)
    try:
        yield
    finally:
        _pause(held)
