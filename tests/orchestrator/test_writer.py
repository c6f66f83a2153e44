"""Writing traces: a trace directory is untrusted data when read back. Artifacts are only
plain names inside ``artifacts/`` (a tampered trace.jsonl cannot make index.html inline an
arbitrary local file), and any input name gives a page."""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from orchestrator import Orchestrator, Trace
from orchestrator.trace import StepRecord
from tools.convert import to_image


def secret_png(path: Path) -> bytes:
    """A local file a tampered trace might try to smuggle into the page (a valid PNG, so
    only the name check stops it)."""
    pixels = np.random.default_rng(7).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(pixels).save(buf, format="PNG")
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def saved_trace(directory: Path) -> Path:
    trace = Trace(instruction="crop it")
    trace.add_input("IMAGE", to_image("sample:coffee"))
    rec = trace.add_step(StepRecord(step="A", index=0, line=1, text="A=Crop(...)", tool="Crop"))
    rec.status, rec.value = "ok", to_image("sample:chelsea")
    rec.output = {"type": "Image", "text": "image 451×300"}
    trace.finish(output=rec.value)
    return trace.save(directory)


def tamper(directory: Path, artifact: str) -> None:
    path = directory / "trace.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for r in records:
        if r["type"] in ("step", "input"):
            r["artifact"] = artifact
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "nested-dotdot", "symlink", "not-png"])
def test_tampered_artifacts_are_never_inlined(tmp_path: Path, kind: str) -> None:
    secret = secret_png(tmp_path / "secret.png")
    run = saved_trace(tmp_path / "run")
    artifact = {
        "absolute": str(tmp_path / "secret.png"),
        "dotdot": "../secret.png",
        "nested-dotdot": "artifacts/../../secret.png",
        "symlink": "artifacts/evil.png",
        "not-png": "artifacts/notes.png",
    }[kind]
    if kind == "symlink":
        os.symlink(tmp_path / "secret.png", run / "artifacts" / "evil.png")
    if kind == "not-png":  # not a picture: never inlined as one
        secret = b"my private notes, not an image at all"
        (run / "artifacts" / "notes.png").write_bytes(secret)
    tamper(run, artifact)
    for target in (run, tmp_path / "copy"):  # re-saved in place and somewhere new
        out = Trace.load(run).save(target)
        page = (out / "index.html").read_text()
        assert base64.b64encode(secret).decode() not in page
        assert "data:image/png;base64," not in page  # the tampered names were all dropped
        records = [json.loads(x) for x in (out / "trace.jsonl").read_text().splitlines()]
        assert all(r.get("artifact") is None for r in records if r["type"] in ("step", "input"))


def test_a_loaded_trace_saved_elsewhere_brings_its_pictures(tmp_path: Path) -> None:
    run = saved_trace(tmp_path / "run")
    copy = Trace.load(run).save(tmp_path / "copy")
    assert sorted(p.name for p in (copy / "artifacts").iterdir()) == [
        "input-00-IMAGE.png",
        "step-0000.png",
    ]
    assert (copy / "index.html").read_text().count("data:image/png;base64,") == 2


@pytest.mark.parametrize("name", ["a/b", "../../escape", "..", "x\\y:z", "", "名前"])
def test_any_input_name_gives_a_page_with_its_picture(tmp_path: Path, name: str) -> None:
    trace = Trace()
    trace.add_input(name, to_image("sample:coffee"))
    trace.finish(output="done")
    out = trace.save(tmp_path / "run")
    page = (out / "index.html").read_text()
    assert page.count("data:image/png;base64,") == 1
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert all(p.is_relative_to(out) for p in written)  # nothing written outside the trace
    assert len(list((out / "artifacts").iterdir())) == 1


def test_execute_with_a_slash_in_an_input_name_still_writes_the_page(
    offline: Orchestrator, tmp_path: Path
) -> None:
    result = offline.execute(
        "N=Eval('1 + 1')\nRESULT=N", images={"a/b": "sample:coffee"}, trace_dir=tmp_path
    )
    assert result.ok and result.output == 2
    page = (tmp_path / "index.html").read_text()
    assert "a/b" in page and page.count("data:image/png;base64,") == 1
