"""``execute``: the user's seed programs, inputs, errors and results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from orchestrator import Orchestrator
from sandbox import ErrorCode, ProgramInvalid
from tools.convert import to_image
from tools.errors import ToolErrorCode

NLVR = """\
ANSWER0=Vqa(image=LEFT, question='How many people are in the image?')
ANSWER1=Vqa(image=RIGHT, question='How many people are in the image?')
ANSWER2=Vqa(image=LEFT, question='How many boats are in the image?')
ANSWER3=Vqa(image=RIGHT, question='How many boats are in the image?')
ANSWER4=Eval('{ANSWER0} + {ANSWER1} == 6 and {ANSWER2} + {ANSWER3} == 2')
RESULT=ANSWER4
"""
TAGGING = """\
OBJ0=FaceDet(image=IMAGE)
LIST0=List(query='main characters on the TV show Big Bang Theory', max=7)
OBJ1=Classify(image=IMAGE, object=OBJ0, categories=LIST0)
IMAGE0=Tag(image=IMAGE, object=OBJ1)
RESULT=IMAGE0
"""
EDITING = """\
OBJ0=Seg(image=IMAGE)
OBJ1=Select(image=IMAGE, object=OBJ0, query='desert', category=None)
IMAGE0=Replace(image=IMAGE, object=OBJ1, prompt='lush green grass')
RESULT=IMAGE0
"""
PYTHONISH = """\
boat_box = LOC(image, "boat")
boat_crop = CROP(image, boat_box)
people = DETECT(boat_crop, "person")
count = COUNT(people)
answer = EVAL(count == 3)
"""
SEEDS = {"nlvr": (NLVR, ["LEFT", "RIGHT"]), "tagging": (TAGGING, ["IMAGE"]),
         "editing": (EDITING, ["IMAGE"]), "pythonish": (PYTHONISH, ["image"])}  # fmt: skip


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_every_seed_program_checks(offline: Orchestrator, name: str) -> None:
    text, inputs = SEEDS[name]
    bound = offline.check(text, inputs=inputs)
    assert bound.result is not None and len(bound.steps) >= 4
    assert offline.check(text).inputs.keys() == set(inputs)  # inferred when not given


def test_a_list_of_objects_an_eval_kept_is_an_object_list(offline: Orchestrator) -> None:
    program = (
        "OBJ0=FaceDet(image=IMAGE)\n"
        "KEPT=Eval('[o for o in {OBJ0} if o.score > 0]')\nN=Count(object=KEPT)\n"
        "NONE=Eval('[o for o in {OBJ0} if o.score > 2]')\nZ=Count(object=NONE)\n"
        "RESULT=Eval('{N} * 10 + {Z}')\n"
    )
    result = offline.execute(program, image="sample:astronaut")  # one face
    assert result.ok and result.output == 10, result.error


def test_model_tools_without_models_fail_with_a_clear_no_backend_error(
    offline: Orchestrator,
) -> None:
    img = to_image("sample:coffee")
    result = offline.execute(NLVR, images={"LEFT": img, "RIGHT": img})
    assert not result.ok
    assert result.error.code == ToolErrorCode.NO_BACKEND
    assert result.error.line == 1 and result.error.step == "ANSWER0"
    assert "vlm" in result.error.message
    statuses = {s.step: s.status for s in result.trace.steps}
    assert statuses["ANSWER4"] == "skipped" and statuses["RESULT"] == "skipped"


def test_a_runnable_program_and_image_inputs_of_every_kind(
    offline: Orchestrator, photo: Path
) -> None:
    program = "OBJ0=Loc(image=IMAGE, object='LEFT')\nIMAGE0=Crop(image=IMAGE, box=OBJ0)\nN=Count(object=OBJ0)\nRESULT=Eval('{N} == 1')"
    pil = to_image(photo).pil
    for image in (photo, str(photo), pil, np.asarray(pil), photo.read_bytes(), "sample:astronaut"):
        result = offline.execute(program, image=image)
        assert result.ok, result.error
        assert result.output is True and result.answer == "yes"
        assert result.values["IMAGE0"].size == (256, 512)


def test_lowercase_program_names_bind_to_the_given_image(offline: Orchestrator) -> None:
    result = offline.execute(
        "half = LOC(image, 'TOP')\nc = CROP(image, half)", image="sample:coffee"
    )
    assert result.ok and result.output.size[1] == 200


def test_bad_inputs_are_typed_errors(offline: Orchestrator, tmp_path: Path) -> None:
    missing = offline.execute("A=Crop(image=IMAGE, box=[0,0,5,5])", image=tmp_path / "nope.jpg")
    assert missing.error.code == ToolErrorCode.BAD_INPUT and "not found" in missing.error.message
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    bad = offline.execute("A=Crop(image=IMAGE, box=[0,0,5,5])", image=corrupt)
    assert bad.error.code == ToolErrorCode.BAD_INPUT
    unknown = offline.execute("A=Crop(image=PHOTO, box=[0,0,5,5])", image="sample:coffee")
    assert isinstance(unknown.error, ProgramInvalid)
    assert unknown.error.errors[0].code == ErrorCode.UNDEFINED_NAME


def test_invalid_programs_report_every_error(offline: Orchestrator) -> None:
    result = offline.execute(
        "A=Lco(image=IMAGE, object='x')\nB=Crop(image=IMAGE, bx=A)", image="sample:coffee"
    )
    assert isinstance(result.error, ProgramInvalid)
    assert [e.code for e in result.error.errors] == [
        ErrorCode.UNKNOWN_TOOL,
        ErrorCode.UNKNOWN_ARGUMENT,
        ErrorCode.MISSING_ARGUMENT,
    ]
    assert "did you mean 'Loc'" in result.error.errors[0].message


def test_failure_keeps_finished_steps(offline: Orchestrator) -> None:
    program = "A=Loc(image=IMAGE, object='TOP')\nB=Crop(image=IMAGE, box=A)\nC=Vqa(image=B, question='what?')\nD=Count(object=A)"
    result = offline.execute(program, image="sample:coffee")
    assert result.ok and result.output == 1  # the result (D) does not depend on the failure
    assert result.step_errors["C"].code == ToolErrorCode.NO_BACKEND
    failed = offline.execute(program + "\nRESULT=C", image="sample:coffee")
    assert failed.error.code == ToolErrorCode.NO_BACKEND and failed.error.step == "C"
    assert failed.values["B"].size == (600, 200) and failed.values["D"] == 1


def test_result_and_final_result_and_last_step(offline: Orchestrator) -> None:
    assert offline.execute("A=Eval('1')\nB=Eval('2')").output == 2
    assert offline.execute("RESULT=Eval('1')\nB=Eval('2')").output == 1
    assert offline.execute("A=Eval('1')\nFINAL_RESULT=Result(var=A)\nB=Eval('3')").output == 1


# --- execute never raises; map always reports ---------------------------------------------


def test_execute_after_close_is_a_typed_error(tmp_path: Path) -> None:
    from orchestrator import Config
    from orchestrator.api import OrchestratorClosed

    orch = Orchestrator(Config(models={"profile": "offline", "cache_dir": tmp_path}, plugins=False))
    orch.close()
    result = orch.execute("A=Eval('1 + 1')")
    assert isinstance(result.error, OrchestratorClosed) and "closed" in str(result.error)


def test_images_given_as_a_list_is_a_typed_error(offline: Orchestrator) -> None:
    img = to_image("sample:coffee")
    result = offline.execute("A=Eval('1')", images=[img, img])  # type: ignore[arg-type]
    assert result.error is not None and result.error.code == ToolErrorCode.BAD_INPUT
    assert "images= takes a dict" in str(result.error)


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda: __import__("torch").empty(3, 8, 8, device="meta"), "meta tensor"),
        (
            lambda: __import__("torch").nested.nested_tensor(
                [__import__("torch").zeros(3, 4, 4), __import__("torch").zeros(3, 5, 5)]
            ),
            "nested tensor",
        ),
        (lambda: object(), "IMAGE: cannot use an object as an image"),
        (lambda: [0, 1], "IMAGE[0]: cannot use an int as an image"),  # a video's frame
    ],
)
def test_unusable_images_are_typed_errors(offline: Orchestrator, make, says: str) -> None:
    result = offline.execute("A=Eval('1')", image=make())
    assert result.error is not None and result.error.code == ToolErrorCode.BAD_INPUT
    assert says in str(result.error)


def test_a_lone_surrogate_in_a_value_keeps_the_answer_and_its_trace(
    offline: Orchestrator, tmp_path: Path
) -> None:
    result = offline.execute(
        "A=Eval('{S} + \"!\"')\nRESULT=A", values={"S": "a\ud800b"}, trace_dir=tmp_path
    )
    assert result.ok and result.output == "a\ud800b!"
    assert "a\\ud800b!" in (tmp_path / "index.html").read_text(encoding="utf-8")


def test_a_trace_that_cannot_be_saved_keeps_the_answer(
    offline: Orchestrator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.trace import Trace

    def broken(self: Trace, directory: Path, **kwargs: object) -> None:
        raise ValueError("a writer's bug")

    monkeypatch.setattr(Trace, "save", broken)
    result = offline.execute("A=Eval('1 + 2')\nRESULT=A", trace_dir=tmp_path)
    assert result.ok and result.output == 3


def test_inputs_loaded_before_an_unusable_one_stay_in_the_trace(
    offline: Orchestrator, tmp_path: Path
) -> None:
    """LEFT and RIGHT are decoded at the same time; the error names the missing file and
    the trace keeps what was loaded before it, in order."""
    missing = tmp_path / "gone.png"
    images = {"LEFT": "sample:coffee", "MIDDLE": "sample:chelsea", "RIGHT": missing}
    result = offline.execute("A=Eval('1')", images=images)
    assert result.error is not None and result.error.code == ToolErrorCode.BAD_INPUT
    assert "gone.png" in str(result.error)
    assert [record.name for record in result.trace.inputs] == ["LEFT", "MIDDLE"]


@pytest.mark.parametrize("program", [None, 42, b"A=Eval('1')", ["A=Eval('1')"]])
def test_execute_returns_an_error_for_any_program_value(offline: Orchestrator, program) -> None:
    result = offline.execute(program)  # type: ignore[arg-type]
    assert result.error is not None and result.error.code == ToolErrorCode.BAD_INPUT


@pytest.mark.parametrize(
    ("program", "says"),
    [
        ("A=Crop(image=IMAGE, box=(0, 0, 1e999, 10))", "finite"),
        (f"A=Crop(image=IMAGE, box=(0, 0, {'9' * 400}, 10))", "too large to use"),
    ],
)
def test_absurd_coordinates_are_precise_typed_errors(
    offline: Orchestrator, program: str, says: str
) -> None:
    result = offline.execute(program, image="sample:coffee")
    assert result.error is not None and "internal error" not in str(result.error)
    assert result.error.code in (ErrorCode.WRONG_TYPE, ErrorCode.BAD_VALUE)
    assert says in str(result.error)


def test_an_internal_failure_is_still_returned_with_finished_steps(
    offline: Orchestrator, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(offline.executor, "run", broken)
    result = offline.execute("A=Eval('1')")
    assert result.error is not None and "internal error: KeyError" in str(result.error)


def test_map_gives_every_item_a_result_and_writes_its_report(
    offline: Orchestrator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = offline.execute

    def sometimes_broken(program, **kwargs):
        if "'2'" in program:
            raise RuntimeError("escaped")
        return real(program, **kwargs)

    monkeypatch.setattr(offline, "execute", sometimes_broken)
    items = [f"A=Eval('{i}')" for i in range(4)]
    results = offline.map(items, concurrency=2, mode="execute", trace_dir=tmp_path, progress=False)
    assert [r.ok for r in results] == [True, True, False, True]
    assert "RuntimeError: escaped" in str(results[2].error)
    assert (tmp_path / "report.html").is_file()


def test_map_auto_reports_a_broken_program_instead_of_planning_it(
    offline: Orchestrator, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_planning(*args, **kwargs):
        raise AssertionError("the planner was asked")

    monkeypatch.setattr(offline, "run", no_planning)
    typo = "ANSWER0=Eval('1 + 1'\nRESULT=ANSWER0"
    python_typo = "def execute_command(image):\n    return image.width +\n"
    results = offline.map([typo, python_typo], progress=False)
    for r in results:
        assert r.error is not None and r.error.code == ErrorCode.SYNTAX


def test_image_limits_come_from_the_config(tmp_path: Path) -> None:
    from orchestrator import Config

    config = Config(
        models={"profile": "offline", "cache_dir": tmp_path},
        plugins=False,
        limits={"image_pixels": 100},
        executor={"workers": 2, "max_stuck": 1},
    )
    orch = Orchestrator(config)
    try:
        result = orch.execute("A=Eval('1')", image=np.zeros((20, 20, 3), dtype=np.uint8))
        assert result.error is not None and "the limit is 100" in str(result.error)
        assert orch.workers.max_workers == 2 and orch.workers.max_stuck == 1
    finally:
        orch.close()


DEEP = 1500


@pytest.mark.parametrize(
    "program",
    [
        "A=Eval('xor " + "(" * DEEP + "1" + ")" * DEEP + "')",  # raised RecursionError
        "A=Eval('1 xor " + "[" * DEEP + "]" * DEEP + "')",
        "def execute_command(image):\n    x = []\n    for i in range(5000):\n        x = [x]\n"
        "    return x\n",
        "def execute_command(image):\n    return " + "(" * DEEP + "1" + ")" * DEEP + "\n",
    ],
    ids=["xor-parens", "xor-brackets", "python-deep-value", "python-deep-parens"],
)
def test_deep_nesting_is_a_typed_error_not_a_crash(offline: Orchestrator, program: str) -> None:
    """Issue 14 item 5: deep nesting of any kind, in either form."""
    result = offline.execute(program, image="sample:coffee")
    assert result.error is not None and "internal error" not in str(result.error)
    assert "Recursion" not in str(result.error)


def test_a_byte_order_mark_does_not_change_the_program(offline: Orchestrator) -> None:
    lines = offline.execute("\ufeffA=Eval('1 + 2')\nRESULT=Eval('{A} * 2')")
    python = offline.execute(
        "\ufeffdef execute_command(image):\n    return 3 * 2\n", image="sample:coffee"
    )
    assert lines.output == 6 and python.output == 6


def test_an_unwritable_trace_directory_is_a_typed_error(
    offline: Orchestrator, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = offline.execute("A=Eval('1')", trace_dir=blocker / "trace")
    assert result.error is not None and "cannot write the trace" in str(result.error)
