"""The answer kind an instruction asks for, and whether a result fits it."""

from __future__ import annotations

import pytest
from PIL import Image as PILImage

from orchestrator.answer_kind import (
    AnswerKind,
    describe,
    example_kind,
    fits,
    is_unsure,
    kind_by_rules,
    kind_grammar,
    kind_of_type,
    kind_of_value,
    kind_prompt,
    matches,
    parse_kind,
)
from orchestrator.grammar import accepts
from tools.types import Box, Image, Object, ObjectList

K = AnswerKind


@pytest.mark.parametrize(
    ("instruction", "kind"),
    [
        ("How many people are in the boat?", K.NUMBER),
        ("Count the cups on the table", K.NUMBER),
        ("Is the man wearing a hat?", K.YESNO),
        ("Does the sign say stop?", K.YESNO),
        ("Is the dog a beagle or a poodle?", K.LABEL),  # either-or: a breed, not yes/no
        ("Is the cat asleep or not?", K.YESNO),
        ("What does the sign above the door say?", K.TEXT),
        ("What colour is the car?", K.LABEL),
        ("Which animal is on the left?", K.LABEL),
        ("Tag the 7 main characters on the TV show Big Bang Theory", K.IMAGE),
        ("Blur the faces in the crowd", K.IMAGE),
        ("Please replace the sky with a sunset", K.IMAGE),
        ("Keep the bus in colour and make the rest grey", K.IMAGE),
        ("Find every car in the street", K.OBJECTS),
        ("Describe the scene", K.TEXT),
        ("Is the number of cats larger than two?", K.YESNO),
        ("Show the number of cars", K.NUMBER),
        ("Please read the label on the bottle", K.TEXT),
        ("Blur the faces?", None),  # a question about an edit says nothing reliable
        ("A picture of a dog", None),
        ("", None),
    ],
)
def test_rules_read_the_form_of_the_instruction(instruction: str, kind: AnswerKind | None) -> None:
    assert kind_by_rules(instruction) == kind


def test_the_llm_prompt_grammar_and_parsing() -> None:
    prompt = kind_prompt("Which breed is this dog?")
    assert prompt.endswith("Instruction: Which breed is this dog?\nKind:")
    grammar = kind_grammar()
    assert accepts(grammar, " label\n") and accepts(grammar, "yesno")
    assert not accepts(grammar, "maybe") and not accepts(grammar, "label label")
    assert parse_kind(" label\n") is K.LABEL
    assert parse_kind("Number.") is K.NUMBER
    assert parse_kind("no idea") is K.ANY and parse_kind("") is K.ANY


def test_kind_of_values_and_what_fits() -> None:
    image = Image(PILImage.new("RGB", (4, 4)))
    objs = ObjectList((Object(Box(0, 0, 1, 1)),))
    assert kind_of_value(True) is K.YESNO and kind_of_value("yes") is K.YESNO
    assert kind_of_value(3) is K.NUMBER and kind_of_value("2.5") is K.NUMBER
    assert kind_of_value("a red bus") is K.TEXT and kind_of_value(["a", "b"]) is K.TEXT
    assert kind_of_value(image) is K.IMAGE and kind_of_value(objs) is K.OBJECTS
    assert kind_of_value(None) is K.ANY
    assert fits(K.YESNO, K.YESNO) and not fits(K.YESNO, K.NUMBER) and not fits(K.YESNO, K.IMAGE)
    assert fits(K.LABEL, K.TEXT) and not fits(K.LABEL, K.YESNO)  # either-or wants a name
    assert fits(K.TEXT, K.NUMBER) and not fits(K.TEXT, K.IMAGE)  # reading text, not erasing it
    assert fits(K.IMAGE, K.IMAGE) and not fits(K.IMAGE, K.TEXT)
    assert not fits(K.IMAGE, K.OBJECTS)  # the faces found are not the emoji put on them
    assert fits(K.OBJECTS, K.IMAGE) and fits(K.ANY, K.IMAGE) and fits(K.NUMBER, K.ANY)


def test_unsure_answers() -> None:
    phrases = ["unknown", "unclear", "cannot tell", "i don't know"]
    assert is_unsure("Unknown.", phrases) and is_unsure("It is unclear", phrases)
    assert is_unsure("I don't know", phrases) and is_unsure("  ", phrases)
    assert not is_unsure("red", phrases) and not is_unsure("a known landmark", phrases)


def test_an_examples_kind_comes_from_its_result_type_else_its_wording() -> None:
    assert kind_of_type("Image") is K.IMAGE and kind_of_type("ObjectList") is K.OBJECTS
    assert kind_of_type("Text") is K.TEXT and kind_of_type("Any") is K.ANY
    assert kind_of_type(None) is K.ANY
    assert example_kind("Image", "Is the dog tagged?") is K.IMAGE  # the type wins
    assert example_kind("Any", "Is there a dog?") is K.YESNO  # an Eval: the wording says
    assert example_kind("Text", "What colour is the car?") is K.LABEL
    assert example_kind("Any", "The dog and the cat") is K.ANY
    assert matches(K.TEXT, K.LABEL) and matches(K.YESNO, K.YESNO)
    assert not matches(K.TEXT, K.NUMBER) and not matches(K.OBJECTS, K.IMAGE)
    assert not matches(K.ANY, K.ANY) and describe(K.NUMBER) == "a number"
