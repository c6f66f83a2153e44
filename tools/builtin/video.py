"""Video in line programs: Frames samples a clip, Frame picks one picture from it (which
every image tool then takes)."""

from __future__ import annotations

from tools.base import tool
from tools.errors import ToolInputError
from tools.types import Image
from tools.video import Video


@tool(
    name="Frames",
    aliases=("SampleFrames", "Trim"),
    examples=("VIDEO0=Frames(video=VIDEO, every=10)",),
)
def frames(video: Video, every: int = 1, start: int = 0, end: int | None = None) -> Video:
    """The frames of a video from `start` to `end` (exclusive; default: the last), keeping
    every `every`-th one. The trace shows them as a strip.

    Args:
        video: the video input (or an earlier Frames result)
        every: keep one frame in this many
        start: the first frame (0 = the first of the clip; negative counts from the end)
        end: one past the last frame (default: the end of the clip)
    """
    if every < 1:
        raise ToolInputError("Frames: every must be at least 1")
    n = video.num_frames
    first = start + n if start < 0 else start
    last = None if end is None else (end + n if end < 0 else end)
    clip = video.trim(first, last).every(int(every))
    if clip.num_frames == 0:
        raise ToolInputError(f"Frames: no frames between {start} and {end} of {n}")
    return clip


@tool(
    name="Frame",
    aliases=("FrameAt", "FrameFromIndex"),
    examples=("IMAGE0=Frame(video=VIDEO0, index=-1)",),
)
def frame(video: Video, index: int = 0) -> Image:
    """One frame of a video, as a picture every image tool takes.

    Args:
        video: the video (or an earlier Frames result)
        index: which frame: 0 is the first, -1 the last
    """
    try:
        return video.frame(int(index))
    except IndexError as exc:
        raise ToolInputError(f"Frame: {exc}") from None
