"""Value types that flow between tools, and the type rules the checker applies to them.

Image, Box, Mask, Object, ObjectList, Point and PointList are classes here; Text, Number,
Bool and TextList are plain ``str``, ``int``/``float``, ``bool`` and ``list[str]``. Each
has a type *name* (what the checker, prompts and grammar use) derived from Python
annotations by :func:`type_name`.
"""

from __future__ import annotations

import hashlib
import types
import typing
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from PIL import Image as PILImage

from sandbox import ANY, EXPRESSION, BoundExpression, Exposed, as_bool, as_number, to_text

from .video import Video


class Image:
    """An RGB picture. Immutable by convention; knows its content hash and, for crops, where
    it sits in the picture it was cut from (``origin``), so boxes can be mapped back."""

    __slots__ = ("_array", "_hash", "name", "origin", "pil")

    def __init__(
        self, pil: PILImage.Image, *, name: str | None = None, origin: tuple[int, int] = (0, 0)
    ) -> None:
        if pil.mode != "RGB":
            pil = pil.convert("RGB")
        self.pil = pil
        self.name = name
        self.origin = origin
        self._hash: str | None = None
        self._array: np.ndarray | None = None

    @property
    def width(self) -> int:
        return self.pil.width

    @property
    def height(self) -> int:
        return self.pil.height

    @property
    def size(self) -> tuple[int, int]:
        return self.pil.size

    @property
    def array(self) -> np.ndarray:
        """H×W×3 uint8 view (read-only; computed once)."""
        if self._array is None:
            arr = np.asarray(self.pil, dtype=np.uint8)
            arr.setflags(write=False)
            self._array = arr
        return self._array

    @property
    def hash(self) -> str:
        """Content hash: equal pixels give equal hashes, whatever the file or object."""
        if self._hash is None:
            h = hashlib.blake2b(digest_size=16)
            h.update(f"{self.width}x{self.height}".encode())
            h.update(self.pil.tobytes())
            self._hash = h.hexdigest()
        return self._hash

    @property
    def nbytes(self) -> int:
        """Memory the pixels take (and their array view once made)."""
        base = self.width * self.height * 3
        return base * (2 if self._array is not None else 1)

    def crop(self, box: Box) -> Image:
        b = box.clip(self.width, self.height).rounded()
        x0, y0, x1, y1 = int(b.x0), int(b.y0), int(b.x1), int(b.y1)
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f"empty crop {box} of a {self.width}x{self.height} image")
        return Image(
            self.pil.crop((x0, y0, x1, y1)),
            name=self.name,
            origin=(self.origin[0] + x0, self.origin[1] + y0),
        )

    def __repr__(self) -> str:
        return f"Image({self.width}x{self.height}{', ' + self.name if self.name else ''})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Image) and other.hash == self.hash

    def __hash__(self) -> int:
        return hash(self.hash)


@dataclass(frozen=True, slots=True)
class Box:
    """An axis-aligned box in pixels, corners (x0, y0) top-left and (x1, y1) bottom-right."""

    x0: float
    y0: float
    x1: float
    y1: float

    def __post_init__(self) -> None:
        if not all(np.isfinite([self.x0, self.y0, self.x1, self.y1])):
            raise ValueError("box coordinates must be finite")
        if self.x1 < self.x0 or self.y1 < self.y0:
            raise ValueError(f"box corners out of order: {self.as_tuple()}")

    @classmethod
    def of(cls, values: Sequence[float]) -> Box:
        x0, y0, x1, y1 = (float(v) for v in values)
        return cls(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def area(self) -> float:
        return self.width * self.height

    @property
    def center(self) -> tuple[float, float]:
        return ((self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2)

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.x0, self.y0, self.x1, self.y1)

    def clip(self, width: float, height: float) -> Box:
        return Box(
            min(max(self.x0, 0.0), width),
            min(max(self.y0, 0.0), height),
            min(max(self.x1, 0.0), width),
            min(max(self.y1, 0.0), height),
        )

    def rounded(self) -> Box:
        return Box(
            float(np.floor(self.x0)),
            float(np.floor(self.y0)),
            float(np.ceil(self.x1)),
            float(np.ceil(self.y1)),
        )

    def shifted(self, dx: float, dy: float) -> Box:
        return Box(self.x0 + dx, self.y0 + dy, self.x1 + dx, self.y1 + dy)

    def expanded(self, margin: float) -> Box:
        return Box(self.x0 - margin, self.y0 - margin, self.x1 + margin, self.y1 + margin)

    def intersection(self, other: Box) -> float:
        w = min(self.x1, other.x1) - max(self.x0, other.x0)
        h = min(self.y1, other.y1) - max(self.y0, other.y0)
        return max(w, 0.0) * max(h, 0.0)

    def iou(self, other: Box) -> float:
        inter = self.intersection(other)
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0


class Mask:
    """A boolean H×W mask over an image."""

    __slots__ = ("_box", "array")

    def __init__(self, array: np.ndarray) -> None:
        arr = np.asarray(array)
        if arr.ndim != 2:
            raise ValueError(f"a mask must be 2-D, got shape {arr.shape}")
        arr = arr.astype(bool, copy=False)
        arr.setflags(write=False)
        self.array = arr
        self._box: Box | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.array.shape  # type: ignore[return-value]

    @property
    def nbytes(self) -> int:
        return int(self.array.nbytes)

    @property
    def area(self) -> int:
        return int(self.array.sum())

    def box(self) -> Box | None:
        """Tight bounding box, or None for an empty mask."""
        if self._box is None:
            ys, xs = np.nonzero(self.array)
            if len(xs) == 0:
                return None
            self._box = Box(
                float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)
            )
        return self._box

    def __repr__(self) -> str:
        return f"Mask({self.shape[1]}x{self.shape[0]}, area={self.area})"


@dataclass(frozen=True, slots=True)
class Object:
    """One thing found in an image: a box, and optionally a mask, a label and a score."""

    box: Box
    mask: Mask | None = None
    label: str | None = None
    score: float | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def with_(self, **changes: Any) -> Object:
        return replace(self, **changes)

    def __str__(self) -> str:
        label = self.label or "object"
        score = f" {self.score:.2f}" if self.score is not None else ""
        b = self.box
        return f"{label}{score} [{b.x0:.0f},{b.y0:.0f},{b.x1:.0f},{b.y1:.0f}]"


@dataclass(frozen=True, slots=True)
class ObjectList:
    """An ordered list of objects (what Loc, FaceDet, Seg, Select and Classify return).

    Coordinates are those of the image the objects were found in; ``origin`` records where
    that image's (0, 0) lies in the original picture, so :meth:`on` can move the objects
    onto another crop of the same picture (boxes found in a crop, drawn on the whole)."""

    items: tuple[Object, ...] = ()
    origin: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        if not isinstance(self.items, tuple):
            object.__setattr__(self, "items", tuple(self.items))

    def found_in(self, image: Image) -> ObjectList:
        """These objects, marked as found in ``image``."""
        return ObjectList(self.items, image.origin)

    def with_items(self, items: Iterable[Object]) -> ObjectList:
        return ObjectList(tuple(items), self.origin)

    def on(self, image: Image) -> ObjectList:
        """The same objects in ``image``'s coordinates (boxes shifted, masks re-placed)."""
        dx, dy = self.origin[0] - image.origin[0], self.origin[1] - image.origin[1]
        if dx == 0 and dy == 0:
            return self
        moved = tuple(_moved(o, dx, dy, image.size) for o in self.items)
        return ObjectList(moved, image.origin)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Object]:
        return iter(self.items)

    def __getitem__(self, i: int) -> Object:
        return self.items[i]

    def __bool__(self) -> bool:
        return bool(self.items)

    @property
    def labels(self) -> list[str]:
        return [o.label or "" for o in self.items]

    def __str__(self) -> str:
        return "[" + ", ".join(str(o) for o in self.items) + "]"


@dataclass(frozen=True, slots=True)
class Point:
    """A point in pixels, optionally labelled (Molmo's pointing output)."""

    x: float
    y: float
    label: str | None = None

    def __str__(self) -> str:
        return f"{self.label or 'point'} ({self.x:.0f},{self.y:.0f})"


@dataclass(frozen=True, slots=True)
class PointList:
    """Points found in an image (``origin`` as for :class:`ObjectList`)."""

    items: tuple[Point, ...] = ()
    origin: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        if not isinstance(self.items, tuple):
            object.__setattr__(self, "items", tuple(self.items))

    def found_in(self, image: Image) -> PointList:
        return PointList(self.items, image.origin)

    def on(self, image: Image) -> PointList:
        """The same points in ``image``'s coordinates."""
        dx, dy = self.origin[0] - image.origin[0], self.origin[1] - image.origin[1]
        if dx == 0 and dy == 0:
            return self
        moved = tuple(Point(p.x + dx, p.y + dy, p.label) for p in self.items)
        return PointList(moved, image.origin)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Point]:
        return iter(self.items)

    def __getitem__(self, i: int) -> Point:
        return self.items[i]

    def __bool__(self) -> bool:
        return bool(self.items)

    def __str__(self) -> str:
        return "[" + ", ".join(str(p) for p in self.items) + "]"


def _moved(obj: Object, dx: float, dy: float, size: tuple[int, int]) -> Object:
    box = obj.box.shifted(dx, dy)
    mask = obj.mask
    if mask is not None:
        w, h = size
        arr = np.zeros((h, w), dtype=bool)
        src = mask.array
        x0, y0 = round(dx), round(dy)
        xs, ys = max(0, x0), max(0, y0)
        xe, ye = min(w, x0 + src.shape[1]), min(h, y0 + src.shape[0])
        if xe > xs and ye > ys:
            arr[ys:ye, xs:xe] = src[ys - y0 : ye - y0, xs - x0 : xe - x0]
        mask = Mask(arr)
    return replace(obj, box=box, mask=mask)


def detached(value: Any, _depth: int = 0) -> Any:
    """A copy of ``value`` that shares nothing mutable with it, for values that outlive one
    run (the memo hands each run its own copy, so a run that mutates a result — a program's
    ``xs.clear()``, a caller editing ``result.output`` — cannot change what later runs get).

    Lists, dicts and sets are copied, deeply; an Image's pixels are copied (its content hash
    is kept); an Object's ``extra`` dict is copied; tuples and frozen records are rebuilt only
    around copied parts; strings, numbers, Box, Point and Mask (a read-only array) are
    immutable and shared. Values of other (plug-in) types are shared as they are. Nesting
    deeper than 100 levels raises ValueError (such a value is not remembered)."""
    if _depth > 100:
        raise ValueError("value nested too deeply to copy")
    inner = _depth + 1
    if isinstance(value, Image):
        copy = Image(value.pil.copy(), name=value.name, origin=value.origin)
        copy._hash = value._hash
        return copy
    if isinstance(value, list):
        return [detached(v, inner) for v in value]
    if isinstance(value, dict):
        return {k: detached(v, inner) for k, v in value.items()}
    if isinstance(value, set):
        return {detached(v, inner) for v in value}
    if isinstance(value, tuple) and type(value) is tuple:
        items = tuple(detached(v, inner) for v in value)
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    if isinstance(value, Object):
        return replace(value, extra=detached(value.extra, inner)) if value.extra else value
    if isinstance(value, (ObjectList, PointList)):
        items = tuple(detached(v, inner) for v in value.items)
        same = all(a is b for a, b in zip(items, value.items, strict=True))
        return value if same else replace(value, items=items)
    return value


def fingerprint(value: object) -> Hashable:
    """A hashable identity of a value's content (images by their pixel hash), for
    memoising tool calls; raises TypeError for values that have none."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return (type(value).__name__, value)
    if isinstance(value, Image):
        return ("Image", value.hash, value.origin)
    if isinstance(value, Video):
        return ("Video", value.hash, value.start, value.fps)
    if isinstance(value, Box):
        return ("Box", value.as_tuple())
    if isinstance(value, Mask):
        digest = hashlib.blake2b(np.packbits(value.array).tobytes(), digest_size=12).hexdigest()
        return ("Mask", value.shape, digest)
    if isinstance(value, Object):
        mask = None if value.mask is None else fingerprint(value.mask)
        return ("Object", value.box.as_tuple(), mask, value.label, value.score)
    if isinstance(value, (ObjectList, PointList)):
        return (type(value).__name__, value.origin, tuple(fingerprint(i) for i in value.items))
    if isinstance(value, Point):
        return ("Point", value.x, value.y, value.label)
    if isinstance(value, (list, tuple)):
        return ("seq", tuple(fingerprint(v) for v in value))
    raise TypeError(f"no content identity for {type(value).__name__}")


# --- type names --------------------------------------------------------------------------

CLASS_NAMES: dict[type, str] = {
    Image: "Image",
    Box: "Box",
    Mask: "Mask",
    Object: "Object",
    ObjectList: "ObjectList",
    Point: "Point",
    PointList: "PointList",
    Video: "Video",
    str: "Text",
    bool: "Bool",
    int: "Number",
    float: "Number",
    BoundExpression: EXPRESSION,
}
TYPE_NAMES = ("Image", "Box", "Mask", "Object", "ObjectList", "Point", "PointList", "Video",
              "Text", "Number", "Bool", "TextList", EXPRESSION, ANY)  # fmt: skip
LIST_TYPES = {"TextList": "Text"}


def type_name(annotation: Any) -> str:
    """The checker's name for a Python annotation (``list[str]`` -> "TextList")."""
    if annotation in (Any, object, None) or annotation is typing.Any:
        return ANY
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        names: list[str] = []
        for m in members:
            n = type_name(m)
            if n not in names:
                names.append(n)
        return "|".join(names)
    if origin is typing.Annotated:
        return type_name(typing.get_args(annotation)[0])
    if origin in (list, tuple, Sequence) and typing.get_args(annotation):
        if type_name(typing.get_args(annotation)[0]) == "Text":
            return "TextList"
    if annotation in CLASS_NAMES:
        return CLASS_NAMES[annotation]
    raise TypeError(f"no VisChain type for annotation {annotation!r}")


def value_type(value: object) -> str:
    """The type name of a runtime value."""
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return "TextList"
    for cls in type(value).__mro__:
        if cls in CLASS_NAMES:
            return CLASS_NAMES[cls]
    return ANY


# Implicit conversions the checker accepts (source -> targets); `coerce` performs them.
_IMPLICIT: dict[str, set[str]] = {
    "Object": {"ObjectList"},
    "Number": {"Text"},
    "Bool": {"Text"},
    "Text": {"TextList", "Number", "Bool"},
    "Point": {"PointList"},
}


def assignable(source: str, target: str) -> bool:
    if ANY in (source, target):
        return True
    targets = set(target.split("|"))
    if ANY in targets:
        return True
    sources = source.split("|")
    return all(s in targets or _IMPLICIT.get(s, set()) & targets for s in sources)


def literal_error(value: object, target: str) -> str | None:
    """Why a literal cannot stand where ``target`` is expected (None if it can)."""
    for t in target.split("|"):
        if t == ANY:
            return None
        if t == "Text" and isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return None
        if t == "Number" and (
            (isinstance(value, (int, float)) and not isinstance(value, bool))
            or (isinstance(value, str) and as_number(value) is not None)
        ):
            return None
        if t == "Bool" and (isinstance(value, bool) or as_bool(value) is not None):
            return None
        if t == "TextList" and (
            isinstance(value, str)
            or (isinstance(value, tuple) and all(isinstance(v, str) for v in value))
        ):
            return None
        if t == "Box" and isinstance(value, tuple) and len(value) == 4:
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
                return None
    shown = repr(value) if len(repr(value)) < 60 else repr(value)[:57] + "..."
    needs_variable = ("Image", "ObjectList", "Object", "Mask", "PointList", "Video")
    if any(t in needs_variable for t in target.split("|")):
        return f"expects {target}, which must come from a variable, not the literal {shown}"
    return f"expects {target}, got the literal {shown}"


def item_type(target: str) -> str | None:
    for t in target.split("|"):
        if t in LIST_TYPES:
            return LIST_TYPES[t]
    return None


def coerce(value: object, target: str) -> object:
    """Convert a runtime value to the ``target`` type along the implicit conversions.

    Values already of an accepted type pass through unchanged; anything else raises
    ``TypeError`` with a message naming both types. An empty list is a list of every kind
    (it reads as a TextList first).
    """
    targets = target.split("|")
    if ANY in targets:
        return value
    source = value_type(value)
    if source in targets:
        if source == "TextList" and isinstance(value, tuple):
            return list(value)
        return value
    if value is None:
        return None
    for t in targets:
        converted = _convert(value, source, t)
        if converted is not _NO:
            return converted
    raise TypeError(f"expected {target}, got {source}")


_NO = object()


def _convert(value: object, source: str, target: str) -> object:
    if target == "ObjectList" and isinstance(value, Object):
        return ObjectList((value,))
    if target == "PointList" and isinstance(value, Point):
        return PointList((value,))
    # a list a program built (a comprehension keeping some of a tool's objects): empty, it
    # is an empty list of any kind; of objects (or points) only, their list — like a single
    # object, in the original picture's coordinates
    if target == "ObjectList" and isinstance(value, list | tuple):
        if all(isinstance(v, Object) for v in value):
            return ObjectList(tuple(value))
    if target == "PointList" and isinstance(value, list | tuple):
        if all(isinstance(v, Point) for v in value):
            return PointList(tuple(value))
    if target == "Text" and isinstance(value, (bool, int, float)):
        return to_text(value)
    if target == "Number" and isinstance(value, str):
        n = as_number(value)
        return _NO if n is None else n
    if target == "Bool" and isinstance(value, str):
        b = as_bool(value)
        return _NO if b is None else b
    if target == "TextList" and isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if target == "TextList" and isinstance(value, (list, tuple)):
        return [to_text(v) for v in value]
    if target == "Box" and isinstance(value, (list, tuple)) and len(value) == 4:
        return Box.of(value)  # type: ignore[arg-type]
    return _NO


# What programs (Eval expressions and Python programs) may read from these values.
EXPOSED: dict[type, Exposed] = {
    Box: Exposed(
        attributes=frozenset({"x0", "y0", "x1", "y1", "width", "height", "area", "center"})
    ),
    Object: Exposed(attributes=frozenset({"box", "label", "score"})),
    ObjectList: Exposed(attributes=frozenset({"labels"}), subscript=True, iterable=True),
    Point: Exposed(attributes=frozenset({"x", "y", "label"})),
    PointList: Exposed(subscript=True, iterable=True),
    Image: Exposed(attributes=frozenset({"width", "height"})),
    Video: Exposed(attributes=frozenset({"num_frames", "fps", "start", "end"})),
}
