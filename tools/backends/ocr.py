"""Text reading with RapidOCR (PP-OCR detection, orientation and recognition ONNX models).

rapidocr 3.10 bundles its default models in the wheel (``rapidocr/models``: PP-OCRv6 small
detection and multilingual recognition, the mobile v2.0 orientation classifier; Apache-2.0).
Left to itself it looks them up by route and would download anything missing, so this
backend always passes explicit ``model_path`` values, checks they exist in :meth:`locate`,
and refuses a recognition model without an embedded character list (rapidocr would fetch a
dictionary for it). Nothing here touches the network.

``read`` returns, per image, one object per text line: ``label`` the text, ``score`` the
recognition confidence, ``box`` the axis-aligned box around the detected quadrilateral (the
quadrilateral itself is in ``extra["quad"]``), in reading order: top to bottom, and left to
right within a row.

A picture more than ``MAX_ASPECT`` (2) times wider than tall, or taller than wide, is padded
with white at the bottom (or right) before RapidOCR sees it: RapidOCR scales the shorter
side up (to 30, then 736 pixels), so a 2000×1 crop would become a 10 GiB array, and even its
own 4:1 padding of wide strips makes detection 4x an ordinary picture's work (a 600×3 strip:
31 s at 8:1, 16 s at 4:1, 7.7 s at 2:1, 4.5 s for a 600×400 picture, on the loaded 2-core
test machine). Padding at the bottom/right leaves every box in the picture's own pixel
coordinates.

Options (``spec.options``): ``min_score`` (0.5, drop lines read with less confidence),
``det_model`` / ``rec_model`` / ``cls_model`` (paths of other PP-OCR ONNX models),
``rec_keys`` (character list for a recognition model without one), ``use_cls`` (True),
``params`` (further RapidOCR parameters, e.g. ``{"Det.box_thresh": 0.6}``).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping
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

# The files rapidocr 3.10 bundles; other versions are found by pattern (see _bundled).
BUNDLED = {
    "det": "PP-OCRv6_det_small.onnx",
    "rec": "PP-OCRv6_rec_small.onnx",
    "cls": "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
}
MAX_ASPECT = 2.0  # longer side : shorter side, at most, of what RapidOCR is given
INSTALL_HINT = "install RapidOCR and its bundled models: pip install rapidocr==3.10.0 onnxruntime"


def _bundled(task: str) -> Path | None:
    root = package_dir("rapidocr")
    if root is None:
        return None
    models = root / "models"
    exact = models / BUNDLED[task]
    if exact.is_file():
        return exact
    found = sorted(models.glob(f"*_{task}_*.onnx"))
    return found[0] if len(found) == 1 else exact


def model_paths(spec: ModelSpec) -> dict[str, Path | None]:
    """The det/rec/cls ONNX files the spec names (default: the ones in the wheel)."""
    paths: dict[str, Path | None] = {}
    for task in ("det", "rec", "cls"):
        given = spec.options.get(f"{task}_model")
        paths[task] = Path(given).expanduser() if given else _bundled(task)
    if not spec.options.get("use_cls", True):
        paths.pop("cls")
    return paths


def bounded_aspect(array: np.ndarray, max_aspect: float = MAX_ASPECT) -> np.ndarray:
    """``array`` (H×W×C) padded with white at the bottom or right until neither side is more
    than ``max_aspect`` times the other (unchanged when it already is)."""
    height, width = array.shape[:2]
    padded_h = max(height, math.ceil(width / max_aspect))
    padded_w = max(width, math.ceil(height / max_aspect))
    if (padded_h, padded_w) == (height, width):
        return array
    out = np.full((padded_h, padded_w, *array.shape[2:]), 255, dtype=array.dtype)
    out[:height, :width] = array
    return out


def reading_order(lines: list[Object]) -> list[Object]:
    """Top-to-bottom rows, left to right within a row. A line joins the current row when
    its vertical centre lies within half the height of the row's first line."""
    rows: list[list[Object]] = []
    for obj in sorted(lines, key=lambda o: (o.box.center[1], o.box.x0)):
        if rows:
            first = rows[-1][0].box
            if abs(obj.box.center[1] - first.center[1]) <= 0.5 * min(first.height, obj.box.height):
                rows[-1].append(obj)
                continue
        rows.append([obj])
    return [obj for row in rows for obj in sorted(row, key=lambda o: o.box.x0)]


class RapidOcrBackend(Backend):
    """RapidOCR on onnxruntime (CPU, or CUDA when onnxruntime-gpu is installed)."""

    family: ClassVar[str] = "rapidocr"
    batch_methods: ClassVar[Mapping[str, int]] = {"read": 1}
    offline_capable: ClassVar[bool] = True

    def __init__(
        self, spec: ModelSpec, placement: Placement, engine: Any, model_bytes: int = 0
    ) -> None:
        super().__init__(spec, placement)
        self.engine = engine
        self.model_bytes = model_bytes
        self.min_score = float(spec.options.get("min_score", 0.5))
        self._lock = threading.Lock()  # RapidOCR keeps per-call state on the engine

    @classmethod
    def locate(cls, spec: ModelSpec, settings: ModelSettings) -> Located:
        if package_dir("rapidocr") is None:
            return Located(False, hint=INSTALL_HINT)
        if package_dir("onnxruntime") is None:
            return Located(False, hint="RapidOCR needs onnxruntime: pip install onnxruntime")
        paths = model_paths(spec)
        missing = [f"{task} ({p})" for task, p in paths.items() if p is None or not p.is_file()]
        if missing:
            return Located(False, hint=f"OCR models not found: {', '.join(missing)}")
        return Located(True, str(paths["det"].parent))  # type: ignore[union-attr]

    @classmethod
    def estimate_bytes(cls, spec: ModelSpec, settings: ModelSettings) -> int | None:
        paths = [p for p in model_paths(spec).values() if p is not None and p.is_file()]
        return sum(p.stat().st_size for p in paths) or None

    @classmethod
    def load(
        cls, spec: ModelSpec, placement: Placement, settings: ModelSettings
    ) -> RapidOcrBackend:
        cls.located(spec, settings, "RapidOCR is not available")
        import onnxruntime
        from rapidocr import RapidOCR

        paths = model_paths(spec)
        rec_keys = spec.options.get("rec_keys")
        if rec_keys is None and paths["rec"] != _bundled("rec"):
            session = onnxruntime.InferenceSession(
                str(paths["rec"]), providers=["CPUExecutionProvider"]
            )
            if "character" not in session.get_modelmeta().custom_metadata_map:
                raise ModelError(
                    f"{paths['rec']} has no embedded character list: set options.rec_keys to "
                    "its dictionary file (RapidOCR would otherwise download one)"
                )
        cuda = placement.device.startswith("cuda") and (
            "CUDAExecutionProvider" in onnxruntime.get_available_providers()
        )
        if not cuda:
            placement = Placement("cpu", torch.float32)
        params: dict[str, Any] = {
            "Global.log_level": "critical",  # rapidocr logs to its own console handler
            "Global.use_cls": "cls" in paths,
            "Global.text_score": float(spec.options.get("min_score", 0.5)),
            "Global.model_root_dir": str(paths["det"].parent),  # type: ignore[union-attr]
            "EngineConfig.onnxruntime.use_cuda": cuda,
        }
        for task, path in paths.items():
            params[f"{task.capitalize()}.model_path"] = str(path)
        if cuda and ":" in placement.device:
            params["EngineConfig.onnxruntime.cuda_ep_cfg.device_id"] = int(
                placement.device.split(":")[1]
            )
        if rec_keys:
            params["Rec.rec_keys_path"] = str(Path(rec_keys).expanduser())
        params.update(spec.options.get("params", {}))
        try:
            engine = RapidOCR(params=params)
            # Sessions are created lazily on the first call; create them now so load time
            # is paid (and load errors surface) here.
            for loader in ("_load_det_model", "_load_cls_model", "_load_rec_model"):
                if loader != "_load_cls_model" or "cls" in paths:
                    getattr(engine, loader, lambda: None)()
        except Exception as exc:
            raise ModelError(f"RapidOCR failed to load: {type(exc).__name__}: {exc}") from exc
        size = sum(p.stat().st_size for p in paths.values() if p is not None)
        return cls(spec, Placement(placement.device, torch.float32), engine, size)

    @classmethod
    def from_objects(cls, engine: Any, *, spec: ModelSpec | None = None) -> RapidOcrBackend:
        """Wrap a ``rapidocr.RapidOCR`` engine the caller built."""
        spec = spec or ModelSpec(family=cls.family, model="in-memory")
        return cls(spec, Placement("cpu", torch.float32), engine)

    def memory_bytes(self) -> int:
        return self.model_bytes  # onnxruntime holds about the model files' size

    @on_model_thread
    def read(self, images: list[Image]) -> list[ObjectList]:
        """Text lines per image, in reading order (RapidOCR runs one image at a time)."""
        keys = [("ocr", img.hash) for img in images]
        return self.cached_many(keys, lambda idx: [self._read(images[i]) for i in idx])

    def _read(self, image: Image) -> ObjectList:
        bgr = np.ascontiguousarray(bounded_aspect(image.array[:, :, ::-1]))
        try:
            with self._lock:
                result = self.engine(bgr)
        except Exception as exc:
            raise ModelError(f"RapidOCR failed: {type(exc).__name__}: {exc}") from exc
        self.stats["ocr"] += 1
        boxes = getattr(result, "boxes", None)
        texts = getattr(result, "txts", None)
        scores = getattr(result, "scores", None)
        if boxes is None or texts is None or scores is None:
            return ObjectList()
        lines = []
        for quad, text, score in zip(boxes, texts, scores, strict=True):
            quad = np.asarray(quad, dtype=float).reshape(-1, 2)
            text = str(text).strip()
            if not text or float(score) < self.min_score or not np.all(np.isfinite(quad)):
                continue
            x0, y0 = quad.min(axis=0)
            x1, y1 = quad.max(axis=0)
            box = Box(float(x0), float(y0), float(x1), float(y1)).clip(image.width, image.height)
            quad_points = [(float(x), float(y)) for x, y in quad]
            lines.append(
                Object(box=box, label=text, score=float(score), extra={"quad": quad_points})
            )
        return ObjectList(tuple(reading_order(lines)))
