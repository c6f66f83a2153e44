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
"""

from __future__ import annotations

import gc
import threading

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
