"""The benchmarks' metrics, against their definitions' worked examples and edge cases."""

from __future__ import annotations

import pytest

from orchestrator.eval.metrics import (
    PairCounts,
    box_hit,
    gqa_match,
    iou,
    match_pairs,
    nlvr2_match,
    vqa_accuracy,
    vqa_normalize,
)


def humans(answer: str, k: int, other: str = "blue") -> list[str]:
    """Ten annotators, ``k`` of whom gave ``answer`` (the rest ``other``)."""
    return [answer] * k + [other] * (10 - k)


@pytest.mark.parametrize(
    ("k", "expected"), [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (7, 1.0), (10, 1.0)]
)
def test_vqa_accuracy_worked_examples(k: int, expected: float) -> None:
    # min(#humans/3, 1) over the ten leave-one-out subsets: one human gives 9 × 1/3 / 10 = 0.3,
    # two give (2 × 1/3 + 8 × 2/3) / 10 = 0.6, three (3 × 2/3 + 7 × 1) / 10 = 0.9
    answers = humans("red", k) if k < 10 else ["red"] * 10
    assert vqa_accuracy("red", answers) == pytest.approx(expected)


def test_vqa_normalisation_applies_when_annotators_disagree() -> None:
    answers = ["2"] * 3 + ["3"] * 7
    assert vqa_accuracy("Two.", answers) == pytest.approx(0.9)  # number word, case, stop
    assert vqa_accuracy("a dog", ["dog"] * 4 + ["cat"] * 6) == 1.0  # article dropped
    assert vqa_normalize("Dont know!") == "don't know"  # contraction restored, punctuation
    assert vqa_normalize("1,000") == "1000"  # comma between digits
    assert vqa_normalize("3.5") == "3.5"  # a decimal point stays


def test_vqa_unanimous_answers_compare_as_written() -> None:
    # the official script normalises only when annotators disagree
    assert vqa_accuracy("yes", ["yes"] * 10) == 1.0
    assert vqa_accuracy("Yes", ["yes"] * 10) == 0.0
    assert vqa_accuracy(None, ["yes"] * 10) == 0.0


def test_gqa_and_nlvr2() -> None:
    assert gqa_match("Yes.", "yes") == 1.0
    assert gqa_match(" the  table ", "the table") == 1.0
    assert gqa_match("left", "right") == 0.0
    assert gqa_match(None, "left") == 0.0
    assert nlvr2_match("yes", True) == 1.0 and nlvr2_match("False", False) == 1.0
    assert nlvr2_match("no", True) == 0.0 and nlvr2_match("maybe", False) == 0.0


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((0, 0, 10, 10), (0, 0, 10, 10), 1.0),  # identical
        ((0, 0, 10, 10), (20, 20, 30, 30), 0.0),  # disjoint
        ((0, 0, 10, 10), (10, 0, 20, 10), 0.0),  # touching edges
        ((0, 0, 10, 10), (10, 10, 20, 20), 0.0),  # touching corners
        ((5, 5, 5, 9), (0, 0, 10, 10), 0.0),  # no area
        ((5, 5, 5, 5), (5, 5, 5, 5), 0.0),  # two points
        ((0, 0, 10, 10), (2, 2, 7, 7), 0.25),  # contained: 25 / 100
        ((0, 0, 2, 1), (1, 0, 3, 1), 1 / 3),  # half overlap: 1 / (2 + 2 - 1)
    ],
)
def test_iou_edge_cases(a: tuple, b: tuple, expected: float) -> None:
    assert iou(a, b) == pytest.approx(expected)
    assert iou(b, a) == pytest.approx(expected)


def test_refcoco_hit_is_iou_at_least_one_half() -> None:
    truth = (0.0, 0.0, 2.0, 1.0)
    assert iou((0, 0, 1, 1), truth) == 0.5 and box_hit((0, 0, 1, 1), truth) == 1.0
    assert box_hit((0, 0, 0.99, 1), truth) == 0.0
    assert box_hit(None, truth) == 0.0


def test_tagging_pairs_match_one_to_one_by_label_and_iou() -> None:
    gold = [((0, 0, 10, 10), "Cat"), ((20, 0, 30, 10), "dog")]
    both = [((0, 0, 10, 10), "cat"), ((21, 0, 31, 10), "dog")]
    assert match_pairs(both, gold) == PairCounts(2, 2, 2)
    twice = [((0, 0, 10, 10), "cat"), ((1, 0, 10, 10), "cat")]  # two on one annotation
    counts = match_pairs(twice, gold)
    assert counts == PairCounts(1, 2, 2) and counts.precision == 0.5 and counts.recall == 0.5
    assert match_pairs([((0, 0, 10, 10), "dog")], gold).matched == 0  # wrong label
    assert match_pairs([((0, 0, 10, 10), "anything")], [((0, 0, 10, 10), None)]).matched == 1
    nothing = match_pairs([], [])
    assert (nothing.precision, nothing.recall, nothing.f1) == (1.0, 1.0, 1.0)
    missed = match_pairs([], gold)
    assert (missed.precision, missed.recall, missed.f1) == (0.0, 0.0, 0.0)
    total = PairCounts(2, 2, 2) + PairCounts(0, 1, 2)
    assert total == PairCounts(2, 3, 4) and total.f1 == pytest.approx(
        2 * (2 / 3) * 0.5 / (2 / 3 + 0.5)
    )
