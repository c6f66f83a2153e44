"""The follow-up example a wrong-kind decision shows: the step a line program returns, an
example's last step rewritten to read the round's result, and the prompt text around it."""

from __future__ import annotations

from orchestrator import Trace
from orchestrator.answer_kind import AnswerKind
from orchestrator.api import RunResult
from orchestrator.follow_up_example import follow_up_example, result_step, wrong_kind_text
from orchestrator.forms import get_form
from programs import Example
from tools import ObjectList, default_registry
from tools.types import Box, Object

LINES = get_form("lines")
REGISTRY = default_registry(plugins=False)
FACES = ObjectList((Object(Box(1.0, 2.0, 9.0, 12.0), label="face", score=0.9),))
EMOJI = (
    "OBJ0=FaceDet(image=IMAGE)\n"
    "IMAGE0=Emoji(image=IMAGE, object=OBJ0, emoji='smiling_face')\n"
    "RESULT=IMAGE0"
)


def ran(program: str, **values: object) -> RunResult:
    """A round's result as the loop holds it: the program as parsed to run, its values."""
    return RunResult(None, LINES.parse(program), Trace(), values=dict(values))


def test_the_returned_step_is_found_through_result_aliases() -> None:
    assert result_step(LINES.parse("OBJ0=FaceDet(image=IMAGE)\nRESULT=OBJ0")) == "OBJ0"
    aliased = "OBJ0=FaceDet(image=IMAGE)\nX=OBJ0\nRESULT=X"
    assert result_step(LINES.parse(aliased)) == "OBJ0"
    # a result that is an input, or no line program at all: no step
    assert result_step(LINES.parse("OBJ0=FaceDet(image=IMAGE)\nRESULT=IMAGE")) is None
    assert result_step(object()) is None


def test_the_examples_last_step_reads_the_rounds_value_of_its_type() -> None:
    """The round found faces (OBJ5, from Loc); the example's Emoji step reads its own
    FaceDet's objects and its input: shown reading OBJ5 and the run's first input."""
    result = ran("OBJ5=Loc(image=PHOTO, object='face')\nRESULT=OBJ5", OBJ5=FACES)
    shown = follow_up_example(
        EMOJI, "unused", result, form=LINES, registry=REGISTRY, first_input="PHOTO"
    )
    assert shown == (
        "OBJ5",
        ["IMAGE0=Emoji(image=PHOTO, object=OBJ5, emoji='smiling_face')", "RESULT=IMAGE0"],
    )
    # the round's text is parsed when the result holds no parsed program
    text = "OBJ5=Loc(image=PHOTO, object='face')\nRESULT=OBJ5"
    unparsed = RunResult(None, None, Trace(), values={"OBJ5": FACES})
    assert (
        follow_up_example(EMOJI, text, unparsed, form=LINES, registry=REGISTRY, first_input="PHOTO")
        == shown
    )


def test_no_follow_up_when_the_example_step_reads_no_value_of_the_results_type() -> None:
    result = ran("OBJ0=FaceDet(image=IMAGE)\nRESULT=OBJ0", OBJ0=FACES)
    kwargs = {"form": LINES, "registry": REGISTRY, "first_input": "IMAGE"}
    # the step reads only inputs of the example: nothing of the round's result
    tag = "IMAGE0=Tag(image=IMAGE, object=OBJ0)\nRESULT=IMAGE0"
    assert follow_up_example(tag, "", result, **kwargs) is None
    # the step reads a value of another type (a count, not objects)
    counted = 'OBJ0=FaceDet(image=IMAGE)\nN0=Count(object=OBJ0)\nA0=Eval("{N0} > 1")\nRESULT=A0'
    assert follow_up_example(counted, "", result, **kwargs) is None
    # the round's value was not computed, or the example does not parse
    assert follow_up_example(EMOJI, "", ran("OBJ0=FaceDet(image=IMAGE)\nRESULT=OBJ0"),
                             **kwargs) is None  # fmt: skip
    assert follow_up_example("IMAGE0=Emoji(", "", result, **kwargs) is None


def test_the_wrong_kind_text_shows_the_example_and_its_follow_up() -> None:
    bare = wrong_kind_text(AnswerKind.IMAGE, None, None)
    assert "The program\n# must end with an image." in bare and "A program that" not in bare
    example = Example("editing", "Hide her face behind a smiley", EMOJI, ("IMAGE",))
    follow = ("OBJ5", ["IMAGE0=Emoji(image=PHOTO, object=OBJ5, emoji='smiling_face')",
                       "RESULT=IMAGE0"])  # fmt: skip
    text = wrong_kind_text(AnswerKind.IMAGE, example, follow)
    assert text.startswith(bare)
    assert '# A program that ends with an image, for "Hide her face behind a smiley":\n' in text
    assert "#   OBJ0=FaceDet(image=IMAGE)\n" in text
    assert text.endswith(
        "# A follow-up (CONTINUE) that ends with an image from OBJ5, as that program does:\n"
        "#   IMAGE0=Emoji(image=PHOTO, object=OBJ5, emoji='smiling_face')\n"
        "#   RESULT=IMAGE0\n"
    )
    assert "A follow-up" not in wrong_kind_text(AnswerKind.IMAGE, example, None)
