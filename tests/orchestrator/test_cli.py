"""The ``vischain`` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.cli import main

PROGRAM = "OBJ0=Loc(image=IMAGE, object='LEFT')\nN=Count(object=OBJ0)\nRESULT=Eval('{N} + 1')\n"


@pytest.fixture
def offline_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = tmp_path / "vischain.yaml"
    config.write_text(
        f"models:\n  profile: offline\n  cache_dir: {tmp_path / 'cache'}\nplugins: false\n"
    )
    monkeypatch.setenv("VISCHAIN_CONFIG", str(config))
    return tmp_path


def test_exec_prints_the_result_and_the_trace(
    offline_env: Path, photo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    program = offline_env / "prog.txt"
    program.write_text(PROGRAM)
    code = main(
        ["exec", str(program), "--image", f"IMAGE={photo}", "--trace-dir", str(offline_env / "out")]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "answer: 2" in out
    assert f"trace: {offline_env / 'out' / 'index.html'}" in out
    assert (offline_env / "out" / "trace.jsonl").exists()


def test_exec_json_and_image_output(offline_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    program = offline_env / "crop.txt"
    program.write_text("B=Loc(image=IMAGE, object='TOP')\nRESULT=Crop(image=IMAGE, box=B)\n")
    code = main(
        ["exec", str(program), "--image", "sample:coffee", "--output", str(offline_env / "top.png")]
    )
    assert code == 0 and (offline_env / "top.png").exists()
    capsys.readouterr()
    code = main(["exec", str(program), "--image", "sample:coffee", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["ok"] is True and data["answer"].startswith("image 600×200")


def test_exec_reports_errors_with_lines(
    offline_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    program = offline_env / "bad.txt"
    program.write_text("A=Lco(image=IMAGE, object='x')\n")
    assert main(["exec", str(program), "--image", "sample:coffee"]) == 1
    out = capsys.readouterr().out
    assert "unknown-tool" in out and "line 1" in out


def test_an_answer_utf8_cannot_carry_is_printed_escaped(
    offline_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    program = offline_env / "surrogate.py"
    program.write_text("def execute_command():\n    return 'a\\ud800b'\n")
    assert main(["exec", str(program)]) == 0
    assert "answer: a\\ud800b" in capsys.readouterr().out


def test_a_value_that_is_not_json_is_text(
    offline_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    program = offline_env / "length.txt"
    program.write_text("A=Eval('len({Q})')\nRESULT=A\n")
    deep = "[" * 100_000  # past the JSON decoder's depth
    assert main(["exec", str(program), "--value", f"Q={deep}", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["answer"] == "100000"


def test_check_command(offline_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = offline_env / "good.txt"
    good.write_text(PROGRAM)
    assert main(["check", str(good)]) == 0
    assert "ok: 3 steps" in capsys.readouterr().out
    bad = offline_env / "bad.txt"
    bad.write_text("A=Count(object=NOPE)\n")
    assert main(["check", str(bad)]) == 1
    assert f"{bad}:1:" in capsys.readouterr().out


def test_check_command_on_a_python_program(
    offline_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = offline_env / "good.py"
    good.write_text(
        "def execute_command(image, question):\n"
        "    patch = ImagePatch(image)\n"
        "    return patch.simple_query(question)\n"
    )
    assert main(["check", str(good)]) == 0
    assert "ok: execute_command(image, question), tools Vqa" in capsys.readouterr().out
    bad = offline_env / "bad.py"
    bad.write_text("def execute_command(image):\n    return image.__class__\n")
    assert main(["check", str(bad)]) == 1
    assert f"{bad}:2:" in capsys.readouterr().out


def test_python_dash_m_and_console_script(offline_env: Path) -> None:
    program = offline_env / "prog.txt"
    program.write_text(PROGRAM)
    env = {**os.environ}
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "exec", str(program), "--image", "sample:coffee"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "answer: 2" in done.stdout
    script = Path(sys.executable).parent / "vischain"
    done = subprocess.run(
        [str(script), "tools"], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0 and "Crop(image: Image" in done.stdout


def _clip(path: Path) -> Path:
    """A six-frame MJPG AVI of a bright square moving right."""
    import cv2
    import numpy as np

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 6.0, (40, 30))
    for t in range(6):
        frame = np.full((30, 40, 3), 10, np.uint8)
        frame[5:15, 2 + 5 * t : 12 + 5 * t] = 240
        writer.write(frame)
    writer.release()
    return path


def test_exec_takes_a_video_and_values(
    offline_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = offline_env / "video.txt"
    lines.write_text(
        "CLIP=Frames(video=VIDEO, every=2)\nFRAME=Frame(video=CLIP, index=-1)\n"
        "BOX=LOC(image=FRAME, object='RIGHT')\nRESULT=CROP(image=FRAME, box=BOX)\n"
    )
    clip = _clip(offline_env / "clip.avi")
    assert main(["exec", str(lines), "--video", str(clip), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["answer"].startswith("image 20×30")
    python = offline_env / "video.py"
    python.write_text(
        "def execute_command(video, options, query):\n"
        "    segment = VideoSegment(video).trim(1, None)\n"
        "    return '{}/{} {}'.format(segment.num_frames, len(options), query)\n"
    )
    code = main(["exec", str(python), "--image", f"VIDEO={clip}", "--value", 'options=["a", "b"]',
                 "--value", "query=where is it"])  # fmt: skip
    assert code == 0
    assert "answer: 5/2 where is it" in capsys.readouterr().out


def test_tools_and_models_show_depth_and_video(
    offline_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tools"]) == 0
    tools = capsys.readouterr().out
    assert "Depth(image: Image, object: Box|Object|ObjectList=None) -> Number" in tools
    assert (
        "Frames(video: Video" in tools and "Frame(video: Video, index: Number=0) -> Image" in tools
    )
    depth_entry = tools[tools.index("Depth(") :].split("\n\n")[0]
    assert "unavailable: 'depth' model unavailable" in depth_entry
    assert main(["models"]) == 0
    models = capsys.readouterr().out
    entry = models[models.index("depth  (tools: Depth, DepthMap)") :].split("\n")[1]
    assert "unavailable" in entry


def test_check_takes_typed_inputs(offline_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    program = offline_env / "video.txt"
    program.write_text("CLIP=Frames(video=VIDEO, every=2)\nRESULT=Frame(video=CLIP, index=0)\n")
    assert main(["check", str(program), "--inputs", "VIDEO:Video"]) == 0
    assert "inputs VIDEO" in capsys.readouterr().out
    assert main(["check", str(program), "--inputs", "VIDEO"]) != 0
    assert "expects Video, but VIDEO is Image" in capsys.readouterr().out
