"""Observations: typed step summaries from the trace records, within a token budget."""

from __future__ import annotations

from orchestrator.checks import Check, Issue
from orchestrator.observation import render, step_line, summary_text
from orchestrator.render import summarize
from orchestrator.trace import StepRecord, StepStatus
from tools.types import Box, Object, ObjectList


def record(
    step: str, line: int, tool: str | None, value=None, *, error=None, deps=()
) -> StepRecord:
    rec = StepRecord(step=step, index=line - 1, line=line, text=f"{step}=...", tool=tool,
                     deps=list(deps))  # fmt: skip
    if error is not None:
        rec.status, rec.error = StepStatus.ERROR, error
    else:
        rec.status, rec.output = StepStatus.OK, summarize(value)
    return rec


FACES = ObjectList((
    Object(Box(10, 20, 50, 60), label="face", score=0.991),
    Object(Box(70, 20, 110, 60), label="face", score=0.5),
))  # fmt: skip


def test_each_type_has_a_typed_summary_not_a_repr() -> None:
    assert summary_text(summarize(FACES), 5, 100) == (
        "2 object(s): face 0.99 [10,20,50,60], face 0.50 [70,20,110,60]"
    )
    assert summary_text(summarize(FACES), 0, 100) == "2 object(s)"
    assert summary_text(summarize(ObjectList(())), 5, 100) == "0 object(s)"
    assert summary_text(summarize(True), 5, 100) == "yes"
    assert summary_text(summarize(3), 5, 100) == "number 3"
    assert summary_text(summarize("STOP ahead"), 5, 100) == "text 'STOP ahead'"
    assert summary_text(summarize(["Sheldon", "Leonard", "Penny"]), 2, 100) == (
        "3 text(s): 'Sheldon', 'Leonard'"
    )
    from PIL import Image as PILImage

    from tools.types import Image

    assert summary_text(summarize(Image(PILImage.new("RGB", (64, 32)))), 5, 100) == "image 64×32"
    assert "object at" not in summary_text(summarize(FACES), 5, 100)  # never repr()


def test_step_lines_show_status_and_errors() -> None:
    ok = record("OBJ0", 1, "FaceDet", FACES)
    assert (
        step_line(ok, 1, 80)
        == "# OBJ0 (line 1, FaceDet): ok → 2 object(s): face 0.99 [10,20,50,60] …"
    )
    bad = record("IMAGE0", 2, "Crop", error={"code": "tool-error", "message": "empty box"})
    assert step_line(bad, 5, 80) == "# IMAGE0 (line 2, Crop): error [tool-error] empty box"


def test_observation_lists_steps_result_and_findings() -> None:
    steps = [record("OBJ0", 1, "FaceDet", FACES), record("N", 2, "Count", 2, deps=["OBJ0"])]
    issue = Issue(
        Check.ANSWER_KIND, "the instruction asks for a yes/no answer but the result is a number"
    )
    obs = render(steps, result="Number 2", issues=[issue], budget=500)
    lines = obs.text.splitlines()
    assert lines[1].startswith("# OBJ0 (line 1, FaceDet): ok → 2 object(s)")
    assert lines[2] == "# N (line 2, Count): ok → number 2"
    assert "# Result: Number 2" in lines
    assert lines[-1].startswith("# Check answer-kind: the instruction asks for a yes/no")
    assert obs.shown == obs.total == 2 and obs.tokens <= 500
    quiet = render(steps, result="Number 2", budget=500)
    assert quiet.text.splitlines()[-1] == "# Checks: none fired"


def test_the_budget_shrinks_detail_then_drops_middle_steps_but_keeps_failures() -> None:
    many = [record(f"OBJ{i}", i + 1, "FaceDet", FACES) for i in range(40)]
    many[20] = record("OBJ20", 21, "Crop", error={"code": "tool-error", "message": "boom"})
    words = lambda text: len(text.split())  # noqa: E731 - a token counter for the test
    full = render(many, result="x", budget=100_000, count_tokens=words)
    assert full.shown == 40 and "face 0.99" in full.text
    small = render(many, result="x", budget=150, count_tokens=words)
    assert small.tokens <= 150 and small.shown < 40 and small.total == 40
    assert "face 0.99" not in small.text  # detail went first
    assert "# OBJ20 (line 21, Crop): error [tool-error] boom" in small.text  # failures stay
    assert "step(s) left out" in small.text
    assert small.text.splitlines()[1].startswith("# OBJ0 ") and "# OBJ39 " in small.text


def test_variables_for_python_follow_ups() -> None:
    obs = render([], result="Number 0", variables={"dogs": summarize(ObjectList(()))}, budget=200)
    assert "# Variables: dogs = 0 object(s)" in obs.text
