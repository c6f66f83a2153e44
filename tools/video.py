"""Videos: a clip is a sequence of :class:`~tools.types.Image` frames, decoded once.

A :class:`Video` comes from a file (read with OpenCV, or PyAV when installed), a list of
pictures, or an array of frames (T×H×W×3). Its frames are ordinary images, so every image
tool takes them and per-frame model features are cached by content like any picture's.
Decoding is bounded before it starts: at most ``max_frames`` frames are kept (sampling
every ``every``-th frame) and each frame must pass the same pixel limit as a photo.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ImageLoadError

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})
MAX_FRAMES = 2_000
MAX_FRAME_PIXELS = 40_000_000


class Video:
    """An immutable clip: ``frames`` (Images), ``fps`` (None when unknown) and the index of
    its first frame in the video it was cut from (``start``)."""

    __slots__ = ("_hash", "fps", "frames", "name", "start")

    def __init__(
        self,
        frames: Sequence[Any],
        *,
        fps: float | None = None,
        name: str | None = None,
        start: int = 0,
    ) -> None:
        from .types import Image

        if not all(isinstance(f, Image) for f in frames):
            raise TypeError("a Video's frames must be Images")
        self.frames: tuple[Image, ...] = tuple(frames)
        self.fps = fps
        self.name = name
        self.start = start
        self._hash: str | None = None

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def end(self) -> int:
        """One past the last frame, counted in the video this clip was cut from."""
        return self.start + len(self.frames)

    @property
    def hash(self) -> str:
        """Content identity: the frames' pixel hashes, in order."""
        if self._hash is None:
            h = hashlib.blake2b(digest_size=16)
            for frame in self.frames:
                h.update(frame.hash.encode())
            self._hash = h.hexdigest()
        return self._hash

    def frame(self, index: int) -> Any:
        """The frame at ``index`` (negative counts from the end, as in Python)."""
        if not -len(self.frames) <= index < len(self.frames):
            raise IndexError(f"frame {index} is outside a clip of {len(self.frames)} frames")
        return self.frames[index]

    def trim(self, start: int | None = None, end: int | None = None) -> Video:
        """Frames ``start`` to ``end`` (exclusive) of this clip, clamped to it."""
        n = len(self.frames)
        s = 0 if start is None else min(max(int(start), 0), n)
        e = n if end is None else min(max(int(end), s), n)
        return Video(self.frames[s:e], fps=self.fps, name=self.name, start=self.start + s)

    def every(self, step: int) -> Video:
        """Every ``step``-th frame (the frame rate divided accordingly)."""
        if step < 1:
            raise ValueError("the frame step must be at least 1")
        fps = None if self.fps is None else self.fps / step
        return Video(self.frames[::step], fps=fps, name=self.name, start=self.start)

    @property
    def nbytes(self) -> int:
        return sum(f.nbytes for f in self.frames)

    def __len__(self) -> int:
        return len(self.frames)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Video) and other.hash == self.hash

    def __hash__(self) -> int:
        return hash(self.hash)

    def __repr__(self) -> str:
        size = f"{self.frames[0].width}x{self.frames[0].height}" if self.frames else "empty"
        return f"Video({len(self.frames)} frames, {size}{', ' + self.name if self.name else ''})"


def is_video_like(value: Any) -> bool:
    """Whether ``value`` reads as a video: a Video, a video file path, a list of pictures,
    or a 4-D frame array/tensor."""
    if isinstance(value, Video):
        return True
    if isinstance(value, (str, Path)):
        return Path(str(value)).suffix.lower() in VIDEO_SUFFIXES
    if isinstance(value, (list, tuple)):
        return len(value) > 0 and not any(isinstance(v, (str, bytes)) for v in value)
    try:
        shape = getattr(value, "shape", None)
        return shape is not None and len(shape) == 4
    except Exception:  # an exotic object (e.g. a nested tensor): not a video; to_image decides
        return False


def to_video(
    value: Any,
    *,
    name: str | None = None,
    every: int = 1,
    max_frames: int = MAX_FRAMES,
    limits: Any = None,
) -> Video:
    """A :class:`Video` from a Video, a file path, a list of pictures (anything
    :func:`~tools.convert.to_image` takes) or a T×H×W×3 array or tensor."""
    from .convert import to_image

    if isinstance(value, Video):
        return value
    if every < 1:
        raise ImageLoadError("the frame step must be at least 1")
    if isinstance(value, (str, Path)):
        return read_video(Path(value), name=name, every=every, max_frames=max_frames)
    shape = getattr(value, "shape", None)
    if shape is not None and len(shape) == 4:
        value = [value[i] for i in range(0, int(shape[0]), every)]
        every = 1
    if isinstance(value, (list, tuple)):
        picked = list(value)[::every]
        if not picked:
            raise ImageLoadError("a video needs at least one frame")
        if len(picked) > max_frames:
            raise ImageLoadError(f"video has {len(picked):,} frames; the limit is {max_frames:,}")
        extra = {} if limits is None else {"limits": limits}
        frames = [
            to_image(f, name=f"{name or 'video'}[{i * every}]", **extra)
            for i, f in enumerate(picked)
        ]
        return Video(frames, name=name)
    raise ImageLoadError(f"cannot use a {type(value).__name__} as a video")


def read_video(
    path: Path, *, name: str | None = None, every: int = 1, max_frames: int = MAX_FRAMES
) -> Video:
    """Decode a video file with OpenCV (PyAV when OpenCV is missing), keeping every
    ``every``-th frame; refuse files with more than ``max_frames`` kept frames."""
    if not path.is_file():
        raise ImageLoadError(f"video file not found: {path}")
    label = name or path.name
    try:
        import cv2  # noqa: F401
    except ImportError:
        arrays, fps = _read_pyav(path, every, max_frames)
    else:
        arrays, fps = _read_cv2(path, every, max_frames)
    if not arrays:
        raise ImageLoadError(f"{path}: no frames could be decoded")
    video = to_video(arrays, name=label)
    return video if fps is None else Video(video.frames, fps=fps / every, name=label)


def _admit(count: int, max_frames: int, width: int, height: int, path: Path) -> None:
    if count > max_frames:
        raise ImageLoadError(f"{path}: more than {max_frames:,} frames; sample with every=")
    if width * height > MAX_FRAME_PIXELS:
        raise ImageLoadError(f"{path}: frames too large ({width}x{height})")


def _read_cv2(path: Path, every: int, max_frames: int) -> tuple[list[np.ndarray], float | None]:
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ImageLoadError(f"{path}: OpenCV cannot open this video")
    try:
        fps = float(capture.get(cv2.CAP_PROP_FPS)) or None
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        _admit(0, max_frames, width, height, path)
        frames: list[np.ndarray] = []
        index = 0
        while True:
            ok = capture.grab()
            if not ok:
                break
            if index % every == 0:
                _admit(len(frames) + 1, max_frames, width, height, path)
                ok, bgr = capture.retrieve()
                if not ok:
                    break
                frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            index += 1
        return frames, fps
    finally:
        capture.release()


def _read_pyav(path: Path, every: int, max_frames: int) -> tuple[list[np.ndarray], float | None]:
    try:
        import av
    except ImportError as exc:
        raise ImageLoadError("reading video files needs OpenCV or PyAV") from exc
    frames: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate) if stream.average_rate else None
            _admit(0, max_frames, stream.width, stream.height, path)
            for index, frame in enumerate(container.decode(stream)):
                if index % every == 0:
                    _admit(len(frames) + 1, max_frames, frame.width, frame.height, path)
                    frames.append(frame.to_ndarray(format="rgb24"))
    except av.FFmpegError as exc:  # type: ignore[attr-defined]
        raise ImageLoadError(f"{path}: cannot decode video: {exc}") from exc
    return frames, fps


# --- one call per frame ------------------------------------------------------------------
#
# A line-program step that passes a video where a tool takes one picture runs the tool once
# per frame (all frames in one batch when the tool batches) and gives a FrameResults: one
# result per frame, in order. The checker types such a step as Any; Eval reads it as a list.


class FrameResults(list):  # type: ignore[type-arg]
    """A tool's results for each frame of a video, in frame order."""


def per_frame_arguments(
    call: Mapping[str, Any], image_params: Sequence[str]
) -> dict[str, Sequence[Any]] | None:
    """The arguments of ``call`` that vary frame by frame, as sequences of one length: the
    first picture parameter holding a video (or earlier per-frame pictures), plus every
    other argument holding per-frame results of as many frames. None when no picture
    parameter holds a video."""
    source: tuple[str, Sequence[Any]] | None = None
    for name in image_params:
        value = call.get(name)
        if isinstance(value, Video) and value.frames:
            source = (name, value.frames)
        elif isinstance(value, FrameResults) and value and all(_is_image(v) for v in value):
            source = (name, value)
        if source is not None:
            break
    if source is None:
        return None
    n = len(source[1])
    varying = {source[0]: source[1]}
    for name, value in call.items():
        if name != source[0] and isinstance(value, FrameResults) and len(value) == n:
            varying[name] = value
    return varying


def _is_image(value: Any) -> bool:
    from .types import Image

    return isinstance(value, Image)


Span = tuple[int, int, bool]  # a call's range in the flat calls, and whether it is a video's


def expand_frames(
    calls: Sequence[dict[str, Any]], image_params: Sequence[str]
) -> tuple[list[dict[str, Any]], list[Span]]:
    """Calls with a video in a picture parameter become one call per frame (arguments that
    vary by frame taken frame by frame); returns the flat calls and, per original call, the
    range of its calls in them."""
    flat: list[dict[str, Any]] = []
    spans: list[Span] = []
    for call in calls:
        varying = per_frame_arguments(call, image_params)
        start = len(flat)
        if varying is None:
            flat.append(call)
        else:
            n = len(next(iter(varying.values())))
            flat.extend({**call, **{p: seq[k] for p, seq in varying.items()}} for k in range(n))
        spans.append((start, len(flat), varying is not None))
    return flat, spans


def gather_frames(results: Sequence[Any], spans: Sequence[Span]) -> list[Any]:
    """One result per original call: a video call's results as a FrameResults (an error of
    any of its frames fails the whole call)."""
    out: list[Any] = []
    for start, end, is_video in spans:
        if not is_video:
            out.append(results[start])
            continue
        part = list(results[start:end])
        error = next((r for r in part if isinstance(r, BaseException)), None)
        out.append(error if error is not None else FrameResults(part))
    return out
