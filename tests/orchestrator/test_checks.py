"""Each check on its own, on typed step records."""

from __future__ import annotations

from orchestrator.answer_kind import AnswerKind
from orchestrator.checks import Check, run_checks
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
