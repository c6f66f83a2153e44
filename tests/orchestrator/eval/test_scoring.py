"""Turning a run's outcome into the metric's input: boxes from objects, crops and boxes
(in the original picture's pixels), (box, label) pairs, numbers as numbers."""

from __future__ import annotations

from pathlib import Path

from PIL import Image as PILImage

from orchestrator.eval.datasets import Item, Metric
from orchestrator.eval.report import summarize, write_report
from orchestrator.eval.scoring import exact_match, predicted_box, predicted_pairs, score
from tools.types import Box, Image, Object, ObjectList


def item(metric: Metric, answer: object) -> Item:
    return Item("1", "q", {"IMAGE": "a.png"}, answer, metric, "t")


def test_boxes_come_back_in_the_original_pictures_pixels() -> None:
    found = ObjectList((Object(Box(0, 0, 5, 5), score=0.2), Object(Box(10, 10, 20, 20), score=0.9)),
                       origin=(100, 50))  # fmt: skip
    assert predicted_box(found) == [110, 60, 120, 70]  # the best-scoring one, shifted
    crop = Image(PILImage.new("RGB", (30, 40)), origin=(7, 9))
    assert predicted_box(crop) == [7, 9, 37, 49]
    assert predicted_box(Box(1, 2, 3, 4)) == [1, 2, 3, 4]
    assert predicted_box(ObjectList(())) is None and predicted_box("left") is None
    hit = score(item(Metric.BOX, (108, 58, 121, 71)), ok=True, answer="", output=found, values={})
    assert hit.correct and hit.prediction == [110, 60, 120, 70]


def test_pairs_from_the_output_or_the_last_object_list() -> None:
    tagged = ObjectList((Object(Box(0, 0, 10, 10), label="cat"),))
    assert predicted_pairs(tagged, {}) == [[[0, 0, 10, 10], "cat"]]
    picture = Image(PILImage.new("RGB", (4, 4)))
    values = {"OBJ0": ObjectList(()), "OBJ1": tagged, "IMAGE0": picture}
    assert predicted_pairs(picture, values) == [[[0, 0, 10, 10], "cat"]]
    got = score(item(Metric.TAGGING, [((0, 0, 10, 10), "Cat")]), ok=True, answer="",
                output=picture, values=values)  # fmt: skip
    assert got.correct and got.pairs is not None and got.pairs.f1 == 1.0


def test_text_metrics_and_failed_runs() -> None:
    assert exact_match("2.0", "2") == 1.0 and exact_match("Two", "2") == 0.0
    assert exact_match("Red.", ["blue", "red"]) == 1.0
    vqa = score(item(Metric.VQA, ["red"] * 2 + ["blue"] * 8), ok=True, answer="red", output="red",
                values={})  # fmt: skip
    assert vqa.value == 0.6 and vqa.correct  # partial credit counts for VQA
    failed = score(item(Metric.EXACT, "2"), ok=False, answer=None, output=None, values={})
    assert failed.value == 0.0 and not failed.correct and failed.prediction is None


def test_the_report_escapes_what_items_hold(tmp_path: Path) -> None:
    row = {"id": "<b>1</b>", "type": "<i>t</i>", "instruction": "<script>alert(1)</script>",
           "prediction": "<img src=x onerror=alert(2)>", "expected": "\"><script>", "score": 0.0,
           "correct": False, "ok": True, "error": None, "seconds": 0.1, "pairs": None,
           "attribution": {"culprit": "answer", "tool": "<svg onload=x>", "step": "N", "reason": "r"},
           "trace": "traces/x"}  # fmt: skip
    plan = {"dataset": "<script>", "data": "d", "split": None, "limit": None, "seed": 0,
            "items": 1, "ids_sha256": "0"}  # fmt: skip
    page = write_report(tmp_path, summarize([row], plan), [row]).read_text()
    assert "<script" not in page and "<img" not in page and "<svg" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_the_report_writes_text_utf8_cannot_carry_as_its_escape(tmp_path: Path) -> None:
    row = {"id": "1", "type": "t", "instruction": "q", "prediction": "a\ud800b", "expected": "b",
           "score": 0.0, "correct": False, "ok": True, "error": None, "seconds": 0.1,
           "pairs": None, "attribution": None, "trace": None}  # fmt: skip
    plan = {"dataset": "d", "data": "d", "split": None, "limit": None, "seed": 0, "items": 1,
            "ids_sha256": "0"}  # fmt: skip
    page = write_report(tmp_path, summarize([row], plan), [row]).read_text(encoding="utf-8")
    assert "a\\ud800b" in page
