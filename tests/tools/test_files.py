"""write_atomic: whole files or none, no temporary file left behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tools.files import write_atomic


def test_text_and_bytes_are_written_whole(tmp_path: Path) -> None:
    write_atomic(tmp_path / "a.txt", "héllo\n")
    write_atomic(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo\n"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    write_atomic(tmp_path / "a.txt", "second")  # replaces an existing file
    assert (tmp_path / "a.txt").read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.bin"]


def test_a_lone_surrogate_is_written_as_its_escape(tmp_path: Path) -> None:
    write_atomic(tmp_path / "page.html", "é a\ud800b")  # UTF-8 cannot encode U+D800
    assert (tmp_path / "page.html").read_bytes() == "é a\\ud800b".encode()


def test_a_failed_rename_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "state.bin"
    write_atomic(target, b"old")

    def refuse(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.bin"]


def test_a_missing_folder_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        write_atomic(tmp_path / "nope" / "x.txt", "x")
    assert list(tmp_path.iterdir()) == []
