"""Videos as inputs: decoded from a file (OpenCV) or built from frames, bounded before
decoding, trimmed and sampled; Frames and Frame bring them to every image tool in line
programs, and the trace page shows a strip of frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from orchestrator import Orchestrator
from tools.convert import to_input
from tools.errors import ImageLoadError
from tools.types import Image, fingerprint, value_type
from tools.video import Video, is_video_like, read_video, to_video


def write_video(path: Path, frames: int = 9, size: tuple[int, int] = (48, 32)) -> Path:
    """A small MJPG AVI: a white square moving right, one frame at a time."""
    import cv2

    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (width, height))
    assert writer.isOpened()
    for t in range(frames):
        picture = np.full((height, width, 3), 20, np.uint8)
        picture[8:20, 2 + 4 * t : 14 + 4 * t] = 250
        writer.write(picture)
    writer.release()
    return path


def _square_x(frame: Image) -> float:
    bright = frame.array[..., 0] > 128
    return float(np.nonzero(bright)[1].mean())


def test_a_file_is_decoded_in_order_with_its_frame_rate(tmp_path: Path) -> None:
    video = read_video(write_video(tmp_path / "clip.avi"))
    assert video.num_frames == 9 and video.fps == pytest.approx(5.0)
    assert all(f.size == (48, 32) for f in video.frames)
    xs = [_square_x(f) for f in video.frames]
    assert xs == sorted(xs) and xs[-1] - xs[0] > 25


def test_sampling_and_the_frame_limit_apply_while_decoding(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.avi")
    sampled = read_video(path, every=4)
    assert sampled.num_frames == 3 and sampled.fps == pytest.approx(1.25)
    with pytest.raises(ImageLoadError, match="more than 5 frames"):
        read_video(path, max_frames=5)
    with pytest.raises(ImageLoadError, match="not found"):
        read_video(tmp_path / "missing.avi")
    (tmp_path / "bad.avi").write_bytes(b"not a video at all")
    with pytest.raises(ImageLoadError):
        read_video(tmp_path / "bad.avi")


def test_frames_lists_and_arrays_become_videos() -> None:
    frames = [np.full((6, 8, 3), v, np.uint8) for v in range(5)]
    from_list = to_video(frames, name="clip")
    from_array = to_video(np.stack(frames))
    assert from_list == from_array and from_list.num_frames == 5
    assert fingerprint(from_list) == fingerprint(from_array)
    assert value_type(from_list) == "Video"
    assert is_video_like(frames) and is_video_like("x.MP4") and not is_video_like("x.png")
    assert isinstance(to_input(frames), Video) and isinstance(to_input(frames[0]), Image)
    with pytest.raises(ImageLoadError):
        to_video([])
    with pytest.raises(ImageLoadError, match="limit"):
        to_video(frames, max_frames=3)


def test_trim_every_and_frame_follow_python_slicing() -> None:
    video = to_video([np.full((4, 4, 3), v, np.uint8) for v in range(10)])
    part = video.trim(2, 7)
    assert (part.start, part.end, part.num_frames) == (2, 7, 5)
    assert int(part.frame(0).array[0, 0, 0]) == 2 and int(part.frame(-1).array[0, 0, 0]) == 6
    assert video.trim(-3, 100).num_frames == 10 and video.trim(8, 3).num_frames == 0
    assert [int(f.array[0, 0, 0]) for f in video.every(4).frames] == [0, 4, 8]
    with pytest.raises(IndexError):
        part.frame(5)


def test_line_program_feeds_video_frames_to_image_tools(tiny: Orchestrator, tmp_path: Path) -> None:
    source = """VIDEO0=Frames(video=VIDEO, every=2, start=1)
IMAGE0=Frame(video=VIDEO0, index=-1)
BOX0=LOC(image=IMAGE0, object='LEFT')
IMAGE1=CROP(image=IMAGE0, box=BOX0)
ANSWER0=VQA(image=IMAGE1, question='What is moving?')
FINAL_RESULT=RESULT(var=ANSWER0)"""
    bound = tiny.check(source, inputs={"VIDEO": "Video"})
    assert bound.steps[0].output_type == "Video" and bound.steps[1].output_type == "Image"
    trace_dir = tmp_path / "trace"
    result = tiny.execute(source, video=write_video(tmp_path / "clip.avi"), trace_dir=trace_dir)
    assert result.ok, result.error
    clip = result.values["VIDEO0"]
    assert [clip.start, clip.num_frames] == [1, 4]
    assert result.values["IMAGE0"] is clip.frames[-1]
    assert result.values["IMAGE1"].size == (24, 32)
    page = (trace_dir / "index.html").read_text()
    assert page.count('class="frame-strip"') == 2  # the input video and Frames' clip
    strip = PILImage.open(trace_dir / result.trace.step("VIDEO0").artifact)
    assert strip.size == (4 * 144 + 3 * 4, 96)  # four 48×32 frames at 96 px, 4 px apart
    assert result.trace.step("VIDEO0").output["type"] == "Video"


def test_a_video_where_a_picture_is_expected_runs_the_tool_once_per_frame(
    tiny: Orchestrator, tmp_path: Path
) -> None:
    from tools.video import FrameResults

    source = """CLIP=Frames(video=VIDEO, every=3)
ANSWERS=VQA(image=CLIP, question='What is moving?')
HALVES=LOC(image=CLIP, object='LEFT')
CROPS=CROP(image=VIDEO, box=HALVES)
LEFTS=CROP(image=CLIP, box=HALVES)
MORE=VQA(image=LEFTS, question='What is it?')
N=EVAL(expr='len({ANSWERS}) + len({HALVES}) + len({MORE})')
FINAL_RESULT=RESULT(var=N)"""
    bound = tiny.check(source, inputs={"VIDEO": "Video"})
    assert [s.output_type for s in bound.steps[1:6]] == ["Any"] * 5
    vlm = tiny.pool.get("vlm")
    before = vlm.stats["generate_calls"]
    trace_dir = tmp_path / "trace"
    result = tiny.execute(source, video=write_video(tmp_path / "clip.avi"), trace_dir=trace_dir)
    assert result.ok, result.error
    assert result.output == 9  # 9 frames, every 3rd: 3 answers, 3 halves, 3 more answers
    answers, halves = result.values["ANSWERS"], result.values["HALVES"]
    assert isinstance(answers, FrameResults) and all(isinstance(a, str) for a in answers)
    assert vlm.stats["generate_calls"] - before == 2  # each step: its three frames in one batch
    assert [h[0].box.as_tuple() for h in halves] == [(0, 0, 24, 32)] * 3
    # per-frame arguments go frame by frame with a clip of as many frames...
    assert [im.size for im in result.values["LEFTS"]] == [(24, 32)] * 3
    # ...but the whole video has 9 frames, not 3: a typed error naming line 4
    assert result.step_errors["CROPS"].line == 4
    lefts = result.trace.step("LEFTS")
    assert lefts.output["type"] == "FrameResults" and lefts.output["count"] == 3
    assert PILImage.open(trace_dir / lefts.artifact).size == (3 * 72 + 2 * 4, 96)
    assert result.trace.step("ANSWERS").output["text"].startswith("3 per-frame result(s)")


def test_two_videos_in_one_call_are_refused_with_the_line(tiny: Orchestrator) -> None:
    from sandbox import ErrorCode, ProgramInvalid

    source = "CLIP=Frames(video=VIDEO)\nS=Similarity(image=CLIP, text='x')\nB=Seg(image=CLIP, object=VIDEO)"
    with pytest.raises(ProgramInvalid) as info:
        tiny.check(source, inputs={"VIDEO": "Video"})
    assert [(e.line, e.code) for e in info.value.errors] == [(3, ErrorCode.WRONG_TYPE)]


def test_the_check_infers_a_video_input_where_a_video_is_expected(tiny: Orchestrator) -> None:
    bound = tiny.check("CLIP=Frames(video=VIDEO, every=3)\nIMAGE0=Frame(video=CLIP)")
    assert bound.inputs == {"VIDEO": "Video"}
    bound = tiny.check("IMAGE0=Frame(video=CLIP)\nB=Loc(image=PHOTO, object='cat')")
    assert bound.inputs == {"CLIP": "Video", "PHOTO": "Image"}
