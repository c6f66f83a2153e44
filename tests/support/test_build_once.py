"""The atomic build-once helper the tiny test models use."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.build_once import build_once, is_built


def test_builds_once_and_a_failed_build_leaves_nothing(tmp_path: Path) -> None:
    calls: list[Path] = []

    def build(out: Path) -> None:
        calls.append(out)
        (out / "weights.bin").write_bytes(b"w")

    target = tmp_path / "model"
    assert build_once(target, build, marker=".done", version="1") == target
    assert (target / "weights.bin").read_bytes() == b"w" and is_built(target, ".done", "1")
    build_once(target, build, marker=".done", version="1")
    assert len(calls) == 1  # reused
    build_once(target, build, marker=".done", version="2")
    assert len(calls) == 2 and is_built(target, ".done", "2")  # a new recipe rebuilds

    def broken(out: Path) -> None:
        (out / "half.bin").write_bytes(b"h")
        raise RuntimeError("crash mid-build")

    other = tmp_path / "other"
    with pytest.raises(RuntimeError):
        build_once(other, broken, marker=".done", version="1")
    assert not other.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["model"]
