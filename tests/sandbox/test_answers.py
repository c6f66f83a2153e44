"""Question kinds from their wording, and short answers that use them."""

from __future__ import annotations

import pytest

from sandbox.answers import (
    QuestionKind,
    as_number,
    asked_kind,
    asks_count,
    question_kind,
    short_answer,
)


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("Is it daytime?", QuestionKind.YESNO),
        ("Are there any boats?", QuestionKind.YESNO),
        ("Is the light red or not?", QuestionKind.YESNO),
        ("Is it a cat or a dog?", QuestionKind.LABEL),
        ("How many people are in the image?", QuestionKind.NUMBER),
        ("What is the number of cars?", QuestionKind.NUMBER),
        ("count the cups", QuestionKind.NUMBER),
        ("What colour is the car?", QuestionKind.LABEL),
        ("Who is standing on the left?", QuestionKind.LABEL),
        ("What does the sign say?", QuestionKind.TEXT),
        ("Why is the man smiling?", QuestionKind.TEXT),
        ("Describe the scene.", QuestionKind.TEXT),
        ("", QuestionKind.TEXT),
        ("How tall is the tower?", QuestionKind.NUMBER),
        ("Please tell me the number of dogs", QuestionKind.NUMBER),
        ("Is the number of cats larger than two?", QuestionKind.YESNO),
        ("What is written on the mug?", QuestionKind.TEXT),
        ("Please read the label", QuestionKind.TEXT),
    ],
)
def test_question_kind(question: str, kind: QuestionKind) -> None:
    assert question_kind(question) is kind


@pytest.mark.parametrize(
    ("question", "count"),
    [
        ("How many people are in the image?", True),
        ("Please, how many cups are there?", True),
        ("count the cups", True),
        ("What is the number of cars?", True),
        ("How tall is the tower?", False),
        ("How far is the boat?", False),
        ("How old is the man?", False),
        ("Is it daytime?", False),
        ("What is the count of dogs?", True),
        ("What is the total number of cars?", True),
        ("Please tell me the number of dogs", True),
        ("Is the number of cats larger than two?", False),
        ("What is the total price?", False),
        ("How much does it cost?", False),
        ("", False),
    ],
)
def test_a_count_is_asked_for_a_whole_number(question: str, count: bool) -> None:
    assert asks_count(question) is count


@pytest.mark.parametrize("text", ["Blur the faces", "A picture of a dog", "", "  ?  "])
def test_wording_that_asks_nothing_has_no_kind(text: str) -> None:
    assert asked_kind(text) is None
    assert question_kind(text) is QuestionKind.TEXT


def test_short_answers_take_the_number_only_for_counting_questions() -> None:
    assert short_answer("There are 3 boats.", "How many boats are there?") == "3"
    assert short_answer("There are 3 boats.", "What is in the water?") == "There are 3 boats"
    assert short_answer("Yes, it is.", "Is it daytime?") == "yes"


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("12345678901234567890123", 12345678901234567890123),  # every digit kept
        ("-98765432109876543210", -98765432109876543210),
        ("1,000,000,000,000,000,001", 1_000_000_000_000_000_001),
        ("007", 7),
        ("3.5", 3.5),
        ("1e3", 1000.0),
        ("1e999", None),  # not finite: not a number answer
        ("two", 2),
    ],
)
def test_as_number_keeps_whole_numbers_exact(text: str, number: float | None) -> None:
    value = as_number(text)
    assert value == number and type(value) is type(number)
