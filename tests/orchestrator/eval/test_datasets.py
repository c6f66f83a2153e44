"""Each loader against a small file in the benchmark's published format, written here."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest

from orchestrator.eval.datasets import DatasetError, Metric, Source, load
from orchestrator.eval.runner import choose


def write(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_gqa(tmp_path: Path) -> None:
    data = write(tmp_path / "testdev_balanced_questions.json", {
        "201307251": {"imageId": "n15740", "question": "Is the table made of wood?",
                      "answer": "yes", "types": {"structural": "verify", "semantic": "attr"}},
        "201640614": {"imageId": "n436467", "question": "Who is wearing a shirt?",
                      "answer": "girl", "types": {"structural": "query"}},
    })  # fmt: skip
    items = load("gqa", Source(data, images=tmp_path / "images"))
    assert [i.id for i in items] == ["201307251", "201640614"]
    first = items[0]
    assert first.images == {"IMAGE": str(tmp_path / "images" / "n15740.jpg")}
    assert (first.answer, first.metric, first.question_type) == ("yes", Metric.GQA, "verify")


def test_nlvr2_pairs_left_and_right_images(tmp_path: Path) -> None:
    data = jsonl(tmp_path / "dev.json", [
        {"identifier": "dev-850-0-0", "sentence": "There are two dogs.", "label": "True"},
        {"identifier": "dev-850-0-1", "sentence": "There is one cat.", "label": "False"},
    ])  # fmt: skip
    (tmp_path / "images" / "dev").mkdir(parents=True)
    for k in (0, 1):
        (tmp_path / "images" / "dev" / f"dev-850-0-img{k}.png").write_bytes(b"png")
    items = load("nlvr2", Source(data, images=tmp_path / "images"))
    assert [i.answer for i in items] == [True, False]
    assert items[1].images == {
        "LEFT": str(tmp_path / "images" / "dev" / "dev-850-0-img0.png"),
        "RIGHT": str(tmp_path / "images" / "dev" / "dev-850-0-img1.png"),
    }
    assert items[0].kind == "yesno" and items[0].metric is Metric.NLVR2


def test_vqa_questions_and_annotations(tmp_path: Path) -> None:
    questions = write(tmp_path / "v2_OpenEnded_mscoco_val2014_questions.json", {"questions": [
        {"image_id": 262148, "question": "Where is he looking?", "question_id": 262148000},
    ]})  # fmt: skip
    write(tmp_path / "v2_mscoco_val2014_annotations.json", {"annotations": [
        {"question_id": 262148000, "image_id": 262148, "answer_type": "other",
         "question_type": "where is he",
         "answers": [{"answer": a, "answer_id": n + 1} for n, a in enumerate(["down"] * 6 + ["at table"] * 4)]},
    ]})  # fmt: skip
    (tmp_path / "val2014").mkdir()
    image = tmp_path / "val2014" / "COCO_val2014_000000262148.jpg"
    image.write_bytes(b"jpg")
    (item,) = load("vqav2", Source(questions, images=tmp_path))
    assert item.images == {"IMAGE": str(image)} and len(item.answer) == 10
    assert item.metric is Metric.VQA and item.question_type == "other"
    assert load("okvqa", Source(questions, images=tmp_path))[0].answer == item.answer


def test_vqa_without_annotations_names_the_fix(tmp_path: Path) -> None:
    questions = write(tmp_path / "q" / "questions.json", {"questions": []})
    with pytest.raises(DatasetError, match="--annotations"):
        load("vqav2", Source(questions))


def refcoco_files(tmp_path: Path) -> tuple[Path, Path]:
    refs = [
        {"ref_id": 7, "ann_id": 100, "image_id": 5, "split": "val", "category_id": 1,
         "sentences": [{"sent": "man in red", "sent_id": 70}, {"sent": "left guy", "sent_id": 71}]},
        {"ref_id": 8, "ann_id": 101, "image_id": 5, "split": "testA", "category_id": 1,
         "sentences": [{"sent": "woman", "sent_id": 80}]},
    ]  # fmt: skip
    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps(refs))
    instances = write(tmp_path / "instances.json", {
        "images": [{"id": 5, "file_name": "COCO_train2014_000000000005.jpg"}],
        "annotations": [{"id": 100, "image_id": 5, "bbox": [10, 20, 30, 40]},
                        {"id": 101, "image_id": 5, "bbox": [0, 0, 5, 5]}],
        "categories": [{"id": 1, "name": "person"}],
    })  # fmt: skip
    return path, instances


def test_refcoco_one_item_per_expression_in_the_split(tmp_path: Path) -> None:
    refs, _instances = refcoco_files(tmp_path)
    items = load("refcoco", Source(refs, images=tmp_path / "train2014"))
    assert [i.id for i in items] == ["7-70", "7-71"]
    assert items[0].answer == (10.0, 20.0, 40.0, 60.0)  # [x, y, w, h] → corners
    assert items[0].instruction == "Find the man in red" and items[0].kind == "objects"
    assert items[0].question_type == "person" and items[0].metric is Metric.BOX
    assert [i.id for i in load("refcocog", Source(refs, split="testA"))] == ["8-80"]


def test_refcoco_pickles_holding_code_are_refused(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps([Evil()]))
    write(tmp_path / "instances.json", {"images": [], "annotations": []})
    with pytest.raises(DatasetError, match="only plain data"):
        load("refcoco", Source(path))


def test_tagging_and_generic_jsonl(tmp_path: Path) -> None:
    tags = jsonl(tmp_path / "tags.jsonl", [
        {"instruction": "Tag the cats", "image": "a.png",
         "objects": [{"box": [0, 0, 5, 5], "label": "cat"}]},
        {"instruction": "Blur the faces", "images": {"IMAGE": "b.png"},
         "boxes": [[1, 1, 2, 2]], "labels": ["face"], "type": "blur"},
    ])  # fmt: skip
    items = load("tagging", Source(tags))
    assert items[0].answer == [((0.0, 0.0, 5.0, 5.0), "cat")]
    assert (
        items[0].images == {"IMAGE": str(tmp_path / "a.png")} and items[1].question_type == "blur"
    )
    generic = jsonl(tmp_path / "set.jsonl", [
        {"id": "a", "instruction": "How many?", "image": "sample:coffee", "answer": 2},
        {"instruction": "Compare", "images": ["l.png", "r.png"], "answer": ["yes", "yeah"],
         "program": "RESULT=Eval('1')", "kind": "yesno"},
    ])  # fmt: skip
    a, b = load("jsonl", Source(generic))
    assert (a.id, a.answer, a.images, a.metric) == (
        "a",
        "2",
        {"IMAGE": "sample:coffee"},
        Metric.EXACT,
    )
    assert b.id == "2" and set(b.images) == {"LEFT", "RIGHT"} and b.program and b.kind == "yesno"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "line 2: not JSON"),
        ("[" * 100_000, "line 2: JSON nested too deeply"),
        ('{"image": "a.png", "answer": "x"}', "line 2: no 'instruction'"),
        ('{"instruction": "q", "answer": "x", "metric": "bleu"}', "metric 'bleu'"),
        ('{"instruction": "q", "metric": "box", "answer": [1, 2]}', "a box is"),
    ],
)
def test_bad_lines_name_the_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "set.jsonl"
    path.write_text('{"instruction": "q", "answer": "a"}\n' + line + "\n")
    with pytest.raises(DatasetError, match=message):
        load("jsonl", Source(path))


def test_a_json_file_nested_too_deeply_is_a_dataset_error(tmp_path: Path) -> None:
    path = tmp_path / "questions.json"
    path.write_text("[" * 100_000)
    with pytest.raises(DatasetError, match="not readable JSON: nested too deeply"):
        load("gqa", Source(path))


def test_unknown_dataset_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="unknown dataset"):
        load("imagenet", Source(tmp_path / "x"))
    with pytest.raises(DatasetError, match="does not exist"):
        load("gqa", Source(tmp_path / "missing.json"))


def test_limit_draws_the_same_items_for_the_same_seed(tmp_path: Path) -> None:
    path = jsonl(
        tmp_path / "set.jsonl", [{"instruction": f"q{i}", "answer": "a"} for i in range(50)]
    )
    items = load("jsonl", Source(path))
    first = [i.id for i in choose(items, 10, seed=3)]
    assert first == [i.id for i in choose(items, 10, seed=3)]
    assert first != [i.id for i in choose(items, 10, seed=4)]
    assert first == sorted(first, key=int)  # kept in dataset order
    assert len(choose(items, None, seed=3)) == 50 == len(choose(items, 500, seed=3))
