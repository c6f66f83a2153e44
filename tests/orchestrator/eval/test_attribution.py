"""Attribution of wrong answers: planning, the program (answer kind), the first implausible
step (error, empty detection, type mismatch), else the step that gave the answer."""

from __future__ import annotations

from typing import Any

import pytest
from PIL import Image as PILImage

from orchestrator.eval.attribution import Culprit, attribute, expected_kind
from orchestrator.trace import StepRecord, Trace
from tools import default_registry
from tools.errors import ImageLoadError
from tools.types import Box, Image, Object, ObjectList

REGISTRY = default_registry(plugins=False)


def step(trace: Trace, name: str, tool: str, value: Any = None, **fields: Any) -> StepRecord:
    from orchestrator.render import summarize

    rec = trace.add_step(StepRecord(step=name, index=0, line=len(trace.steps) + 1,
                                    text=f"{name}={tool}(...)", tool=tool, **fields))  # fmt: skip
    if "status" not in fields:
        rec.status = "ok"
        rec.value = value
        rec.output = summarize(value)
    return rec


def faces(n: int) -> ObjectList:
    return ObjectList(tuple(Object(Box(i, i, i + 5, i + 5), label="face") for i in range(n)))


def test_no_program_is_planning() -> None:
    trace = Trace(instruction="How many?")
    trace.finish(error=ValueError("the planner wrote nothing valid"))
    found = attribute(trace, instruction="How many?", output=None, ok=False)
    assert found.culprit is Culprit.PLANNING and "nothing valid" in found.reason


def test_an_unusable_input_is_the_input_not_planning() -> None:
    trace = Trace(instruction="How many?")
    trace.finish(error=ImageLoadError("image file not found: x.jpg"))
    found = attribute(trace, instruction="How many?", output=None, ok=False)
    assert found.culprit is Culprit.INPUT and "x.jpg" in found.reason


def test_a_result_of_the_wrong_kind_is_the_program() -> None:
    trace = Trace(program="...")
    image = Image(PILImage.new("RGB", (8, 8)))
    step(trace, "IMAGE0", "BgBlur", image)
    found = attribute(trace, instruction="How many faces are there?", output=image, ok=True)
    assert found.culprit is Culprit.PROGRAM and "number" in found.reason


def test_the_first_implausible_step_is_blamed() -> None:
    trace = Trace(program="...")
    step(trace, "OBJ0", "FaceDet", faces(0))
    step(trace, "N", "Count", 0)
    step(trace, "X", "Vqa", status="error", error={"message": "no vlm"})
    found = attribute(trace, instruction="How many faces?", output=0, ok=True, registry=REGISTRY)
    assert (found.culprit, found.step, found.tool) == (Culprit.EMPTY, "OBJ0", "FaceDet")


def test_a_failed_step_is_an_error() -> None:
    trace = Trace(program="...")
    step(trace, "OBJ0", "FaceDet", faces(2))
    step(trace, "A", "Vqa", status="error", error={"message": "no 'vlm' model"})
    trace.finish(error=ValueError("no 'vlm' model"))
    found = attribute(trace, instruction="What is it?", output=None, ok=False, registry=REGISTRY)
    assert (found.culprit, found.tool) == (Culprit.ERROR, "Vqa") and "vlm" in found.reason


def test_a_value_of_the_wrong_type_is_a_type_mismatch() -> None:
    trace = Trace(program="...")
    step(trace, "N", "Count", faces(2))  # Count declares Number
    found = attribute(trace, instruction="Find the faces", output=faces(2), ok=True,
                      registry=REGISTRY)  # fmt: skip
    assert (found.culprit, found.tool) == (Culprit.TYPE, "Count") and "Number" in found.reason


def test_plausible_steps_blame_the_step_that_answered() -> None:
    trace = Trace(program="...")
    step(trace, "OBJ0", "FaceDet", faces(2))
    step(trace, "N", "Count", 2)
    found = attribute(trace, instruction="How many faces?", output=2, ok=True, registry=REGISTRY)
    assert (found.culprit, found.step, found.tool) == (Culprit.ANSWER, "N", "Count")


@pytest.mark.parametrize(
    ("instruction", "kind", "expected"),
    [("How many dogs?", None, "number"), ("Is it red?", None, "yesno"),
     ("Find the man in red", "objects", "objects"), ("Hmm", None, None), ("q", "bogus", None)],
)  # fmt: skip
def test_expected_kind_from_the_item_or_the_wording(
    instruction: str, kind: str | None, expected: str | None
) -> None:
    got = expected_kind(instruction, kind)
    assert (None if got is None else str(got)) == expected


def _round(index: int, kind: str, issues: list[dict[str, Any]], accepted: bool = False) -> dict:
    return {"index": index, "kind": kind, "issues": issues, "accepted": accepted}


def test_a_run_stopped_at_the_agents_limit_is_blamed_on_its_own_findings() -> None:
    """Not a generic 'error': what the agent's checks still found on the returned round."""
    from orchestrator.agent import AgentLimitError

    image = Image(PILImage.new("RGB", (8, 8)))
    trace = Trace(program="...")
    trace.round = 1
    step(trace, "TEXT0", "Ocr", faces(1))
    step(trace, "IMAGE0", "Tag", image)
    kind = {"check": "answer-kind", "message": "asks for a text answer but the result is an image"}
    trace.rounds = [_round(1, "plan", [kind], accepted=True)]
    trace.finish(error=AgentLimitError("max_rounds (3) was reached"))
    found = attribute(trace, instruction="What does the sign say?", output=image, ok=False)
    assert found.culprit is Culprit.PROGRAM and found.reason.startswith("answer-kind: asks for")

    trace = Trace(program="...")
    trace.round = 1
    step(trace, "OBJ0", "FaceDet", faces(0))
    step(trace, "IMAGE0", "Crop", image)
    empty = {"check": "empty-detection", "message": "FaceDet found nothing", "step": "OBJ0"}
    trace.rounds = [_round(1, "plan", [empty], accepted=True)]
    trace.finish(error=AgentLimitError("the same problems came back"))
    found = attribute(trace, instruction="Crop the face", output=image, ok=False)
    assert (found.culprit, found.step, found.tool) == (Culprit.EMPTY, "OBJ0", "FaceDet")


def test_only_the_steps_behind_the_returned_round_count() -> None:
    """Round 1 found nothing, round 3 (a rewrite) answered: round 1's empty detection is
    not the culprit of round 3's wrong answer."""
    trace = Trace(program="...")
    for index, n in ((1, 0), (2, 0), (3, 2)):
        trace.round = index
        step(trace, f"OBJ{index}", "FaceDet", faces(n))
        step(trace, f"N{index}", "Count", n)
    empty = [{"check": "empty-detection", "message": "...", "step": "OBJ1"}]
    trace.rounds = [_round(1, "plan", empty), _round(2, "continue", empty),
                    _round(3, "rewrite", [], accepted=True)]  # fmt: skip
    found = attribute(trace, instruction="How many faces?", output=2, ok=True, registry=REGISTRY)
    assert (found.culprit, found.step) == (Culprit.ANSWER, "N3")
    trace.rounds = [_round(1, "plan", empty), _round(2, "continue", empty, accepted=True)]
    found = attribute(trace, instruction="How many faces?", output=0, ok=True, registry=REGISTRY)
    assert (found.culprit, found.step) == (Culprit.EMPTY, "OBJ1")  # round 2 continued round 1
