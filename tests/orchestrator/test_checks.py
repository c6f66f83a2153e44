"""Each check on its own, on typed step records."""

from __future__ import annotations

from orchestrator.answer_kind import AnswerKind
from orchestrator.checks import Check, Issue, run_checks
from orchestrator.config import AgentChecks
from sandbox import VisChainError
from tests.orchestrator.test_observation import FACES, record
from tools.errors import ToolErrorCode
from tools.types import Box, Object, ObjectList

ALL = AgentChecks()


def checks(steps, output=None, error=None, expected=AnswerKind.ANY, config=ALL) -> list[str]:
    found = run_checks(steps, output=output, error=error, expected=expected, config=config)
    return [str(i.check) for i in found]


def test_a_clean_round_has_no_findings() -> None:
    steps = [record("OBJ0", 1, "FaceDet", FACES), record("N", 2, "Count", 2, deps=["OBJ0"])]
    assert checks(steps, output=2, expected=AnswerKind.NUMBER) == []


def test_runtime_error() -> None:
    error = VisChainError("empty box", code=ToolErrorCode.TOOL_ERROR, line=2, step="IMAGE0")
    found = run_checks([], output=None, error=error, expected=AnswerKind.ANY, config=ALL)
    assert [i.check for i in found] == [Check.RUNTIME_ERROR]
    assert found[0].message == "[tool-error] (line 2, step IMAGE0) empty box"
    assert found[0].step == "IMAGE0"
    off = AgentChecks(runtime_error=False)
    assert checks([], error=error, config=off) == []


def test_empty_detection_counts_only_when_used_later() -> None:
    empty = record("BOX0", 1, "Loc", ObjectList(()))
    used = [empty, record("IMAGE0", 2, "Crop", None, deps=["BOX0"])]
    assert checks(used) == ["empty-detection"]
    assert checks([empty]) == []  # nothing depended on it
    assert checks(used, config=AgentChecks(empty_detection=False)) == []


def test_low_confidence_per_tool() -> None:
    weak = ObjectList((Object(Box(0, 0, 5, 5), label="dog", score=0.05),))
    steps = [record("BOX0", 1, "Loc", weak)]
    assert checks(steps) == ["low-confidence"]  # Loc's default threshold is 0.1
    assert checks(steps, config=AgentChecks(low_confidence={"Loc": 0.01})) == []
    assert checks([record("BOX0", 1, "Crop", weak)]) == []  # no threshold for Crop


def test_unsure_vlm_answers() -> None:
    steps = [record("ANSWER0", 1, "Vqa", "unclear")]
    assert checks(steps, output="unclear") == ["unsure-answer"]
    assert checks([record("ANSWER0", 1, "Vqa", "red")], output="red") == []
    assert checks([record("X", 1, "Eval", "unknown")]) == []  # only the configured tools


def test_answer_kind_is_checked_against_the_result() -> None:
    assert checks([], output=3, expected=AnswerKind.YESNO) == ["answer-kind"]
    assert checks([], output="yes", expected=AnswerKind.YESNO) == []
    assert checks([], output="beagle", expected=AnswerKind.LABEL) == []
    off = AgentChecks(answer_kind=False)
    assert checks([], output=3, expected=AnswerKind.YESNO, config=off) == []


def test_an_empty_detection_only_counted_on_a_count_question_is_the_answer() -> None:
    empty = record("BOX0", 1, "Loc", ObjectList(()))
    counted = [empty, record("N0", 2, "Count", 0, deps=["BOX0"])]
    assert checks(counted, output=0, expected=AnswerKind.NUMBER) == []
    assert checks(counted, output="no", expected=AnswerKind.YESNO) == []
    # not when the instruction asks for something else, nor with checks.empty_counts
    assert checks(counted, output=0, expected=AnswerKind.IMAGE) == [
        "empty-detection",
        "answer-kind",
    ]
    on = AgentChecks(empty_counts=True)
    assert checks(counted, output=0, expected=AnswerKind.NUMBER, config=on) == ["empty-detection"]
    # a user that does more than count it (a crop) makes it a finding
    cropped = [*counted, record("IMAGE0", 3, "Crop", None, deps=["BOX0"])]
    assert checks(cropped, output=0, expected=AnswerKind.NUMBER) == ["empty-detection"]


def test_findings_repeat_under_other_names() -> None:
    """The signature leaves out the program's names and lines: a re-phrased program that
    fails the same way repeats the finding."""
    a = [record("BOX0", 1, "Loc", ObjectList(())), record("IMAGE0", 2, "Crop", None, deps=["BOX0"])]
    b = [record("BOX5", 3, "Loc", ObjectList(())), record("IMAGE5", 4, "Crop", None, deps=["BOX5"])]
    found_a = run_checks(a, output=None, error=None, expected=AnswerKind.ANY, config=ALL)
    found_b = run_checks(b, output=None, error=None, expected=AnswerKind.ANY, config=ALL)
    assert found_a[0].message != found_b[0].message
    assert found_a[0].signature == found_b[0].signature == ("empty-detection", "Loc")
    assert Issue.from_dict(found_a[0].to_dict()) == found_a[0]


def test_the_answer_kind_finding_names_computed_values_of_the_kind_asked_for() -> None:
    from PIL import Image as PILImage

    from tools.types import Image

    picture = Image(PILImage.new("RGB", (8, 8)))
    values = {"OBJ0": ObjectList(()), "N0": 2, "A0": "yes", "IMAGE0": picture}
    [found] = run_checks([], output=picture, error=None, expected=AnswerKind.NUMBER, config=ALL,
                         values=values)  # fmt: skip
    assert found.fits == ("N0",)
    assert found.message.endswith("already computed and of that kind: N0 = 2")
    assert found.signature == ("answer-kind", "number<-image")
    [found] = run_checks([], output=picture, error=None, expected=AnswerKind.YESNO, config=ALL,
                         values=values)  # fmt: skip
    assert found.fits == ("A0",)


def test_a_vlms_reply_to_a_question_of_the_kind_asked_is_not_the_programs_fault() -> None:
    """'Is the horse running?' asked of Vqa, which replied 'galloping': the program asked
    the right kind of question; a re-planned program would ask the same."""
    from orchestrator.trace import ArgRecord

    asked = record("ANSWER0", 1, "Vqa", "galloping")
    asked.args = [
        ArgRecord("image", "image 8×8", "IMAGE"),
        ArgRecord("question", "Is the horse running?"),
    ]
    assert checks([asked], output="galloping", expected=AnswerKind.YESNO) == []
    other = record("ANSWER0", 1, "Vqa", "galloping")
    other.args = [ArgRecord("question", "What is the horse doing?")]
    assert checks([other], output="galloping", expected=AnswerKind.YESNO) == ["answer-kind"]
    told = record("X", 1, "Eval", "galloping")  # not an answering model's reply
    told.args = [ArgRecord("question", "Is the horse running?")]
    assert checks([told], output="galloping", expected=AnswerKind.YESNO) == ["answer-kind"]


def test_the_answer_kind_finding_names_the_model_replies_that_are_not_of_the_kind() -> None:
    """Two Vqa replies to 'How many wheels...?' that are not numbers, added by an Eval into
    text: the finding says that the model's answers were not numbers, and which; a reply
    that is a number, or one the result was not computed from, is not named."""
    from orchestrator.trace import ArgRecord

    def asked(step: str, line: int, reply: str, question: str):
        rec = record(step, line, "Vqa", reply)
        rec.args = [ArgRecord("image", "image 8×8", "IMAGE"), ArgRecord("question", question)]
        return rec

    count = "How many wheels are in the image?"
    steps = [
        asked("ANSWER0", 1, "ca nex", count),
        asked("ANSWER1", 2, "3", count),
        asked("ANSWER2", 3, "assq usy", count),
        asked("ANSWER3", 4, "zz top", count),  # nothing reads it
        record("ANSWER4", 5, "Eval", "ca nex3assq usy", deps=["ANSWER0", "ANSWER1", "ANSWER2"]),
        record("RESULT", 6, None, "ca nex3assq usy", deps=["ANSWER4"]),
    ]
    [found] = run_checks(steps, output="ca nex3assq usy", error=None,
                         expected=AnswerKind.NUMBER, config=ALL)  # fmt: skip
    assert found.check is Check.ANSWER_KIND
    assert found.message == (
        "the instruction asks for a number but the result is a text answer; "
        f"Vqa's reply to '{count}' (ANSWER0) is not a number: 'ca nex' (the model's answer, "
        f"not the program's); Vqa's reply to '{count}' (ANSWER2) is not a number: "
        "'assq usy' (the model's answer, not the program's)"
    )
    assert found.signature == ("answer-kind", "number<-text")  # repeats as before
    told = [asked("ANSWER0", 1, "ca nex", "What is in the image?"), steps[-1]]
    told[-1].deps = ["ANSWER0"]
    [plain] = run_checks(told, output="ca nex3assq usy", error=None,
                         expected=AnswerKind.NUMBER, config=ALL)  # fmt: skip
    assert plain.message == "the instruction asks for a number but the result is a text answer"


def test_tool_fit_reads_the_step_records() -> None:
    """A detection the instruction does not name, that nothing later is told about either
    (FaceDet → Count for "how many wheels?"), is a finding; only with what is named."""
    from orchestrator.tool_fit import named
    from orchestrator.trace import ArgRecord

    steps = [record("OBJ0", 1, "FaceDet", FACES), record("N", 2, "Count", 2, deps=["OBJ0"])]
    about = named("How many wheels are in the photo?")
    found = run_checks(steps, output=2, error=None, expected=AnswerKind.NUMBER, config=ALL,
                       about=about, names=["wheels"])  # fmt: skip
    assert [str(i.check) for i in found] == ["tool-fit"]
    assert found[0].step == "OBJ0" and found[0].key == "FaceDet" and "(wheels)" in found[0].message
    off = AgentChecks(tool_fit=False)
    assert run_checks(steps, output=2, error=None, expected=AnswerKind.NUMBER, config=off,
                      about=about) == []  # fmt: skip
    assert checks(steps, output=2, expected=AnswerKind.NUMBER) == []  # nothing named: not judged
    # a query is read from the step's arguments (a constant, not another step's value)
    loc = record("BOX0", 1, "Loc", FACES)
    loc.args = [ArgRecord("image", "IMAGE: image 64x64", "IMAGE"), ArgRecord("object", "wheel")]
    kept = [loc, record("N", 2, "Count", 2, deps=["BOX0"])]
    assert run_checks(kept, output=2, error=None, expected=AnswerKind.NUMBER, config=ALL,
                      about=about) == []  # fmt: skip
    loc.args[1] = ArgRecord("object", "face")
    assert [str(i.check) for i in run_checks(kept, output=2, error=None,
            expected=AnswerKind.NUMBER, config=ALL, about=about)] == ["tool-fit"]  # fmt: skip
    assert run_checks(kept, output=2, error=None, expected=AnswerKind.NUMBER, config=ALL,
                      about=about, queries=False) == []  # fmt: skip
