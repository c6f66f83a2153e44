"""Program forms: each form parses, checks, names its tools and inputs, binds and runs;
forms are found by name, by detection and from a parsed program."""

from __future__ import annotations

import pytest

from orchestrator import Orchestrator, Trace
from orchestrator.errors import RunErrorCode
from orchestrator.forms import (
    FORMS,
    LineForm,
    PythonForm,
    UnknownForm,
    bind_inputs,
    detect,
    form_of,
    get_form,
    parse_program,
    register_form,
)
from sandbox import (
    BoundProgram,
    ErrorCode,
    Limits,
    Program,
    ProgramInvalid,
    PythonProgram,
    VisChainError,
)
from tools import default_registry
from tools.convert import to_image
from tools.errors import ToolErrorCode

REGISTRY = default_registry(plugins=False)

LINES = """\
HALF=Loc(image=image, object='LEFT')
N=Count(object=HALF)
OTHER=Loc(image=PHOTO, object='TOP')
RESULT=Eval('{N} == 1')
"""
PYTHON = """\
def execute_command(image, other):
    patch = ImagePatch(image)
    halves = patch.find('LEFT')
    label = best_image_match([patch], ['a cup'])
    pick = lambda x: x
    named = Count(Loc(other, 'TOP'))
    return pick(len(halves)) + named
"""


def test_forms_are_registered_by_name_and_found_from_programs() -> None:
    assert set(FORMS) >= {"lines", "python"}
    lines, python = get_form("lines"), get_form("python")
    assert isinstance(lines, LineForm) and isinstance(python, PythonForm)
    assert detect(PYTHON) is python and detect(LINES) is lines
    assert form_of(parse_program(PYTHON)) is python
    parsed = parse_program(LINES)
    assert form_of(parsed) is lines
    assert form_of(lines.check(parsed, REGISTRY)) is lines  # a checked program too


def test_an_unknown_form_is_a_typed_error_naming_the_known_ones() -> None:
    with pytest.raises(UnknownForm) as info:
        get_form("lisp")
    assert isinstance(info.value, ProgramInvalid)
    assert info.value.code == ErrorCode.SYNTAX and info.value.name == "lisp"
    assert "lines" in str(info.value) and "python" in str(info.value)
    with pytest.raises(UnknownForm):
        parse_program("A=Count(object=B)", form="lisp")


def test_registering_a_form_twice_needs_replace() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_form(LineForm())
    assert register_form(FORMS["lines"], replace=True) is FORMS["lines"]


def test_line_form_parse_check_tools_and_inputs() -> None:
    form = get_form("lines")
    program = form.parse(LINES)
    assert form.input_names(program) == ("PHOTO", "image")
    assert form.tools_used(program) == {"Loc", "Count", "Eval"}
    bound = form.check(program, REGISTRY, inputs=["IMAGE", "PHOTO"])
    assert isinstance(bound, BoundProgram) and set(bound.inputs) >= {"image", "PHOTO"}
    with pytest.raises(ProgramInvalid) as info:
        form.check(program, REGISTRY, inputs=["IMAGE"])  # PHOTO has no input
    assert [e.code for e in info.value.errors] == [ErrorCode.UNDEFINED_NAME]
    assert info.value.errors[0].line == 3


def test_python_form_parse_check_tools_and_inputs() -> None:
    form = get_form("python")
    program = form.parse(PYTHON)
    assert isinstance(program, PythonProgram)
    assert form.input_names(program) == ("image", "other")
    # find → Loc, best_image_match → Similarity, Count/Loc called as functions; the lambda
    # `pick`, builtins (len) and ImagePatch are not tools
    assert form.tools_used(program) == {"Loc", "Similarity", "Count"}
    assert form.check(program, REGISTRY, inputs=["IMAGE", "OTHER"]) is program
    with pytest.raises(ProgramInvalid) as info:
        form.check(program, REGISTRY, inputs=["IMAGE"])
    assert "'other'" in str(info.value)
    with pytest.raises(ProgramInvalid, match="unknown function 'Lco'"):
        form.check(
            form.parse("def execute_command(image):\n    return Lco(image, 'x')\n"), REGISTRY
        )


def test_tools_used_names_unregistered_tools_too() -> None:
    """What the planner relies on to drop examples whose tools cannot run here."""
    python = get_form("python")
    program = python.parse("def execute_command(image):\n    return Classify2(image)\n")
    assert python.tools_used(program) == {"Classify2"}
    lines = get_form("lines")
    assert lines.tools_used(lines.parse("A=Classify2(image=IMAGE)")) == {"Classify2"}


def test_one_binding_rule_for_both_forms() -> None:
    given = {"IMAGE": "i", "Other": "o", "EXTRA": "e"}
    for form, source in (("lines", LINES), ("python", PYTHON)):
        program = get_form(form).parse(source)
        bound = get_form(form).bind(program, given)
        assert bound["image"] == "i"  # ignoring case
        assert bound["EXTRA"] == "e" and bound["IMAGE"] == "i"  # kept under their own names
    python = get_form("python").parse(PYTHON)
    assert get_form("python").bind(python, given)["other"] == "o"
    lines = get_form("lines").parse(LINES)
    assert "PHOTO" not in get_form("lines").bind(lines, given)  # left for check to report


def test_exact_names_win_and_case_only_clashes_are_errors() -> None:
    assert bind_inputs(["image"], {"IMAGE": 1, "image": 2}) == {"image": 2, "IMAGE": 1}
    with pytest.raises(VisChainError) as info:
        bind_inputs(["Image"], {"IMAGE": 1, "image": 2})
    assert info.value.code == ToolErrorCode.BAD_INPUT and "'Image'" in str(info.value)


RUNS = {
    "lines": "HALF=Loc(image=image, object='LEFT')\nRESULT=Count(object=HALF)",
    "python": "def execute_command(image):\n    return Count(Loc(image, 'TOP'))\n",
}


@pytest.mark.parametrize("name", sorted(RUNS))
def test_each_form_runs_through_the_executor(offline: Orchestrator, name: str) -> None:
    form = get_form(name)
    program = form.parse(RUNS[name])
    inputs = form.bind(program, {"IMAGE": to_image("sample:coffee")})
    trace = Trace()
    checked = form.check(program, REGISTRY, inputs=list(inputs))
    run = form.run(checked, inputs, offline.machinery, trace)
    assert run.error is None and run.output == 1
    assert [s.tool for s in trace.steps] == ["Loc", "Count"]
    assert [run.values[s.step] for s in trace.steps][1] == 1


def test_a_failed_line_run_names_the_earliest_failure_it_depends_on(
    offline: Orchestrator,
) -> None:
    lines = get_form("lines")
    source = "A=Vqa(image=IMAGE, question='how many?')\nB=Eval('{A} == 1')\nC=Crop(image=IMAGE, box=[0, 0, 5, 5])\nRESULT=B"
    program = lines.parse(source)
    image = to_image("sample:coffee")
    run = lines.run(lines.check(program, REGISTRY, inputs=["IMAGE"]), {"IMAGE": image},
                    offline.machinery, Trace())  # fmt: skip
    assert (
        run.output is None and run.error.code == ToolErrorCode.NO_BACKEND and run.error.step == "A"
    )
    assert run.errors["B"].code == RunErrorCode.SKIPPED
    assert run.values["C"].size == (5, 5)  # independent steps still ran


def test_a_registered_form_is_used_by_name_and_by_detection(offline: Orchestrator) -> None:
    """The API finds a newly registered form without any change to it; later registrations
    are asked first, so a plug-in form can claim texts a built-in one would take."""
    parsed: list[str] = []

    class Recorded(LineForm):
        """Line programs that start with a marker comment; records what it parses."""

        name = "recorded-lines"

        def recognizes(self, text: str) -> bool:
            return text.startswith("# recorded")

        def parse(self, text: str, *, limits: Limits | None = None) -> Program:
            parsed.append(text)
            return super().parse(text, limits=limits)

    register_form(Recorded())
    try:
        program = "# recorded\nA=Loc(image=IMAGE, object='LEFT')\nRESULT=Count(object=A)"
        assert offline.execute(program, image="sample:coffee").output == 1
        assert offline.execute(program[11:], image="sample:coffee", form="recorded-lines").ok
        assert parsed == [program, program[11:]]
        assert offline.execute(program[11:], image="sample:coffee").ok  # lines: not recorded
        assert len(parsed) == 2
    finally:
        del FORMS["recorded-lines"]


def test_root_error_of_a_long_chain_looks_each_step_up_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 14 item 3: the root error of a 17,000-step chain took 48 s (quadratic)."""
    from orchestrator.forms import root_error
    from sandbox import BoundStep

    n = 17_000
    steps = tuple(
        BoundStep(f"S{i}", "Count", {}, frozenset({f"S{i - 1}"} if i else ()), i + 1, "", "Number")
        for i in range(n)
    )
    bound = BoundProgram(Program((), ""), steps, result=f"S{n - 1}")
    errors = {f"S{i}": VisChainError(f"failed {i}", step=f"S{i}") for i in range(n)}
    searches = [0]
    find = BoundProgram.step

    def counted(self: BoundProgram, target: str) -> object:
        searches[0] += 1
        return find(self, target)

    monkeypatch.setattr(BoundProgram, "step", counted)
    assert root_error(bound, f"S{n - 1}", errors).message == "failed 0"
    assert searches[0] == 0  # one table of lines, not a search per failed step


def test_each_form_tells_the_planner_how_to_ask_for_it() -> None:
    lines, python = get_form("lines"), get_form("python")
    chat = "Sure! Here it is:\n```\nA=Loc(image=IMAGE, object='dog')\nRESULT=A\n```\nEnjoy."
    assert lines.extract(chat) == "A=Loc(image=IMAGE, object='dog')\nRESULT=A\n"
    code = "```python\ndef execute_command(image):\n    return 1\n```\nprose"
    assert python.extract(code) == "def execute_command(image):\n    return 1\n"
    assert python.extract(chat) == "" and lines.extract("no program") == ""
    grammar = lines.grammar(REGISTRY, max_steps=4)
    assert grammar is not None and "Loc" in grammar
    assert python.grammar(REGISTRY, max_steps=4) is None
    assert {lines.template, python.template} == {"lines", "python"}
    assert "\nInstruction:" in lines.stop and "\nInstruction:" in python.stop


def test_the_planner_asks_for_every_registered_form() -> None:
    from orchestrator.config import PlannerConfig
    from orchestrator.planner import Planner
    from tests.support.scripted_llm import ScriptedLLM

    class Marked(LineForm):
        """Line programs that begin with a marker comment."""

        name = "marked-lines"
        stop = ("\nEND",)

        def recognizes(self, text: str) -> bool:
            return text.startswith("# marked")

    with pytest.raises(ValueError, match="unknown program form 'marked-lines'"):
        PlannerConfig(form="marked-lines")
    register_form(Marked())
    try:
        assert PlannerConfig(form="marked-lines").form == "marked-lines"
        planner = Planner(REGISTRY, ScriptedLLM([]), PlannerConfig(), examples=[])
        assert set(planner.forms) == set(FORMS)
        prompting = planner.forms["marked-lines"]
        assert prompting.request.stop == ("\nEND",) and prompting.template == "lines"
        assert prompting.grammar == planner.forms["lines"].grammar
    finally:
        del FORMS["marked-lines"]


def test_a_python_run_reports_only_the_programs_own_values(offline: Orchestrator) -> None:
    """The np/numpy/math namespaces every Python program starts with are not its values (a
    caller, memo check or agent follow-up would otherwise get a namespace as a variable)."""
    result = offline.execute(
        "def execute_command(image):\n    m = np.mean([1, 2, 3])\n    return m + math.sqrt(4)\n",
        image="sample:coffee",
    )
    assert result.ok, result.error
    assert result.output == 4 and result.values == {"m": 2}
