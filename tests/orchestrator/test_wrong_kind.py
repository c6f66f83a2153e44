"""The kind of answer asked for, as an agent run's programs and decisions are told it: the
examples that show it, the check of a program's result type, the tools that give it, and
what a decision says of a result of the wrong kind."""

from __future__ import annotations

import pytest

from orchestrator.answer_kind import AnswerKind
from orchestrator.config import PlannerConfig
from orchestrator.follow_up_example import follow_up_example, wrong_kind_text
from orchestrator.forms import get_form
from orchestrator.planner import Planner
from orchestrator.wrong_kind import KindAsked
from programs import Example
from sandbox import ErrorCode
from tests.orchestrator.test_follow_up_example import FACES, LINES, REGISTRY, ran
from tests.support.scripted_llm import ScriptedLLM

EMOJI = Example(
    "edit",
    "Hide her face behind a smiley",
    "OBJ0=FaceDet(image=IMAGE)\n"
    "IMAGE0=Emoji(image=IMAGE, object=OBJ0, emoji='smiling_face')\nRESULT=IMAGE0",
    ("IMAGE",),
)
TAG = Example(
    "edit",
    "Tag the faces in the photo",
    "OBJ0=FaceDet(image=IMAGE)\nIMAGE0=Tag(image=IMAGE, object=OBJ0)\nRESULT=IMAGE0",
    ("IMAGE",),
)
CROP = Example(  # an image from the input alone: its last step reads no computed value
    "edit", "Crop the left half of the photo", "IMAGE0=CropLeft(image=IMAGE)\nRESULT=IMAGE0",
    ("IMAGE",),
)  # fmt: skip
COUNT = Example(
    "gqa",
    "How many faces are there?",
    "OBJ0=FaceDet(image=IMAGE)\nN0=Count(object=OBJ0)\nRESULT=N0",
    ("IMAGE",),
)
ASK = Example(  # a VLM's text: its kind is its wording's
    "gqa", "Is there a dog?", "A0=Vqa(image=IMAGE, question='Is there a dog?')\nRESULT=A0",
    ("IMAGE",),
)  # fmt: skip
FOUND = "OBJ5=Loc(image=PHOTO, object='face')\nRESULT=OBJ5"
COUNTED = LINES.parse(COUNT.program)


def asked(
    expected: AnswerKind,
    instruction: str = "Hide the cat's face behind a smiley",
    examples: tuple[Example, ...] = (EMOJI, TAG, CROP, COUNT, ASK),
) -> KindAsked:
    """The kind asked for, judged with a planner over the built-in tools and ``examples``
    (no embedding model: examples are ranked by word overlap; no LLM call is made)."""
    planner = Planner(REGISTRY, ScriptedLLM([]), PlannerConfig(), examples=list(examples))
    return KindAsked(planner, expected, instruction, "lines")


def test_an_example_shows_the_kind_by_its_result_type_else_its_wording() -> None:
    image = asked(AnswerKind.IMAGE)
    assert image.shows_kind(EMOJI) and image.shows_kind(TAG)
    assert not image.shows_kind(COUNT) and not image.shows_kind(ASK)
    yesno = asked(AnswerKind.YESNO, "Is there a cat?")
    assert yesno.shows_kind(ASK)  # a text result, asked as a yes/no question
    assert not yesno.shows_kind(COUNT) and not yesno.shows_kind(EMOJI)
    assert not asked(AnswerKind.ANY).shows_kind(EMOJI)  # nothing to show


def test_a_program_of_the_wrong_type_is_a_wrong_type_error_at_its_result_line() -> None:
    error = asked(AnswerKind.IMAGE).check_kind("Number", COUNTED)
    assert error is not None and error.code is ErrorCode.WRONG_TYPE
    assert (error.line, error.col, error.step) == (3, 1, "RESULT")
    assert error.message.startswith(
        "the result is a number (Number), but the instruction asks for an image: end the "
        "program with a value of that kind (tools that give one: Emoji, "
    )  # the nearest example of the kind ends with an Emoji
    tools = error.message.split("tools that give one: ")[1].rstrip(")").split(", ")
    assert len(tools) == 8  # the first eight
    tagged = asked(AnswerKind.IMAGE, "Tag the faces of the cats").check_kind("Number", COUNTED)
    assert tagged is not None and "(tools that give one: Tag, " in tagged.message
    # no tool gives a yes/no answer: none is named
    yesno = asked(AnswerKind.YESNO, "Is there a face?").check_kind("Number", COUNTED)
    assert yesno is not None and yesno.message == (
        "the result is a number (Number), but the instruction asks for a yes/no answer: "
        "end the program with a value of that kind"
    )
    # a result of a kind that answers: no error
    assert asked(AnswerKind.NUMBER).check_kind("Number", COUNTED) is None
    assert asked(AnswerKind.OBJECTS).check_kind("Image", COUNTED) is None


@pytest.mark.parametrize("kind", list(AnswerKind))
def test_a_text_result_is_accepted_except_for_an_image_or_objects(kind: AnswerKind) -> None:
    error = asked(kind).check_kind("Text", COUNTED)
    if kind in (AnswerKind.IMAGE, AnswerKind.OBJECTS):
        assert error is not None and error.code is ErrorCode.WRONG_TYPE
        assert error.message.startswith("the result is a text answer (Text)")
    else:
        assert error is None


def test_the_tools_that_give_the_kind_start_with_the_nearest_examples() -> None:
    """First the tools the most similar example of the kind calls, then those that take
    the program's type, then the rest, each group in the registry's order."""
    order = [t.spec.name for t in REGISTRY]
    images = {t.spec.name for t in REGISTRY if t.spec.output == "Image"}
    giving = asked(AnswerKind.IMAGE).giving("ObjectList")
    assert giving[0] == "Emoji" and set(giving) == images and len(giving) == len(images)
    readers = set(REGISTRY.taking("ObjectList", required=True))
    rest = giving[1:]
    split = next(i for i, n in enumerate(rest) if n not in readers)
    assert split > 0 and all(n in readers for n in rest[:split])
    assert not any(n in readers for n in rest[split:])
    for group in (rest[:split], rest[split:]):
        assert group == sorted(group, key=order.index)
    untyped = asked(AnswerKind.IMAGE).giving(None)
    assert untyped == ["Emoji", *sorted(images - {"Emoji"}, key=order.index)]
    # no example of the kind: the registry's order alone
    bare = asked(AnswerKind.IMAGE, examples=(COUNT,)).giving(None)
    assert bare == sorted(images, key=order.index)


PY_TAG = Example(  # the Python form's nearest example of an image: it crops, it does not tag
    "python",
    "Tag the faces in the photo",
    "def execute_command(image):\n    image_patch = ImagePatch(image)\n"
    "    return image_patch.crop(0, 0, 10, 10)\n",
    ("IMAGE",),
    form="python",
)


def test_the_tools_hint_comes_from_examples_of_the_programs_own_form(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Python program is told the tools the nearest *Python* example of the kind uses,
    whatever form the run was in when it was checked (the first round's is only known
    once the planner has written)."""
    kind = asked(AnswerKind.IMAGE, "Tag the faces in the photo", (EMOJI, TAG, PY_TAG))
    assert kind.form == "lines"
    consulted: list[str] = []
    nearest = kind.planner.nearest_example

    def spying(instruction: str, form: str, accept: object) -> object:
        consulted.append(form)
        return nearest(instruction, form, accept)  # type: ignore[arg-type]

    monkeypatch.setattr(kind.planner, "nearest_example", spying)
    python = get_form("python").parse(
        "def execute_command(image):\n    image_patch = ImagePatch(image)\n"
        "    return len(image_patch.find('face'))\n"
    )
    error = kind.check_kind("Number", python)
    assert error is not None and error.code == ErrorCode.WRONG_TYPE
    assert consulted == ["python"]
    assert "(tools that give one: Tag" not in error.message  # not the line example's Tag
    lines_error = kind.check_kind("ObjectList", LINES.parse(FOUND))
    assert consulted == ["python", "lines"]
    assert "(tools that give one: Tag" in lines_error.message


def test_the_wrong_kind_text_shows_the_nearest_example_and_its_follow_up() -> None:
    kind = asked(AnswerKind.IMAGE)
    result = ran(FOUND, OBJ5=FACES)
    text, shown = kind.wrong_kind_text(FOUND, result, "PHOTO")
    follow = ("OBJ5", ["IMAGE0=Emoji(image=PHOTO, object=OBJ5, emoji='smiling_face')",
                       "RESULT=IMAGE0"])  # fmt: skip
    assert shown and text == wrong_kind_text(AnswerKind.IMAGE, EMOJI, follow)
    # no result yet (or no program): the example alone, and no follow-up shown
    text, shown = kind.wrong_kind_text(FOUND, None, "PHOTO")
    assert not shown and text == wrong_kind_text(AnswerKind.IMAGE, EMOJI, None)
    text, shown = kind.wrong_kind_text("", result, "PHOTO")
    assert not shown and "A follow-up" not in text


def test_the_nearest_example_whose_last_step_can_follow_up_is_shown() -> None:
    """The nearest example of the kind crops the input (nothing of the round's objects):
    the nearest one whose last step reads them is shown instead; with none that can, the
    nearest of the kind, without a follow-up; with none of the kind, the kind alone."""
    instruction = "Crop the left half of the photo with the faces"
    result = ran(FOUND, OBJ5=FACES)
    text, shown = asked(AnswerKind.IMAGE, instruction).wrong_kind_text(FOUND, result, "PHOTO")
    assert shown and '"Crop the left half of the photo"' not in text
    assert "# A follow-up (CONTINUE) that ends with an image from OBJ5" in text
    only_crop = asked(AnswerKind.IMAGE, instruction, (CROP, COUNT))
    text, shown = only_crop.wrong_kind_text(FOUND, result, "PHOTO")
    assert not shown and text == wrong_kind_text(AnswerKind.IMAGE, CROP, None)
    none = asked(AnswerKind.IMAGE, instruction, (COUNT,))
    text, shown = none.wrong_kind_text(FOUND, result, "PHOTO")
    assert not shown and text == wrong_kind_text(AnswerKind.IMAGE, None, None)


def test_the_follow_up_example_reads_the_rounds_result_in_the_runs_form() -> None:
    kind = asked(AnswerKind.IMAGE)
    result = ran(FOUND, OBJ5=FACES)
    assert kind.follow_up_example(EMOJI.text, FOUND, result, "PHOTO") == follow_up_example(
        EMOJI.text, FOUND, result, form=LINES, registry=REGISTRY, first_input="PHOTO"
    )
    assert kind.follow_up_example(EMOJI.text, FOUND, result, "PHOTO") is not None
    assert kind.follow_up_example(EMOJI.text, FOUND, None, "PHOTO") is None
    assert kind.follow_up_example(EMOJI.text, None, result, "PHOTO") is None
    assert kind.follow_up_example(CROP.text, FOUND, result, "PHOTO") is None
