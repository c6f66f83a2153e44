"""The image-patch API that Python-form programs call (ViperGPT's, made consistent).

Every method that needs a model is a call of a registered tool (find → Loc, simple_query
and verify_property → Vqa, best_text_match → Match, best_image_match → Similarity,
compute_depth → Depth, llm_query → LlmQuery, process_guesses and select_answer →
SelectAnswer), made through a :class:`Caller`, so caching, batching, traces and
plug-ins apply unchanged. :class:`VideoSegment` is ViperGPT's clip of frames; each frame
is an ImagePatch over an ordinary picture, so per-frame features are cached like any
image's. Calls return lazy values; the interpreter forces them only when
control flow needs them, so independent calls run together.

Coordinates: pixels of the original image, origin at the BOTTOM-LEFT corner, x to the
right and y upward, so ``lower < upper`` — the convention ViperGPT's prompt uses. ``crop``
takes coordinates in that same system. The text the planner shows the LLM is generated
from this module (:func:`api_docs`), so prompt and code cannot disagree.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Collection, Sequence
from typing import Any, Protocol

from sandbox import Exposed, as_bool, as_number
from sandbox.lazy import Lazy, force, force_deep

from .types import Box, Image
from .video import Video


class Caller(Protocol):
    """Issues tool calls for API objects; returns the result, possibly lazy."""

    def call(self, tool: str, **args: Any) -> Any: ...


class Derived(Lazy):
    """A value computed from another (lazy) value when forced."""

    __slots__ = ("_base", "_done", "_fn", "_value")

    def __init__(self, base: Any, fn: Callable[[Any], Any]) -> None:
        self._base = base
        self._fn = fn
        self._done = False
        self._value: Any = None

    def force(self) -> Any:
        if not self._done:
            self._value = self._fn(force(self._base))
            self._done = True
        return self._value


def then(value: Any, fn: Callable[[Any], Any]) -> Any:
    """``fn(value)``, deferred while ``value`` (or a lazy inside a list) is lazy."""
    if isinstance(value, Lazy) or (isinstance(value, list) and _has_lazy(value)):
        return Derived(value, fn)
    return fn(value)


def _has_lazy(items: list[Any]) -> bool:
    return any(isinstance(v, Lazy) or (isinstance(v, list) and _has_lazy(v)) for v in items)


class ImagePatch:
    """A rectangular part of an image, with its position in the original image.

    Attributes:
        cropped_image: the pixels of this patch
        left, lower, right, upper: the patch's edges in the original image (origin at the
            bottom-left corner, y upward, so lower < upper)
        width, height: the patch's size in pixels
        horizontal_center, vertical_center: the patch's centre in the same coordinates
    """

    ATTRIBUTES = ("cropped_image", "left", "lower", "right", "upper", "width", "height",
                  "horizontal_center", "vertical_center")  # fmt: skip

    def __init__(
        self,
        image: Image,
        left: float | None = None,
        lower: float | None = None,
        right: float | None = None,
        upper: float | None = None,
        *,
        caller: Caller,
        root: tuple[int, int] | None = None,
    ) -> None:
        """A patch of ``image``: the whole image, or the box left/lower/right/upper."""
        self._caller = caller
        image = force(image)
        if not isinstance(image, Image):
            raise TypeError(f"ImagePatch needs an image, got {type(image).__name__}")
        self._whole = image  # the picture depth is measured on (shared by every sub-patch)
        self._root = root or (image.origin[0] + image.width, image.origin[1] + image.height)
        if None not in (left, lower, right, upper):
            box = _box_from_edges(self._root, left, lower, right, upper)  # type: ignore[arg-type]
            self._cut(image, image.origin, box)
        else:
            x, y = image.origin
            self._box = Box(x, y, x + image.width, y + image.height)
            self._image = image

    # --- geometry (no model needed) ----------------------------------------------------------

    @property
    def cropped_image(self) -> Any:
        return self._image

    @property
    def left(self) -> int:
        return round(self._box.x0)

    @property
    def right(self) -> int:
        return round(self._box.x1)

    @property
    def lower(self) -> int:
        return round(self._root[1] - self._box.y1)

    @property
    def upper(self) -> int:
        return round(self._root[1] - self._box.y0)

    @property
    def width(self) -> int:
        return round(self._box.width)

    @property
    def height(self) -> int:
        return round(self._box.height)

    @property
    def horizontal_center(self) -> float:
        return (self.left + self.right) / 2

    @property
    def vertical_center(self) -> float:
        return (self.lower + self.upper) / 2

    def _child(self, box_in_crop: Box, source: Any = None) -> ImagePatch:
        """The patch at a box found in this one; ``source`` (the call that found it) stays
        attached to the new patch's pixels, so later calls on them depend on that call."""
        image = force(self._image)
        whole = box_in_crop.clip(image.width, image.height)
        sub = image.crop(whole) if whole.width >= 1 and whole.height >= 1 else image
        patch = ImagePatch(sub, caller=self._caller, root=self._root)
        patch._whole = self._whole
        if isinstance(source, Lazy):
            patch._image = Derived(source, lambda _found, pixels=sub: pixels)
        return patch

    # --- model calls ----------------------------------------------------------------------------

    def find(self, object_name: str) -> list[ImagePatch]:
        """Every `object_name` in this patch, as patches (best first; empty if none)."""
        found = self._caller.call("Loc", image=self._image, object=object_name)
        return then(found, lambda objs: [self._child(o.box, found) for o in objs])

    def exists(self, object_name: str) -> bool:
        """Whether at least one `object_name` is in this patch."""
        found = self._caller.call("Loc", image=self._image, object=object_name)
        return then(found, lambda objs: len(objs) > 0)

    def verify_property(self, object_name: str, property: str) -> bool:
        """Whether the `object_name` in this patch has `property` (e.g. 'red', 'wooden')."""
        answer = self._caller.call(
            "Vqa", image=self._image, question=f"Is the {object_name} {property}?"
        )
        return then(answer, lambda a: bool(as_bool(a)))

    def best_text_match(self, option_list: list[str], prefix: str | None = None) -> str:
        """The option (from `option_list`) that best describes this patch; `prefix` is put
        before each option when matching (e.g. prefix='man' for options 'happy', 'sad')."""
        options = list(force_deep(option_list))
        return self._caller.call("Match", image=self._image, options=options, prefix=prefix)

    def simple_query(self, question: str | None = None) -> str:
        """A short answer to a simple question about this patch ('yes'/'no', a number as
        digits, or a word or phrase); without a question, what this patch shows."""
        if force(question) is None:
            question = "What is this?"
        return self._caller.call("Vqa", image=self._image, question=question)

    def compute_depth(self) -> float:
        """The median depth of this patch: larger is farther (relative, the whole picture's
        median is 1.0), so sorting patches by it orders them from nearest to farthest."""
        ox, oy = self._whole.origin
        return self._caller.call("Depth", image=self._whole, object=self._box.shifted(-ox, -oy))

    def llm_query(self, question: str, long_answer: bool = True) -> str:
        """An answer from the language model's general knowledge (no image); a word or two
        with long_answer=False, a few sentences otherwise."""
        return self._caller.call("LlmQuery", question=question, long_answer=long_answer)

    def crop(self, left: float, lower: float, right: float, upper: float) -> ImagePatch:
        """The patch with edges left/lower/right/upper, in original-image coordinates (origin
        bottom-left, y upward), clipped to this patch."""
        box = _box_from_edges(self._root, left, lower, right, upper)
        inside = Box(
            max(box.x0, self._box.x0),
            max(box.y0, self._box.y0),
            min(max(box.x1, self._box.x0), self._box.x1),
            min(max(box.y1, self._box.y0), self._box.y1),
        )
        if inside.width < 1 or inside.height < 1:
            raise ValueError(
                f"crop({force(left)}, {force(lower)}, {force(right)}, {force(upper)}) is empty "
                f"inside this patch (left={self.left}, lower={self.lower}, right={self.right}, "
                f"upper={self.upper}); left < right and lower < upper, y upward"
            )
        patch = ImagePatch.__new__(ImagePatch)
        patch._caller = self._caller
        patch._whole = self._whole
        patch._root = self._root
        patch._cut(self._image, (self._box.x0, self._box.y0), inside)
        return patch

    def _cut(self, source: Any, origin: tuple[float, float], box: Box) -> None:
        """Become the part ``box`` (original-image pixels, top-left origin) of ``source``,
        whose top-left corner sits at ``origin``; the crop is a (lazy) Crop tool call."""
        self._box = box
        self._image: Any = self._caller.call(
            "Crop", image=source, box=box.shifted(-origin[0], -origin[1])
        )

    def overlaps_with(self, left: float, lower: float, right: float, upper: float) -> bool:
        """Whether this patch overlaps the box left/lower/right/upper."""
        other = _box_from_edges(self._root, left, lower, right, upper)
        return self._box.intersection(other) > 0

    def __repr__(self) -> str:
        edges = f"left={self.left}, lower={self.lower}, right={self.right}, upper={self.upper}"
        return f"ImagePatch({edges})"


class VideoSegment:
    """Consecutive frames of a video; each frame is an ImagePatch.

    Attributes:
        start, end: the segment's first frame and one past its last, counted in the whole
            video
        num_frames: how many frames the segment has
    """

    ATTRIBUTES = ("start", "end", "num_frames")

    def __init__(
        self, video: Video, start: int | None = None, end: int | None = None, *, api: PatchAPI
    ) -> None:
        video = force(video)
        if not isinstance(video, Video):
            raise TypeError(f"VideoSegment needs a video, got {type(video).__name__}")
        for bound in (start, end):
            if bound is not None and (isinstance(bound, bool) or not isinstance(bound, int)):
                raise TypeError("VideoSegment's start and end must be whole numbers")
        self._api = api
        self._video = video.trim(start, end) if (start, end) != (None, None) else video

    @property
    def start(self) -> int:
        return self._video.start

    @property
    def end(self) -> int:
        return self._video.end

    @property
    def num_frames(self) -> int:
        return self._video.num_frames

    @property
    def video(self) -> Video:
        """The segment's frames (for the host; programs use the methods)."""
        return self._video

    def frame_from_index(self, index: int) -> ImagePatch:
        """The frame at `index` of this segment, as a patch (-1 is the last frame)."""
        index = force(index)
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError("frame_from_index takes a whole number")
        return self._api.ImagePatch(self._video.frame(index))

    def frame_iterator(self) -> list[ImagePatch]:
        """Every frame of this segment, in order, as patches."""
        return [self._api.ImagePatch(f) for f in self._video.frames]

    def trim(self, start: int | None = None, end: int | None = None) -> VideoSegment:
        """Frames `start` to `end` (exclusive) of this segment, clamped to it."""
        start, end = force(start), force(end)
        return VideoSegment(self._video, start, end, api=self._api)

    def select_answer(self, info: dict, question: str, options: list[str]) -> str:
        """The option that answers `question` about this segment best, given facts in
        `info` (a dict of description → value)."""
        return self._api.select_answer(info, question, options)

    def __repr__(self) -> str:
        return f"VideoSegment(start={self.start}, end={self.end}, num_frames={self.num_frames})"


_DIGITS = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)")
_MAX_NUMERIC_TEXT = 1_000


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _facts(info: object) -> str:
    """Evidence for the language model, one 'description: value' per line."""
    info = force_deep(info)
    if isinstance(info, dict):
        return "\n".join(f"{k}: {v}" for k, v in info.items())
    if isinstance(info, (list, tuple)):
        return "\n".join(str(v) for v in info)
    return str(info)


def _box_from_edges(
    root: tuple[int, int], left: float, lower: float, right: float, upper: float
) -> Box:
    height = root[1]
    values = [force(v) for v in (left, lower, right, upper)]
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError("patch edges must be numbers")
    left, lower, right, upper = values
    return Box.of([left, height - upper, right, height - lower])


class PatchAPI:
    """The functions a Python-form program can call, bound to one :class:`Caller`."""

    def __init__(self, caller: Caller) -> None:
        self.caller = caller

    def ImagePatch(
        self,
        image: Image,
        left: float | None = None,
        lower: float | None = None,
        right: float | None = None,
        upper: float | None = None,
    ) -> ImagePatch:
        """A patch of `image`: the whole image, or its box left/lower/right/upper."""
        return ImagePatch(image, left, lower, right, upper, caller=self.caller)

    def best_image_match(
        self, list_patches: list[ImagePatch], content: list[str], return_index: bool = False
    ) -> ImagePatch | int | None:
        """The patch (or its index) that best matches the description(s) in `content`."""
        patches = [force(p) for p in force(list_patches)]
        if not patches:
            return None
        texts = (
            [force(c) for c in force(content)]
            if isinstance(force(content), list)
            else [force(content)]
        )
        scores = [
            [self.caller.call("Similarity", image=p.cropped_image, text=str(t)) for t in texts]
            for p in patches
        ]

        def pick(values: list[list[float]]) -> ImagePatch | int:
            best = max(range(len(patches)), key=lambda i: max(values[i]))
            return best if return_index else patches[best]

        return then(scores, lambda nested: pick([[force(v) for v in row] for row in nested]))

    def distance(self, patch_a: ImagePatch | float, patch_b: ImagePatch | float) -> float:
        """The distance in pixels between the edges of two patches; when they overlap, minus
        their intersection over union. Given two numbers, how far apart they are."""
        a, b = force(patch_a), force(patch_b)
        if _is_number(a) and _is_number(b):
            return float(abs(a - b))  # type: ignore[operator]
        if not (isinstance(a, ImagePatch) and isinstance(b, ImagePatch)):
            raise TypeError("distance() takes two patches or two numbers")
        box_a, box_b = a._box, b._box
        if box_a.intersection(box_b) > 0:
            return -box_a.iou(box_b)
        dx = max(box_b.x0 - box_a.x1, box_a.x0 - box_b.x1, 0.0)
        dy = max(box_b.y0 - box_a.y1, box_a.y0 - box_b.y1, 0.0)
        return float((dx * dx + dy * dy) ** 0.5)

    def bool_to_yesno(self, bool_answer: bool) -> str:
        """'yes' for True, 'no' for False."""
        return "yes" if force(bool_answer) else "no"

    def coerce_to_numeric(self, string: str) -> float | None:
        """The number in a text answer ('two' → 2, '3 dogs' → 3, '$4.50' → 4.5; a range
        such as '10-15' gives its first value), or None if it has none."""
        value = force(string)
        n = as_number(value)
        if n is None and isinstance(value, str):
            for word in value.split():
                n = as_number(word)
                if n is not None:
                    return n
            match = _DIGITS.search(value[:_MAX_NUMERIC_TEXT])
            if match:
                n = as_number(match.group(0))
        return n

    def llm_query(self, question: str, long_answer: bool = False) -> str:
        """An answer from the language model's general knowledge (no image); a word or two,
        or a few sentences with long_answer=True."""
        return self.caller.call("LlmQuery", question=question, long_answer=long_answer)

    def process_guesses(self, question: str, guesses: list[str]) -> str:
        """The best answer to `question` given several guesses (from the language model)."""
        listed = "\n".join(f"Guess: {g}" for g in force_deep(guesses))
        return self.caller.call("SelectAnswer", question=question, info=listed)

    def select_answer(self, info: dict, question: str, options: list[str]) -> str:
        """The option that answers `question` best, given facts in `info` (a dict of
        description → value, e.g. captions of frames) (from the language model)."""
        return self.caller.call(
            "SelectAnswer", question=question, info=_facts(info), options=list(force_deep(options))
        )

    def VideoSegment(
        self, video: Video, start: int | None = None, end: int | None = None
    ) -> VideoSegment:
        """Frames `start` to `end` (exclusive) of a video; the whole video by default."""
        return VideoSegment(video, start, end, api=self)

    def functions(self) -> dict[str, Callable[..., Any]]:
        return {name: getattr(self, name) for name in API_FUNCTIONS}


API_FUNCTIONS = ("ImagePatch", "VideoSegment", "best_image_match", "distance", "bool_to_yesno",
                 "coerce_to_numeric", "llm_query", "process_guesses", "select_answer")  # fmt: skip
PATCH_METHODS = ("find", "exists", "verify_property", "best_text_match", "simple_query",
                 "compute_depth", "crop", "overlaps_with", "llm_query")  # fmt: skip
VIDEO_METHODS = ("frame_iterator", "frame_from_index", "trim", "select_answer")
# the tools each API method or function calls (the planner offers examples only when all exist)
API_TOOLS: dict[str, tuple[str, ...]] = {
    "find": ("Loc",),
    "exists": ("Loc",),
    "verify_property": ("Vqa",),
    "simple_query": ("Vqa",),
    "best_text_match": ("Match",),
    "crop": ("Crop",),
    "best_image_match": ("Similarity",),
    "compute_depth": ("Depth",),
    "llm_query": ("LlmQuery",),
    "process_guesses": ("SelectAnswer",),
    "select_answer": ("SelectAnswer",),
}
EXPOSED_PATCH = {
    ImagePatch: Exposed(
        attributes=frozenset(ImagePatch.ATTRIBUTES), methods=frozenset(PATCH_METHODS)
    ),
    VideoSegment: Exposed(
        attributes=frozenset(VideoSegment.ATTRIBUTES), methods=frozenset(VIDEO_METHODS)
    ),
}


def _signature(fn: Callable[..., Any], *, drop_self: bool) -> str:
    sig = inspect.signature(fn)
    params = [p for p in sig.parameters.values() if p.kind != p.KEYWORD_ONLY]
    if drop_self:
        params = [p for p in params if p.name != "self"]
    sig = sig.replace(parameters=params)
    return str(sig).replace("'", "")


def _oneline(fn: Callable[..., Any]) -> str:
    return " ".join((inspect.getdoc(fn) or "").split())


def api_docs(extra_tools: Sequence[str] = (), available: Collection[str] | None = None) -> str:
    """The API as the planner shows it: stubs with signatures and docstrings, generated from
    the implementation above. With ``available`` (tool names), methods and functions whose
    tools are missing are left out (e.g. compute_depth without a depth model)."""

    def offered(name: str) -> bool:
        return available is None or all(t in available for t in API_TOOLS.get(name, ()))

    lines: list[str] = []
    for cls, init, methods in (
        (ImagePatch, PatchAPI.ImagePatch, PATCH_METHODS),
        (VideoSegment, PatchAPI.VideoSegment, VIDEO_METHODS),
    ):
        lines.append(f"class {cls.__name__}:")
        doc = inspect.cleandoc(cls.__doc__ or "")
        lines.append('    """' + doc.replace("\n", "\n    ") + '\n    """')
        lines.append(f"    def __init__{_signature(init, drop_self=False)}:")
        lines.append(f'        """{_oneline(init)}"""')
        for name in methods:
            if not offered(name):
                continue
            fn = getattr(cls, name)
            lines.append(f"    def {name}{_signature(fn, drop_self=False)}:")
            lines.append(f'        """{_oneline(fn)}"""')
        lines.append("")
    for name in API_FUNCTIONS:
        if name in ("ImagePatch", "VideoSegment") or not offered(name):
            continue
        fn = getattr(PatchAPI, name)
        lines.append(f"def {name}{_signature(fn, drop_self=True)}:")
        lines.append(f'    """{_oneline(fn)}"""')
    if extra_tools:
        lines.append("")
        lines.append("# Every tool is also a function, e.g. " + ", ".join(extra_tools))
    return "\n".join(lines) + "\n"
