"""Face detectors whose real weights ship inside PyPI packages, so they run offline.

* ``mtcnn`` — facenet-pytorch's MTCNN (P-, R- and O-nets, 2 MB of weights inside the
  package; installed ``--no-deps`` because it pins old torch/numpy/pillow). Images of one
  size are stacked and detected in one call; its box suppression uses torchvision's nms.
* ``haar`` — OpenCV's Viola–Jones frontal-face cascade from ``cv2.data.haarcascades``.

Both return, per image, an :class:`ObjectList` of ``"face"`` objects, best score first, with
boxes in the image's pixel coordinates. Results are cached per image content hash.

Options (``spec.options``), both families: ``min_face_size`` (20 px: smaller faces are
dropped; for MTCNN it also sets where the image pyramid starts), ``min_score``
(MTCNN 0.9, Haar 0.0). MTCNN: ``thresholds`` (the three stage thresholds, [0.6, 0.7, 0.7]),
``factor`` (0.709, the image pyramid's scale step), ``batch_size`` (8 images per call).
Haar: ``scale_factor`` (1.1), ``min_neighbors`` (5). ``spec.weights`` may name a directory
holding other ``pnet.pt``/``rnet.pt``/``onet.pt`` (MTCNN); ``spec.model`` another cascade
file name in ``cv2.data.haarcascades`` or a path (Haar).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ..errors import ModelError
from ..settings import ModelSettings, ModelSpec
from ..types import Box, Image, Object, ObjectList
from .base import Backend, Located, Placement, package_dir
from .threads import on_model_thread

log = logging.getLogger("vischain.models")

MTCNN_FILES = ("pnet.pt", "rnet.pt", "onet.pt")
DEFAULT_CASCADE = "haarcascade_frontalface_default.xml"


def _face(box: Sequence[float], score: float, image: Image, **extra: Any) -> Object | None:
    b = Box.of(box).clip(image.width, image.height)
    if b.width < 1 or b.height < 1:
        return None
    return Object(box=b, label="face", score=float(score), extra=extra)


def _ranked(objects: list[Object | None], min_score: float) -> ObjectList:
    kept = [o for o in objects if o is not None and (o.score or 0.0) >= min_score]
    kept.sort(key=lambda o: -(o.score or 0.0))
    return ObjectList(tuple(kept))


# --- MTCNN ---------------------------------------------------------------------------------


class MtcnnBackend(Backend):
    """facenet-pytorch's MTCNN with the weights bundled in the package."""

    family: ClassVar[str] = "mtcnn"
    batch_methods: ClassVar[Mapping[str, int]] = {"detect_faces": 1}
    offline_capable: ClassVar[bool] = True

    def __init__(self, spec: ModelSpec, placement: Placement, mtcnn: Any) -> None:
        super().__init__(spec, placement)
        self.mtcnn = mtcnn
        opts = spec.options
        self.min_score = float(opts.get("min_score", 0.9))
        self.min_face_size = int(opts.get("min_face_size", getattr(mtcnn, "min_face_size", 20)))
        self.batch_size = max(1, int(opts.get("batch_size", 8)))

    # --- finding and loading ---------------------------------------------------------------

    @classmethod
    def weights_dir(cls, spec: ModelSpec) -> Path | None:
        if spec.weights:
            return Path(spec.weights).expanduser()
        root = package_dir("facenet_pytorch")
        return root / "data" if root is not None else None

    @classmethod
    def locate(cls, spec: ModelSpec, settings: ModelSettings) -> Located:
        where = cls.weights_dir(spec)
        if where is None:
            return Located(
                False, hint="install facenet-pytorch: pip install --no-deps facenet-pytorch==2.6.0"
            )
        if spec.weights is None and package_dir("torchvision") is None:
            return Located(False, str(where), "MTCNN needs torchvision (for nms)")
        missing = [f for f in MTCNN_FILES if not (where / f).is_file()]
        if missing:
            return Located(False, str(where), f"{where} lacks {', '.join(missing)}")
        return Located(True, str(where))

    @classmethod
    def estimate_bytes(cls, spec: ModelSpec, settings: ModelSettings) -> int | None:
        where = cls.weights_dir(spec)
        if where is None:
            return None
        files = [where / f for f in MTCNN_FILES]
        return sum(f.stat().st_size for f in files if f.is_file()) or None

    @classmethod
    def load(cls, spec: ModelSpec, placement: Placement, settings: ModelSettings) -> MtcnnBackend:
        located = cls.located(spec, settings, "MTCNN weights not found")
        from facenet_pytorch import MTCNN

        opts = spec.options
        mtcnn = MTCNN(
            keep_all=True,
            select_largest=False,
            min_face_size=int(opts.get("min_face_size", 20)),
            thresholds=[float(t) for t in opts.get("thresholds", (0.6, 0.7, 0.7))],
            factor=float(opts.get("factor", 0.709)),
            device=torch.device("cpu"),
        )
        if spec.weights:  # the package's own weights are loaded by the constructor
            where = Path(located.where)
            for name, net in (("pnet", mtcnn.pnet), ("rnet", mtcnn.rnet), ("onet", mtcnn.onet)):
                net.load_state_dict(torch.load(where / f"{name}.pt", map_location="cpu"))
        return cls.from_objects(mtcnn, spec=spec, placement=placement)

    @classmethod
    def from_objects(
        cls, mtcnn: Any, *, spec: ModelSpec | None = None, placement: Placement | None = None
    ) -> MtcnnBackend:
        """Wrap an MTCNN built by the caller; moves it to ``placement`` (default: CPU fp32).

        With ``spec.dtype == "auto"`` MTCNN stays in float32 on every device: it is 2 MB, half
        precision saves nothing, costs box precision, and torchvision's nms has no bfloat16
        kernel. An explicit ``spec.dtype`` is honoured."""
        spec = spec or ModelSpec(family=cls.family, model="in-memory")
        placement = placement or Placement("cpu", torch.float32)
        if spec.dtype == "auto" and placement.dtype != torch.float32:
            placement = Placement(placement.device, torch.float32)
        mtcnn = mtcnn.to(device=placement.device, dtype=placement.dtype).eval()
        mtcnn.device = torch.device(placement.device)
        return cls(spec, placement, mtcnn)

    def modules(self) -> list[Any]:
        return [self.mtcnn]

    # --- detection -------------------------------------------------------------------------

    @on_model_thread
    def detect_faces(self, images: list[Image]) -> list[ObjectList]:
        """Faces per image, best first. Images of one size share one MTCNN call."""
        return self.cached_many([("faces", img.hash) for img in images], self._run(images))

    def _run(self, images: list[Image]) -> Callable[[list[int]], list[ObjectList]]:
        def compute(indices: list[int]) -> list[ObjectList]:
            by_size: dict[tuple[int, int], list[int]] = {}
            found: dict[int, ObjectList] = {}
            for i in indices:
                if min(images[i].size) < self.min_face_size:
                    found[i] = ObjectList()  # no room for a face (and no pyramid level)
                else:
                    by_size.setdefault(images[i].size, []).append(i)
            for group in by_size.values():
                for start in range(0, len(group), self.batch_size):
                    chunk = group[start : start + self.batch_size]
                    for i, objs in zip(
                        chunk, self._detect([images[i] for i in chunk]), strict=True
                    ):
                        found[i] = objs
            return [found[i] for i in indices]

        return compute

    def _detect(self, images: list[Image]) -> list[ObjectList]:
        batch = np.stack([img.array for img in images])
        try:
            with torch.inference_mode():
                boxes, probs, points = self.mtcnn.detect(batch, landmarks=True)
        except Exception as exc:
            raise ModelError(f"MTCNN failed: {type(exc).__name__}: {exc}") from exc
        self.stats["detector"] += 1
        self.stats["images"] += len(images)
        out = []
        for image, b, p, pts in zip(images, boxes, probs, points, strict=True):
            objects = []
            if b is not None:
                for box, score, marks in zip(b, p, pts, strict=True):
                    if score is None or not np.all(np.isfinite(np.asarray(box, dtype=float))):
                        continue
                    x0, y0, x1, y1 = (float(v) for v in box)
                    if max(x1 - x0, y1 - y0) < self.min_face_size:
                        continue  # the pyramid starts there, but the nets may regress smaller
                    landmarks = [(float(x), float(y)) for x, y in np.asarray(marks, dtype=float)]
                    objects.append(_face(box, score, image, landmarks=landmarks))
            out.append(_ranked(objects, self.min_score))
        return out


# --- Haar cascade --------------------------------------------------------------------------


class HaarBackend(Backend):
    """OpenCV's Haar-cascade face detector (classical; no torch).

    Scores: OpenCV's ``detectMultiScale3`` gives each detection the summed weight of the
    cascade's last stage (how far past the final threshold the window got, grouped over
    neighbouring windows by the maximum). That weight is mapped into 0..1 with the logistic
    function, so 0.5 means "just passed", and e.g. 0.999 a strong frontal face. It ranks
    faces within a picture; it is not a calibrated probability.
    """

    family: ClassVar[str] = "haar"
    batch_methods: ClassVar[Mapping[str, int]] = {"detect_faces": 1}
    offline_capable: ClassVar[bool] = True

    def __init__(self, spec: ModelSpec, placement: Placement, classifier: Any, path: str) -> None:
        super().__init__(spec, placement)
        self.classifier = classifier
        self.path = path
        opts = spec.options
        self.scale_factor = float(opts.get("scale_factor", 1.1))
        self.min_neighbors = int(opts.get("min_neighbors", 5))
        self.min_size = int(opts.get("min_face_size", 20))
        self.min_score = float(opts.get("min_score", 0.0))
        self._lock = threading.Lock()  # one CascadeClassifier is not safe across threads

    @classmethod
    def cascade_path(cls, spec: ModelSpec) -> Path | None:
        name = spec.model or DEFAULT_CASCADE
        path = Path(name).expanduser()
        if path.is_absolute() or path.parent != Path("."):
            return path
        root = package_dir("cv2")
        return root / "data" / name if root is not None else None

    @classmethod
    def locate(cls, spec: ModelSpec, settings: ModelSettings) -> Located:
        path = cls.cascade_path(spec)
        if path is None:
            return Located(
                False, hint="install OpenCV with its data: pip install 'opencv-python-headless<5'"
            )
        if not path.is_file():
            return Located(
                False,
                str(path),
                f"Haar cascade not found at {path} (OpenCV 5 ships none: use "
                "opencv-python-headless<5)",
            )
        return Located(True, str(path))

    @classmethod
    def estimate_bytes(cls, spec: ModelSpec, settings: ModelSettings) -> int | None:
        return 0  # a cascade is a few hundred kB of XML held by OpenCV, not by torch

    @classmethod
    def load(cls, spec: ModelSpec, placement: Placement, settings: ModelSettings) -> HaarBackend:
        located = cls.located(spec, settings, "Haar cascade not found")
        import cv2

        classifier = cv2.CascadeClassifier(located.where)
        if classifier.empty():
            raise ModelError(f"OpenCV could not read the Haar cascade {located.where}")
        return cls(spec, Placement("cpu", torch.float32), classifier, located.where)

    @classmethod
    def from_objects(cls, classifier: Any, *, spec: ModelSpec | None = None) -> HaarBackend:
        """Wrap a ``cv2.CascadeClassifier`` the caller loaded."""
        return cls(
            spec or ModelSpec(family=cls.family, model="in-memory"),
            Placement("cpu", torch.float32),
            classifier,
            "in-memory",
        )

    def memory_bytes(self) -> int:
        return 0

    @on_model_thread
    def detect_faces(self, images: list[Image]) -> list[ObjectList]:
        """Faces per image, best first (one cascade run per image: OpenCV has no batching)."""
        keys = [("faces", img.hash) for img in images]
        return self.cached_many(keys, lambda idx: [self._detect(images[i]) for i in idx])

    def _detect(self, image: Image) -> ObjectList:
        import cv2

        gray = cv2.equalizeHist(cv2.cvtColor(np.ascontiguousarray(image.array), cv2.COLOR_RGB2GRAY))
        try:
            with self._lock:
                rects, _levels, weights = self.classifier.detectMultiScale3(
                    gray,
                    scaleFactor=self.scale_factor,
                    minNeighbors=self.min_neighbors,
                    minSize=(self.min_size, self.min_size),
                    outputRejectLevels=True,
                )
        except cv2.error as exc:
            raise ModelError(f"Haar cascade failed: {exc}") from exc
        self.stats["detector"] += 1
        self.stats["images"] += 1
        objects = []
        for (x, y, w, h), weight in zip(
            np.asarray(rects).reshape(-1, 4), np.asarray(weights).reshape(-1), strict=True
        ):
            score = 1.0 / (1.0 + math.exp(-float(weight)))
            objects.append(_face((x, y, x + w, y + h), score, image, level_weight=float(weight)))
        return _ranked(objects, self.min_score)
