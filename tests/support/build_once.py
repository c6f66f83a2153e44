"""Build a test model directory once, atomically: a crashed or concurrent build never leaves
a half-written directory behind."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def is_built(directory: Path, marker: str, version: str) -> bool:
    """Whether ``directory`` holds a finished build of ``version``."""
    path = directory / marker
    return path.is_file() and path.read_text().strip() == version


def build_once(
    directory: str | os.PathLike[str],
    build: Callable[[Path], object],
    *,
    marker: str,
    version: str,
) -> Path:
    """Run ``build(tmp)`` in a sibling temp dir and rename it to ``directory``, unless a
    finished build of ``version`` is there already (the ``marker`` file says so). Returns
    ``directory``."""
    directory = Path(directory)
    if is_built(directory, marker, version):
        return directory
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        build(tmp)
        (tmp / marker).write_text(version + "\n")
        if directory.exists():
            if is_built(directory, marker, version):  # another process finished first
                return directory
            shutil.rmtree(directory)
        try:
            os.replace(tmp, directory)
        except OSError:
            if not is_built(directory, marker, version):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return directory
