"""Files written whole or not at all.

Caches (assembled GGUF markers, llama.cpp prefix states, CuPL descriptions) and trace
writers share one rule: a reader never sees a half-written file. ``write_atomic`` writes to
a temporary file in the same folder and renames it into place (``os.replace`` is atomic on
one file system); on any failure the temporary file is removed and the error propagates.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` atomically, creating nothing
    else: the folder must exist. Raises ``OSError`` as the file system does. A lone
    surrogate in the text, which UTF-8 cannot carry, is written as its escape (``\\ud800``)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:32]}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8", "backslashreplace") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = ["write_atomic"]
