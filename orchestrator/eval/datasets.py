"""Benchmarks read in their own published formats, as a list of :class:`Item`.

Every loader takes a :class:`Source` (the data file, the image folder, and for some sets an
annotation file and a split) and returns items in the file's order. Relative image paths
are resolved against ``--images`` (default: the data file's folder).

- ``gqa``: the questions JSON (``{id: {imageId, question, answer, types}}``); images
  ``<imageId>.jpg``; the answer is text; question type: the structural type.
- ``nlvr2``: JSONL (``identifier, sentence, label``); images ``<pair>-img0.png`` and
  ``-img1.png`` (searched below ``--images``) as LEFT and RIGHT; the answer is true/false.
- ``vqav2``, ``okvqa``: the questions JSON plus ``--annotations`` (found beside it when
  omitted); COCO images named ``…<image id>.jpg``; ten human answers; type: answer type.
- ``refcoco``, ``refcoco+``, ``refcocog``: ``refs(…).p`` (plain data only) or a JSON list,
  plus ``--annotations`` ``instances.json``; ``--split`` (default val); one item per
  expression; the answer is a box; type: the object's category.
- ``tagging``, ``editing``: JSONL of ``instruction, image(s), objects: [{box, label}]``
  (or parallel ``boxes``/``labels``); the answer is the (box, label) pairs.
- ``jsonl``: JSONL of ``instruction, image(s), answer`` and optionally ``id, type, kind,
  program, metric`` (one of :class:`Metric`; default exact). ``offline`` reads the same
  format (the set :mod:`.offline_set` writes).
"""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from ..jsonl import json_objects


class DatasetError(ValueError):
    """A data file that is not in the format its loader reads (names the file and record)."""


class Metric(StrEnum):
    EXACT = "exact"  # normalised exact match (numbers compared as numbers)
    GQA = "gqa"
    VQA = "vqa"
    NLVR2 = "nlvr2"
    BOX = "box"  # RefCOCO: IoU ≥ 0.5
    TAGGING = "tagging"  # (box, label) precision / recall / F1


@dataclass(frozen=True)
class Item:
    """One question. ``images`` maps input names (IMAGE, LEFT, RIGHT...) to paths;
    ``answer`` is text, a list of human answers (VQA), a bool (NLVR2), an ``(x0, y0, x1, y1)``
    box (RefCOCO) or a list of ``(box, label)`` pairs (tagging); ``kind`` is the answer kind
    the instruction asks for when the dataset knows it (else read from the wording);
    ``program`` is run as given instead of planning one."""

    id: str
    instruction: str
    images: dict[str, str]
    answer: Any
    metric: Metric
    question_type: str
    kind: str | None = None
    program: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Source:
    data: Path
    images: Path | None = None
    annotations: Path | None = None
    split: str | None = None

    def image(self, name: str) -> str:
        """An image reference from a record: ``sample:…`` kept, paths made absolute."""
        if name.startswith("sample:"):
            return name
        path = Path(name)
        if not path.is_absolute():
            path = (self.images or self.data.parent) / path
        return str(path)


Loader = Callable[[Source], list[Item]]
LOADERS: dict[str, Loader] = {}


def loader(*names: str) -> Callable[[Loader], Loader]:
    def register(fn: Loader) -> Loader:
        for name in names:
            LOADERS[name] = fn
        return fn

    return register


def load(name: str, source: Source) -> list[Item]:
    """The items of dataset ``name`` (one of :data:`LOADERS`) read from ``source``."""
    if name not in LOADERS:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(sorted(LOADERS))}")
    if not source.data.exists():
        raise DatasetError(f"{source.data} does not exist")
    return LOADERS[name](source)


# --- reading files ------------------------------------------------------------------------


def _json(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8-sig") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path} is not readable JSON: {exc}") from None
    except RecursionError:
        raise DatasetError(f"{path} is not readable JSON: nested too deeply") from None


def _jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8-sig") as f:
        yield from json_objects(f, lambda n, why: DatasetError(f"{path}, line {n}: {why}"))


class _PlainData(pickle.Unpickler):
    """Unpickles plain data only (dicts, lists, strings, numbers): a pickle that names any
    class or function is refused, so a refs file cannot run code."""

    def find_class(self, module: str, name: str) -> Any:
        raise DatasetError(f"the pickle wants {module}.{name}; only plain data is read")


def _plain_pickle(path: Path) -> Any:
    with path.open("rb") as f:
        try:
            return _PlainData(f, encoding="latin1").load()
        except (pickle.UnpicklingError, EOFError) as exc:
            raise DatasetError(f"{path} is not a readable pickle: {exc}") from None


def _field(record: dict[str, Any], key: str, where: str, kind: type | tuple[type, ...]) -> Any:
    if key not in record:
        raise DatasetError(f"{where}: no {key!r}")
    value = record[key]
    if not isinstance(value, kind):
        raise DatasetError(f"{where}: {key!r} is {type(value).__name__}")
    return value


def _images_of(record: dict[str, Any], source: Source, where: str) -> dict[str, str]:
    if "images" in record:
        images = _field(record, "images", where, (dict, list))
        if isinstance(images, list):  # a pair is LEFT, RIGHT; otherwise IMAGE0, IMAGE1...
            names = (
                ["LEFT", "RIGHT"] if len(images) == 2 else [f"IMAGE{i}" for i in range(len(images))]
            )
            images = dict(zip(names, images, strict=True))
        return {str(k): source.image(str(v)) for k, v in images.items()}
    if "image" in record:
        return {"IMAGE": source.image(str(_field(record, "image", where, str)))}
    return {}


def _box(value: Any, where: str) -> tuple[float, float, float, float]:
    if not (isinstance(value, (list, tuple)) and len(value) == 4):
        raise DatasetError(f"{where}: a box is [x0, y0, x1, y1], not {value!r}")
    try:
        x0, y0, x1, y1 = (float(v) for v in value)
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: a box is four numbers, not {value!r}") from None
    return (x0, y0, x1, y1)


def _coco_box(value: Any, where: str) -> tuple[float, float, float, float]:
    x, y, w, h = _box(value, where)
    return (x, y, x + w, y + h)


# --- the benchmarks ----------------------------------------------------------------------


@loader("gqa")
def load_gqa(source: Source) -> list[Item]:
    data = _json(source.data)
    if not isinstance(data, dict):
        raise DatasetError(f"{source.data}: GQA questions are a JSON object keyed by id")
    items = []
    for qid, q in data.items():
        where = f"{source.data}, question {qid}"
        if not isinstance(q, dict):
            raise DatasetError(f"{where}: not an object")
        types = q.get("types") if isinstance(q.get("types"), dict) else {}
        image = _field(q, "imageId", where, (str, int))
        items.append(Item(
            id=str(qid), instruction=_field(q, "question", where, str),
            images={"IMAGE": source.image(f"{image}.jpg")},
            answer=_field(q, "answer", where, str), metric=Metric.GQA,
            question_type=str(types.get("structural") or "gqa"),
            meta={"semantic": types.get("semantic"), "detailed": types.get("detailed")},
        ))  # fmt: skip
    return items


def _index_images(folder: Path, pattern: str) -> dict[str, Path]:
    return {p.name: p for p in folder.rglob(pattern)} if folder.is_dir() else {}


@loader("nlvr2")
def load_nlvr2(source: Source) -> list[Item]:
    folder = source.images or source.data.parent
    found = _index_images(folder, "*.png")
    items = []
    for n, rec in _jsonl(source.data):
        where = f"{source.data}, line {n}"
        identifier = _field(rec, "identifier", where, str)
        label = str(_field(rec, "label", where, (str, bool))).strip().lower()
        if label not in ("true", "false"):
            raise DatasetError(f"{where}: label is {label!r}, not True or False")
        pair = identifier.rsplit("-", 1)[0]
        images = {}
        for side, k in (("LEFT", 0), ("RIGHT", 1)):
            name = f"{pair}-img{k}.png"
            images[side] = str(found.get(name, folder / name))
        items.append(Item(
            id=identifier, instruction=_field(rec, "sentence", where, str), images=images,
            answer=label == "true", metric=Metric.NLVR2, question_type="nlvr2", kind="yesno",
        ))  # fmt: skip
    return items


_COCO_ID = re.compile(r"(\d+)\.(?:jpe?g|png)$", re.IGNORECASE)


def _coco_images(folder: Path) -> dict[int, Path]:
    out: dict[int, Path] = {}
    if folder.is_dir():
        for p in folder.rglob("*"):
            m = _COCO_ID.search(p.name)
            if m:
                out.setdefault(int(m.group(1)), p)
    return out


def _sibling(source: Source, *words: str) -> Path:
    if source.annotations is not None:
        return source.annotations
    for p in sorted(source.data.parent.glob("*.json")):
        if p != source.data and all(w in p.name.lower() for w in words):
            return p
    raise DatasetError(f"no {' '.join(words)} file beside {source.data}: give --annotations")


@loader("vqav2", "okvqa")
def load_vqa(source: Source) -> list[Item]:
    questions = _json(source.data)
    annotations = _json(_sibling(source, "annotations"))
    try:
        qs = questions["questions"]
        by_id = {a["question_id"]: a for a in annotations["annotations"]}
    except (KeyError, TypeError):
        raise DatasetError("VQA files hold 'questions' and 'annotations' lists") from None
    folder = source.images or source.data.parent
    images = _coco_images(folder)
    items = []
    for q in qs:
        where = f"{source.data}, question {q.get('question_id')}"
        qid = _field(q, "question_id", where, int)
        ann = by_id.get(qid)
        if ann is None:
            raise DatasetError(f"{where}: no annotation")
        answers = [str(a.get("answer", "")) for a in ann.get("answers", [])]
        image_id = _field(q, "image_id", where, int)
        path = images.get(image_id, folder / f"{image_id:012d}.jpg")
        items.append(Item(
            id=str(qid), instruction=_field(q, "question", where, str),
            images={"IMAGE": str(path)}, answer=answers, metric=Metric.VQA,
            question_type=str(ann.get("answer_type") or "vqa"),
            meta={"question_type": ann.get("question_type")},
        ))  # fmt: skip
    return items


@loader("refcoco", "refcoco+", "refcocog")
def load_refcoco(source: Source) -> list[Item]:
    refs = (
        _plain_pickle(source.data) if source.data.suffix in (".p", ".pkl") else _json(source.data)
    )
    instances = _json(_sibling(source, "instances"))
    try:
        boxes = {a["id"]: a["bbox"] for a in instances["annotations"]}
        files = {i["id"]: i["file_name"] for i in instances["images"]}
        categories = {c["id"]: c["name"] for c in instances.get("categories", [])}
    except (KeyError, TypeError):
        raise DatasetError("instances.json holds 'annotations' and 'images' lists") from None
    split = source.split or "val"
    items = []
    for ref in refs if isinstance(refs, list) else []:
        if not isinstance(ref, dict) or ref.get("split") != split:
            continue
        where = f"{source.data}, ref {ref.get('ref_id')}"
        ann_id = ref.get("ann_id")
        if ann_id not in boxes:
            raise DatasetError(f"{where}: annotation {ann_id} is not in the instances file")
        box = _coco_box(boxes[ann_id], where)
        image = files.get(ref.get("image_id"))
        if image is None:
            raise DatasetError(f"{where}: image {ref.get('image_id')} is not in the instances file")
        for sent in ref.get("sentences", []):
            text = str(sent.get("sent") or sent.get("raw") or "").strip()
            items.append(Item(
                id=f"{ref.get('ref_id')}-{sent.get('sent_id')}", instruction=f"Find the {text}",
                images={"IMAGE": source.image(image)}, answer=box, metric=Metric.BOX,
                question_type=str(categories.get(ref.get("category_id"), "object")),
                kind="objects", meta={"expression": text, "split": split},
            ))  # fmt: skip
    return items


def _objects(record: dict[str, Any], where: str) -> list[tuple[tuple[float, ...], str | None]]:
    if "objects" in record:
        objects = _field(record, "objects", where, list)
        return [
            (_box(o.get("box") if isinstance(o, dict) else None, where),
             o.get("label") if isinstance(o, dict) else None)
            for o in objects
        ]  # fmt: skip
    boxes = _field(record, "boxes", where, list)
    labels = record.get("labels") or [None] * len(boxes)
    if len(labels) != len(boxes):
        raise DatasetError(f"{where}: {len(boxes)} boxes but {len(labels)} labels")
    return [
        (_box(b, where), None if lab is None else str(lab))
        for b, lab in zip(boxes, labels, strict=True)
    ]


def _jsonl_items(
    source: Source, metric_for: Callable[[dict[str, Any], str], tuple[Metric, Any]]
) -> list[Item]:
    items = []
    for n, rec in _jsonl(source.data):
        where = f"{source.data}, line {n}"
        metric, answer = metric_for(rec, where)
        kind = rec.get("kind")
        program = rec.get("program")
        items.append(Item(
            id=str(rec.get("id", n)), instruction=str(_field(rec, "instruction", where, str)),
            images=_images_of(rec, source, where), answer=answer, metric=metric,
            question_type=str(rec.get("type") or source.data.stem),
            kind=str(kind) if kind else None, program=str(program) if program else None,
        ))  # fmt: skip
    return items


@loader("tagging", "editing")
def load_tagging(source: Source) -> list[Item]:
    return _jsonl_items(source, lambda rec, where: (Metric.TAGGING, _objects(rec, where)))


@loader("jsonl", "offline")
def load_jsonl(source: Source) -> list[Item]:
    def metric_for(rec: dict[str, Any], where: str) -> tuple[Metric, Any]:
        try:
            metric = Metric(rec.get("metric", "exact"))
        except ValueError:
            known = ", ".join(m.value for m in Metric)
            raise DatasetError(
                f"{where}: metric {rec.get('metric')!r} is not one of {known}"
            ) from None
        if metric is Metric.TAGGING:
            return metric, _objects(rec, where)
        answer = _field(rec, "answer", where, (str, int, float, bool, list))
        if metric is Metric.BOX:
            return metric, _box(answer, where)
        if metric is Metric.NLVR2:
            return metric, str(answer).strip().lower() in ("true", "yes")
        return metric, [str(a) for a in answer] if isinstance(answer, list) else str(answer)

    return _jsonl_items(source, metric_for)
