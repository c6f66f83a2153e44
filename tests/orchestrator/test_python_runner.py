"""Python-form programs in the runtime: every tool call a DAG node, lazy values that let
independent calls run together, errors with lines, traces like line programs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from orchestrator import Config, Orchestrator, Trace
from sandbox import ErrorCode, ProgramInvalid
from tools import Registry, default_registry, tool
from tools.builtin.logic import count, result
from tools.errors import ToolErrorCode
from tools.types import Image


@tool
def nap(seconds: float, tag: str = "") -> str:
    """Sleep, then return the tag (a slow plug-in tool).

    Args:
        seconds: how long
        tag: what to return
    """
    time.sleep(seconds)
    return tag


def test_patch_program_with_loops_conditionals_and_nested_finds(tiny: Orchestrator) -> None:
    source = """
def execute_command(image):
    image_patch = ImagePatch(image)
    halves = image_patch.find("TOP") + image_patch.find("BOTTOM")
    parts = []
    for half in halves:
        for part in half.find("LEFT"):
            parts.append(part)
    answers = [part.simple_query("What is this?") for part in parts]
    if len(answers) == 2 and halves[0].vertical_center > halves[1].vertical_center:
        best = image_patch.best_text_match(["a cup of coffee", "a rocket"])
        return f"{len(answers)} {best in ['a cup of coffee', 'a rocket']}"
    return "wrong"
"""
    result = tiny.execute(source, image="sample:coffee")
    assert result.ok, result.error
    assert result.output == "2 True"
    tools = [s.tool for s in result.trace.steps]
    assert tools.count("Loc") == 4 and tools.count("Vqa") == 2 and tools.count("Match") == 1
    vqa = [s for s in result.trace.steps if s.tool == "Vqa"]
    assert {s.batch_size for s in vqa} == {2}  # issued lazily, run as one batch
    assert all(s.line == 9 for s in vqa)  # the line of the comprehension
    assert "simple_query" in vqa[0].text
    loc_names = {s.step for s in result.trace.steps if s.tool == "Loc"}
    assert any(set(s.deps) & loc_names for s in vqa)  # edges from the finds that fed them


def test_coordinates_follow_the_documented_convention(tiny: Orchestrator) -> None:
    source = """
def execute_command(image):
    p = ImagePatch(image)
    top = p.find("TOP")[0]
    left = p.crop(p.left, p.lower, p.horizontal_center, p.upper)
    return [p.width, p.height, top.lower, top.upper, left.width, left.right, top.overlaps_with(0, 0, 10, 10)]
"""
    result = tiny.execute(source, image="sample:coffee")  # 600 x 400
    assert result.ok, result.error
    assert result.output == [600, 400, 200, 400, 300, 300, False]


def test_independent_lazy_calls_really_overlap(tmp_path: Path) -> None:
    reg = Registry([nap, count])
    orch = Orchestrator(
        Config(models={"profile": "offline", "cache_dir": tmp_path}, plugins=False), registry=reg
    )
    source = """
def execute_command(image):
    a = Nap(0.4, "a")
    b = Nap(0.4, "b")
    c = Nap(0.4, "c")
    return a + b + c
"""
    result = orch.execute(source, image="sample:coffee")
    orch.close()
    assert result.ok and result.output == "abc"
    naps = result.trace.steps
    assert max(s.start for s in naps) < min(s.end for s in naps)
    assert result.trace.meta["waves"] == 1


def test_forcing_in_control_flow_splits_waves(tmp_path: Path) -> None:
    reg = Registry([nap])
    orch = Orchestrator(
        Config(models={"profile": "offline", "cache_dir": tmp_path}, plugins=False), registry=reg
    )
    source = """
def execute_command(image):
    a = Nap(0.01, "x")
    if a == "x":
        b = Nap(0.01, "y")
    return b
"""
    result = orch.execute(source, image="sample:coffee")
    orch.close()
    assert result.output == "y" and result.trace.meta["waves"] == 2


def test_tool_errors_name_the_line_and_keep_finished_calls(tiny: Orchestrator) -> None:
    source = """
def execute_command(image):
    p = ImagePatch(image)
    found = p.find("TOP")
    n = len(found)
    bad = Crop(image, [0, 0, 0, 0])
    return bad.width + n
"""
    result = tiny.execute(source, image="sample:coffee")
    assert not result.ok
    assert (
        result.error.line == 6 and result.error.code == ToolErrorCode.TOOL_ERROR
    )  # the call's line
    assert result.error.step == "Crop1" and "nothing to crop:" in result.error.message
    assert [s.status for s in result.trace.steps] == ["ok", "error"]


def test_hostile_python_programs_are_refused_or_stopped(tiny: Orchestrator) -> None:
    refused = tiny.execute(
        "import os\ndef execute_command(image):\n    return 1\n", image="sample:coffee"
    )
    assert isinstance(refused.error, ProgramInvalid)
    walk = tiny.execute(
        "def execute_command(image):\n    return ().__class__.__mro__\n", image="sample:coffee"
    )
    assert walk.error.errors[0].code == ErrorCode.FORBIDDEN_NAME
    loop = tiny.execute(
        "def execute_command(image):\n    p = ImagePatch(image)\n    while True:\n        p.find('TOP')\n",
        image="sample:coffee",
    )
    assert loop.error.code in (ErrorCode.STEP_LIMIT, ErrorCode.TIME_LIMIT)
    assert loop.error.line == 4


def test_unknown_api_names_fail_the_check(tiny: Orchestrator) -> None:
    result = tiny.execute(
        "def execute_command(image):\n    p = ImagePatch(image)\n    return p.compute_colour()\n",
        image="sample:coffee",
    )
    assert isinstance(result.error, ProgramInvalid)
    assert "compute_colour" in result.error.errors[0].message


def test_left_and_right_bind_to_pairs(tiny: Orchestrator) -> None:
    source = "def execute_command(left, right):\n    return ImagePatch(left).width + ImagePatch(right).width\n"
    result = tiny.execute(source, images={"LEFT": "sample:coffee", "RIGHT": "sample:astronaut"})
    assert result.ok and result.output == 600 + 512


def test_a_result_shares_what_the_program_shared(tiny: Orchestrator) -> None:
    """Converting a result (patches to pictures) keeps one value per distinct container:
    ``[a] * 30`` of a 1000 x 1000 aliased ``a`` is not copied out to 30 million values."""
    source = (
        "def execute_command(image):\n"
        "    a = [[0] * 1000] * 1000\n"
        "    patches = [ImagePatch(image)]\n"
        "    return {'many': [a] * 30, 'pictures': (patches, patches)}\n"
    )
    result = tiny.execute(source, image="sample:coffee")
    assert result.ok, result.error
    many, (first, second) = result.output["many"], result.output["pictures"]
    assert many[0] is many[29] and many[0][0] is many[0][999] and len(many[0][0]) == 1000
    assert first is second and isinstance(first[0], Image) and first[0].width == 600


def test_python_traces_save_like_line_programs(tiny: Orchestrator, tmp_path: Path) -> None:
    source = "def execute_command(image):\n    p = ImagePatch(image)\n    return p.simple_query('what is it?')\n"
    result = tiny.execute(source, image="sample:coffee", trace_dir=tmp_path)
    assert result.ok and isinstance(result.output, str)
    loaded = Trace.load(tmp_path)
    assert loaded.form == "python" and [s.tool for s in loaded.steps] == ["Vqa"]
    assert loaded.steps[0].line == 3
    assert "simple_query" in (tmp_path / "index.html").read_text()


@pytest.mark.parametrize("registry_tools", [default_registry(plugins=False)])
def test_api_docs_are_generated_from_the_implementation(registry_tools: Registry) -> None:
    from tools.patch import PATCH_METHODS, api_docs

    docs = api_docs()
    for name in PATCH_METHODS:
        assert f"def {name}(" in docs
    flat = " ".join(docs.split())
    assert "origin at the bottom-left" in flat and "lower < upper" in flat


def test_nothing_queued_runs_after_the_call_limit_fired(tmp_path: Path) -> None:
    ran: list[int] = []

    @tool
    def note(x: int) -> int:
        """Record that a call ran.

        Args:
            x: any number
        """
        ran.append(x)
        return x

    orch = Orchestrator(
        Config(
            models={"profile": "offline", "cache_dir": tmp_path},
            plugins=False,
            limits={"max_tool_calls": 50},
        ),
        registry=Registry([note]),
    )
    source = """
def execute_command(image):
    for i in range(100):
        Note(i)
    return 1
"""
    result = orch.execute(source, image="sample:coffee")
    orch.close()
    assert result.error is not None and result.error.code == ErrorCode.STEP_LIMIT
    assert "50" in str(result.error)
    assert ran == []  # the 50 queued calls were dropped, not run
    assert result.trace.meta["dropped_calls"] == 50


def test_a_loop_of_stuck_calls_holds_a_bounded_number_of_threads(tmp_path: Path) -> None:
    """``while True: call()`` on a tool that hangs in native code: the call limit fires,
    the queued calls are dropped, and the threads stay within the pool's bound."""
    import threading

    from tests.support.faults import RELEASE, stuck

    RELEASE.clear()
    orch = Orchestrator(
        Config(
            models={"profile": "offline", "cache_dir": tmp_path},
            plugins=False,
            limits={"max_tool_calls": 300, "step_seconds": 0.2},
        ),
        registry=Registry([stuck]),
    )
    before = threading.active_count()
    try:
        for source in (
            "def execute_command(image):\n    while True:\n        Stuck(1)\n",
            "def execute_command(image):\n    for i in range(200):\n        Stuck(i)\n    return 1\n",
        ):
            orch.execute(source, image="sample:coffee")
            pool = orch.workers
            assert pool.threads <= pool.max_workers + pool.max_stuck
            assert threading.active_count() <= before + pool.max_workers + pool.max_stuck + 1
    finally:
        RELEASE.set()
        orch.close()


def test_lazy_results_inside_containers_are_compared_as_values(tmp_path: Path) -> None:
    """Issue 14 item 2: '"red" in colours' was False (unrun calls compared), so the README's
    bool_to_yesno example always answered "no", and call objects leaked into outputs."""
    reg = Registry([result])
    orch = Orchestrator(
        Config(models={"profile": "offline", "cache_dir": tmp_path}, plugins=False), registry=reg
    )
    source = """
def execute_command(image):
    colours = [Result("red"), Result("blue")]
    names = {c: 1 for c in colours}
    shown = f"{colours}"
    print(colours, {Result("green")})
    return [bool_to_yesno("red" in colours), colours.count("blue"), colours.index("blue"),
            sorted(colours), colours == ["red", "blue"], len({Result("a"), Result("a")}),
            "red" in names, shown, {Result("set")}]
"""
    run = orch.execute(source, image="sample:coffee")
    orch.close()
    assert run.ok, run.error
    assert run.output == ["yes", 1, 1, ["blue", "red"], True, 1, True, "['red', 'blue']", {"set"}]
    assert run.trace.meta["printed"] == ["['red', 'blue'] {'green'}"]
    assert "call" not in repr(run.output) + repr(run.trace.meta["printed"])
