"""The planner with a scripted LLM: prompts, example selection, grammar, repair, voting,
fallback, and run() end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator import Config, Orchestrator
from orchestrator.config import PlannerConfig
from orchestrator.errors import RunErrorCode
from orchestrator.examples import ExampleSelector, lexical_similarity
from orchestrator.forms import extract_program
from orchestrator.grammar import accepts, line_grammar
from orchestrator.planner import Planner, fill
from programs import Example
from sandbox import ErrorCode, ProgramError
from tests.support.scripted_llm import ScriptedLLM
from tools import Image, Registry, default_registry, tool

REG = default_registry(plugins=False)
EXAMPLES = [
    Example(
        "gqa",
        "Is there a cat on the sofa?",
        "BOX0=Loc(image=IMAGE, object='sofa')\nRESULT=BOX0\n",
        ("IMAGE",),
    ),
    Example(
        "gqa",
        "What colour is the car?",
        "ANSWER0=Vqa(image=IMAGE, question='What colour is the car?')\nRESULT=ANSWER0\n",
        ("IMAGE",),
    ),
    Example(
        "nlvr",
        "Both images show two dogs.",
        "ANSWER0=Vqa(image=LEFT, question='How many dogs?')\nRESULT=ANSWER0\n",
        ("LEFT", "RIGHT"),
    ),
    Example(
        "edit",
        "Blur the background behind the faces.",
        "OBJ0=FaceDet(image=IMAGE)\nIMAGE0=BgBlur(image=IMAGE, object=OBJ0)\nRESULT=IMAGE0\n",
        ("IMAGE",),
    ),
]
GOOD = "OBJ0=FaceDet(image=IMAGE)\nANSWER0=Count(object=OBJ0)\nRESULT=ANSWER0\n"


def planner(outputs: list[str], **config: object) -> tuple[Planner, ScriptedLLM]:
    llm = ScriptedLLM(outputs)
    return Planner(REG, llm, PlannerConfig(**config), examples=EXAMPLES), llm


def test_prompt_has_tool_docs_examples_and_the_instruction() -> None:
    p, _ = planner([], examples=2)
    prompt, chosen = p.prompt("How many faces are in the photo?", ["IMAGE"])
    assert "FaceDet(image: Image) -> ObjectList" in prompt
    assert "Eval(expr: Expression) -> Any" in prompt
    assert len(chosen) == 2
    assert prompt.rstrip().endswith(
        "Instruction: How many faces are in the photo?\nImages: IMAGE\nProgram:"
    )
    assert prompt.index(chosen[0].instruction) < prompt.index(chosen[1].instruction)


def test_the_fixed_prefix_comes_first_and_is_declared_to_the_llm() -> None:
    p, llm = planner([], examples=2)
    prompt, chosen = p.prompt("How many faces are in the photo?", ["IMAGE"])
    fixed, with_examples = llm.prefixes
    # instructions and tool docs first, the same for every instruction; then the examples
    assert fixed.endswith("# Examples\n") and "FaceDet(image: Image)" in fixed
    assert chosen[0].instruction not in fixed and chosen[0].instruction in with_examples
    assert prompt.startswith(with_examples) and with_examples.startswith(fixed)
    assert prompt[len(with_examples) :].startswith("Instruction: How many faces")
    other, _ = p.prompt("Blur the background", ["IMAGE"])
    assert llm.prefixes[2] == fixed and other.startswith(fixed)


def test_examples_are_picked_by_similarity_within_a_budget() -> None:
    sel = ExampleSelector(EXAMPLES)
    picked = sel.select("blur the background behind her face", k=1, budget_tokens=10_000)
    assert picked[0].family == "edit"
    pair = sel.select(
        "Both pictures contain dogs.", k=1, budget_tokens=10_000, inputs=["LEFT", "RIGHT"]
    )
    assert pair[0].family == "nlvr"
    tight = sel.select("anything", k=4, budget_tokens=25)
    assert sum(len(e.program) // 3 + 1 for e in tight) <= 25
    assert lexical_similarity("red car", ["a red car", "blue sky"])[0] > 0.5


def test_grammar_accepts_library_style_programs_and_rejects_others() -> None:
    g = line_grammar(REG)
    assert accepts(g, GOOD)
    assert accepts(g, "ANSWER0=Eval(\"'yes' if {X} > 1 else 'no'\")\nRESULT=ANSWER0")
    assert not accepts(g, "OBJ0=FaceDet(IMAGE, 3)\nRESULT=OBJ0\n")  # wrong shape
    assert not accepts(g, "OBJ0=Unknown(image=IMAGE)\nRESULT=OBJ0\n")  # unknown tool
    assert not accepts(g, "OBJ0=FaceDet(image=IMAGE)\n")  # no RESULT line
    assert not accepts(g, "import os\nRESULT=X\n")


def test_a_grammar_can_allow_only_some_tools_for_the_first_step() -> None:
    g = line_grammar(REG, max_steps=3, first=["Emoji", "SEG"])
    select = "OBJ1=Select(image=IMAGE, object=OBJ0, query='man')\n"
    emoji = "IMAGE0=Emoji(image=IMAGE, object=OBJ1, emoji='ghost')\n"
    assert not accepts(g, select + "RESULT=OBJ1\n")
    assert accepts(g, emoji + "RESULT=IMAGE0\n") and accepts(g, "RESULT=OBJ0\n")
    assert accepts(g, "OBJ2=Seg(image=IMAGE, object=OBJ1)\nRESULT=OBJ2\n")  # by its alias
    assert accepts(g, emoji + select + "RESULT=OBJ1\n")  # later steps may call any
    assert not accepts(g, emoji + emoji + select + "RESULT=OBJ1\n")  # max_steps still holds
    none = line_grammar(REG, max_steps=3, first=[])  # no tool may come first: RESULT alone
    assert accepts(none, "RESULT=OBJ0\n") and not accepts(none, emoji + "RESULT=IMAGE0\n")


def test_plugin_tools_appear_in_grammar_and_docs() -> None:
    @tool(name="Sharpen")
    def sharpen(image: Image, amount: float = 1.0) -> Image:
        """Sharpen an image."""
        return image

    reg = Registry([*REG, sharpen])
    g = line_grammar(reg)
    assert accepts(g, "IMAGE0=Sharpen(image=IMAGE, amount=2.5)\nRESULT=IMAGE0\n")
    p = Planner(reg, ScriptedLLM([]), PlannerConfig(), examples=EXAMPLES)
    assert "Sharpen(image: Image, amount: Number=1.0) -> Image" in p.tool_docs()


def test_a_valid_program_is_accepted_first_time_under_the_grammar() -> None:
    p, llm = planner([GOOD])
    [plan] = p.plan("How many faces?", ["IMAGE"])
    assert plan.ok and [s.tool for s in plan.program.steps if s.tool] == ["FaceDet", "Count"]
    assert llm.grammars[0] == line_grammar(REG)
    assert plan.attempts[0].grammar_respected is True


def test_repair_loop_sends_errors_back() -> None:
    # names with no one close name to fix them to: the LLM repairs
    broken = "OBJ0=Gather(image=IMAGE)\nANSWER0=Count(object=PEOPLE)\nRESULT=ANSWER0\n"
    p, llm = planner([broken, GOOD], repair_rounds=2)
    [plan] = p.plan("How many faces?", ["IMAGE"])
    assert plan.ok and len(plan.attempts) == 2
    first, second = plan.attempts
    assert [e["code"] for e in first.errors] == ["unknown-tool", "undefined-name"]
    repair_prompt = llm.prompts[1]
    assert "unknown tool 'Gather'" in repair_prompt and "'PEOPLE' is not defined" in repair_prompt
    assert repair_prompt.startswith(llm.prompts[0])  # the same prefix: the LLM's cache is reused
    assert second.kind == "repair" and second.errors == []


def test_repair_gives_up_after_the_configured_rounds() -> None:
    bad = "OBJ0=Nope(image=IMAGE)\nRESULT=OBJ0\n"
    p, _ = planner([bad, bad, bad], repair_rounds=1)
    [plan] = p.plan("How many faces?", ["IMAGE"])
    assert not plan.ok and len(plan.attempts) == 2
    assert plan.error.code == RunErrorCode.PLANNING and "Nope" in plan.error.message


def test_program_extraction_from_chatty_output() -> None:
    out = "Sure! Here is the program:\n```\nOBJ0=FaceDet(image=IMAGE)\nRESULT=OBJ0\n```\nIt finds faces."
    assert extract_program(out) == "OBJ0=FaceDet(image=IMAGE)\nRESULT=OBJ0\n"
    assert extract_program("no program here") == ""
    assert fill("{tools} and {examples}", tools="{examples}", examples="E") == "{examples} and E"


@pytest.fixture
def scripted_orchestrator(tmp_path: Path):
    def make(
        outputs: list[str], agent: dict[str, object] | None = None, **planner_config: object
    ) -> tuple[Orchestrator, ScriptedLLM]:
        config = Config(models={"profile": "offline", "cache_dir": tmp_path / "cache"}, plugins=False,
                        planner=planner_config, agent=agent or {})  # fmt: skip
        orch = Orchestrator(config)
        llm = ScriptedLLM(outputs)
        orch.pool.provide("llm", llm)
        return orch, llm

    return make


def test_run_plans_executes_and_traces(scripted_orchestrator, tmp_path: Path) -> None:
    broken = "OBJ0=FaceDet(image=IMAGE)\nANSWER0=Count(object=FACES)\nRESULT=ANSWER0\n"
    orch, _llm = scripted_orchestrator([broken, GOOD])
    result = orch.run(
        "How many faces are there?", image="sample:astronaut", trace_dir=tmp_path / "t"
    )
    assert result.ok and result.output == 1  # MTCNN finds the astronaut's face
    kinds = [r["kind"] for r in result.trace.planning]
    assert kinds == ["generate", "repair"]
    assert result.trace.planning[0]["prompt_tokens"] > 0
    assert result.trace.planning[0]["errors"][0]["code"] == "undefined-name"
    assert result.trace.program == GOOD
    html = (tmp_path / "t" / "index.html").read_text()
    assert "Planning" in html and "repair 2" in html
    orch.close()


def test_planner_is_told_only_tools_that_can_run(scripted_orchestrator) -> None:
    # one-shot runs; the agent loop's planner is also told what cannot run (test_agent.py)
    orch, llm = scripted_orchestrator([GOOD])
    orch.run("How many faces?", image="sample:astronaut", agent=False)
    prompt = llm.prompts[0]
    tools_part = prompt.split("# Examples")[0]
    assert "FaceDet(" in tools_part and "Crop(" in tools_part
    assert "Vqa(" not in tools_part and "Loc(" not in tools_part  # no VLM, no detector here
    orch.close()


def test_voting_takes_the_majority_answer(scripted_orchestrator) -> None:
    one = GOOD
    two = "ANSWER0=Eval('1 + 1')\nRESULT=ANSWER0\n"
    orch, _ = scripted_orchestrator([two, one, one], voting=3)
    result = orch.run("How many faces?", image="sample:astronaut")
    assert result.output == 1
    vote = next(r for r in result.trace.planning if r["kind"] == "vote")
    assert vote["tally"] == {"1": 2, "2": 1}
    assert result.trace.program == one
    orch.close()


def test_fallback_is_used_only_when_configured_and_is_traced(scripted_orchestrator) -> None:
    bad = "OBJ0=Nope(image=IMAGE)\nRESULT=OBJ0\n"
    # one agent round: the planner's repairs are all there is (a second round would ask
    # the planner again), then the fallback
    one = {"max_rounds": 1}
    orch, _ = scripted_orchestrator([bad, bad], agent=one, repair_rounds=1)
    result = orch.run("What is this?", image="sample:coffee")
    assert result.error.code == RunErrorCode.PLANNING
    orch.close()
    fallback = "ANSWER0=Result(var={instruction})\nRESULT=ANSWER0"
    orch, _ = scripted_orchestrator([bad, bad], agent=one, repair_rounds=1, fallback=fallback)
    result = orch.run("What is this?", image="sample:coffee")
    assert result.ok and result.output == "What is this?"
    assert result.trace.meta["fallback"] is True
    assert result.trace.planning[-1]["kind"] == "fallback"
    orch.close()


PY_EXAMPLE = Example(
    "python",
    "How many faces are there?",
    "def execute_command(image):\n    image_patch = ImagePatch(image)\n    return len(image_patch.find('face'))\n",
    ("IMAGE",),
    form="python",
)
PY_GOOD = "def execute_command(image):\n    return Count(FaceDet(image))\n"


def test_python_form_prompt_check_and_repair() -> None:
    llm = ScriptedLLM([
        "Here you go:\n```python\ndef execute_command(image):\n    return undefined_fn(image)\n```\n",
        "def execute_command(image):\n    faces = FaceDet(image)\n\n    return Count(faces)\nInstruction: next",
    ])  # fmt: skip
    p = Planner(REG, llm, PlannerConfig(form="python"), examples=[*EXAMPLES, PY_EXAMPLE])
    [plan] = p.plan("How many faces are there?", ["IMAGE"])
    assert plan.ok and plan.form == "python"
    assert "class ImagePatch:" in llm.prompts[0] and "def execute_command(image):" in llm.prompts[0]
    assert llm.grammars[0] is None  # no grammar for the Python form
    assert plan.attempts[0].errors[0]["code"] == "unknown-tool"
    assert (
        plan.source
        == "def execute_command(image):\n    faces = FaceDet(image)\n\n    return Count(faces)\n"
    )


def test_auto_form_follows_the_most_similar_example() -> None:
    p = Planner(REG, ScriptedLLM([]), PlannerConfig(form="auto"), examples=[*EXAMPLES, PY_EXAMPLE])
    assert p.choose_form("How many faces are there?") == "python"
    assert p.choose_form("Blur the background behind the faces.") == "lines"
    assert p.choose_form("anything", "lines") == "lines"


def test_python_examples_need_their_api_tools() -> None:
    reg = Registry([t for t in REG if t.spec.name != "Loc"])
    p = Planner(reg, ScriptedLLM([]), PlannerConfig(), examples=[PY_EXAMPLE])
    assert p.forms["python"].selector.examples == []  # find() needs Loc


def test_run_with_the_python_form(scripted_orchestrator) -> None:
    orch, _ = scripted_orchestrator([PY_GOOD])
    result = orch.run("How many faces?", image="sample:astronaut", form="python")
    assert result.ok and result.output == 1 and result.trace.form == "python"
    orch.close()


def test_preferred_examples_rank_first_and_the_result_type_is_the_checkers() -> None:
    sel = ExampleSelector(EXAMPLES)
    plain = sel.select("Blur the car behind the sofa", k=1, budget_tokens=10_000)
    assert plain[0].family == "edit"
    preferred = sel.select(
        "Blur the car behind the sofa", k=2, budget_tokens=10_000,
        prefer=lambda e: e.family == "gqa",
    )  # fmt: skip
    assert preferred[-1].family == "gqa"  # the nearest the instruction is a preferred one
    # only examples that read the run's inputs are preferred (when any does): a one-image
    # yes/no example before a two-image question was copied with IMAGE for LEFT and RIGHT
    two = sel.select(
        "Is there a cat in both images?", k=1, budget_tokens=10_000, inputs=("LEFT", "RIGHT"),
        prefer=lambda e: e.family == "gqa",
    )  # fmt: skip
    assert two[0].family == "nlvr"
    unmatched = sel.select(
        "Are there cats in both pictures?", k=1, budget_tokens=10_000, inputs=("PHOTO",),
        prefer=lambda e: e.family == "edit",
    )  # fmt: skip
    assert unmatched[0].family == "edit"  # no example reads PHOTO: the preference stands
    p, _ = planner([])
    assert [p.example_result_type(e) for e in EXAMPLES] == ["ObjectList", "Text", "Text", "Image"]
    broken = Example("x", "?", "A=Nope(image=IMAGE)\nRESULT=A\n", ("IMAGE",))
    assert p.example_result_type(broken) is None
    near = p.nearest_example("Blur the car", "lines", lambda e: e.family == "gqa")
    assert near is not None and near.instruction == "What colour is the car?"


def test_a_result_check_refuses_a_program_for_repair_and_runs_the_last_when_repairs_end() -> None:
    seen: list[str | None] = []

    def only_numbers(type_name, program):
        seen.append(type_name)
        if type_name == "Number":
            return None
        return ProgramError(ErrorCode.WRONG_TYPE, "the result must be a number", 1, 1)

    image = "OBJ0=FaceDet(image=IMAGE)\nIMAGE0=BgBlur(image=IMAGE, object=OBJ0)\nRESULT=IMAGE0\n"
    p, llm = planner([image, GOOD])
    prompt, _ = p.prompt("How many faces?", ["IMAGE"])
    [plan] = p.write(prompt, "How many faces?", ["IMAGE"], form="lines", result_check=only_numbers)
    assert plan.ok and plan.source == GOOD and seen == ["Image", "Number"]
    assert "[wrong-type] the result must be a number" in llm.prompts[1]
    # the repairs spent on the result's type alone: the last such program is returned
    p, _ = planner([image, image, image], repair_rounds=2)
    [plan] = p.write(prompt, "How many faces?", ["IMAGE"], form="lines", result_check=only_numbers)
    assert plan.ok and plan.source == image
    # a program with other errors is not returned
    p, _ = planner([image, "X=Nope()\n", "X=Nope()\n"], repair_rounds=2)
    [plan] = p.write(prompt, "How many faces?", ["IMAGE"], form="lines", result_check=only_numbers)
    assert plan.ok and plan.source == image  # the runnable one, not the last
    p, _ = planner(["X=Nope()\n", "X=Nope()\n", "X=Nope()\n"], repair_rounds=2)
    [plan] = p.write(prompt, "How many faces?", ["IMAGE"], form="lines", result_check=only_numbers)
    assert not plan.ok


def test_a_fix_it_the_checker_knows_is_applied_without_an_llm_call() -> None:
    """``Count(text)`` after ``TEXT0=Ocr(...)``: the checker's one close name is written in
    (an attempt of kind "fix", no LLM call); the planner had one output to give."""
    broken = "TEXT0=Ocr(image=IMAGE)\nANSWER0=Count(text)\nRESULT=ANSWER0\n"
    p, llm = planner([broken], repair_rounds=2)
    [plan] = p.plan("How many lines of text are there?", ["IMAGE"])
    assert plan.ok and plan.source == broken.replace("Count(text)", "Count(TEXT0)")
    first, fixed = plan.attempts
    assert first.errors[0]["fix"] == ["text", "TEXT0"] and len(llm.prompts) == 1
    assert fixed.kind == "fix" and fixed.errors == [] and fixed.prompt == ""


def test_what_a_fix_it_leaves_is_repaired_by_the_llm_from_the_fixed_program() -> None:
    broken = "OBJ0=FaceDet(image=IMAGE)\nANSWER0=Count(obj0)\nN=Count(FACES)\nRESULT=ANSWER0\n"
    p, llm = planner([broken, GOOD], repair_rounds=1)
    [plan] = p.plan("How many faces?", ["IMAGE"])
    assert plan.ok and [a.kind for a in plan.attempts] == ["generate", "fix", "repair"]
    assert llm.prompts[1].endswith(
        "OBJ0=FaceDet(image=IMAGE)\nANSWER0=Count(OBJ0)\nN=Count(FACES)\nRESULT=ANSWER0\n"
        "# That program has errors:\n# line 3, col 9: [undefined-name] 'FACES' is not defined "
        "(variables so far: OBJ0, ANSWER0; inputs: IMAGE)\n"
        "# Write the corrected program for the same instruction.\nProgram:\n"
    )


def test_a_loop_of_repeated_steps_is_resumed_from_before_it_then_dropped_by_fix_its() -> None:
    """A 0.5B loop (``Select`` on what the same ``Select`` chose, to the step limit): with
    ``drop_repeats`` the program is written again from the step before the loop, after the
    same prompt, under a grammar whose next step may not call the looping tool (kind
    "resume"); a resumed program that loops again has its repeats dropped by the fix-its
    (kind "fix", no LLM call). Without ``drop_repeats`` the program is kept as written."""
    loop = (
        "OBJ0=FaceDet(image=IMAGE)\n"
        + "".join(
            f"OBJ{i}=Select(image=IMAGE, object=OBJ{i - 1}, query='face of a man')\n"
            for i in range(1, 5)
        )
        + "RESULT=OBJ4\n"
    )
    kept = (
        "OBJ0=FaceDet(image=IMAGE)\nOBJ1=Select(image=IMAGE, object=OBJ0, query='face of a man')\n"
    )
    ending = "IMAGE0=Emoji(image=IMAGE, object=OBJ1, emoji='ghost')\nRESULT=IMAGE0\n"
    p, llm = planner([loop, ending])
    [plan] = p.plan("Hide the man's face", ["IMAGE"], drop_repeats=True)
    assert plan.ok and plan.source == kept + ending and len(llm.prompts) == 2
    first, resumed = plan.attempts
    assert [e["code"] for e in first.errors] == ["repeated-step"] * 3
    assert resumed.kind == "resume" and resumed.errors == []
    assert llm.prompts[1] == llm.prompts[0] + kept
    # the next step takes what the loop chose, with another tool: not Select, nor a tool
    # that cannot read it (the 0.5B, told only "not Select", wrote SelectAnswer in a loop)
    grammar = llm.grammars[1]
    assert grammar is not None and accepts(grammar, ending)
    assert accepts(grammar, "OBJ2=Seg(image=IMAGE, object=OBJ1)\n" + ending)
    for step in ("OBJ2=Select(image=IMAGE, object=OBJ1, query='man')\n",
                 "A=SelectAnswer(question='who?', info='a man')\n"):  # fmt: skip
        assert not accepts(grammar, step + "RESULT=OBJ1\n")
    # a resumed program that loops again: its repeats are dropped, no third LLM call
    again = "OBJ2=Seg(image=IMAGE, object=OBJ1)\nOBJ3=Select(image=IMAGE, object=OBJ2, query='x')\n"
    again += "OBJ4=Select(image=IMAGE, object=OBJ3, query='x')\nRESULT=OBJ4\n"
    p, llm = planner([loop, again])
    [plan] = p.plan("Find the man's face", ["IMAGE"], drop_repeats=True)
    assert [a.kind for a in plan.attempts] == ["generate", "resume", "fix"]
    assert plan.ok and plan.source.endswith("query='x')\nRESULT=OBJ3\n") and len(llm.prompts) == 2
    # no time for the resume's LLM call: the fix-its drop the repeats instead
    asked: list[float] = []
    p, llm = planner([loop])
    [plan] = p.plan("Find the man's face", ["IMAGE"], drop_repeats=True,
                    budget=lambda s: not asked.append(s) and len(asked) == 1)  # fmt: skip
    assert [a.kind for a in plan.attempts] == ["generate", "fix"] and len(asked) == 2
    assert plan.ok and plan.source.strip() == kept + "RESULT=OBJ1"
    # a resumed program that does not check: the loop without its repeats instead
    p, llm = planner([loop, "OBJ2=Emoji(image=IMAGE, object=OBJ1, emoji='gh"])
    [plan] = p.plan("Find the man's face", ["IMAGE"], drop_repeats=True)
    assert [a.kind for a in plan.attempts] == ["generate", "resume", "fix"]
    assert plan.ok and plan.source.strip() == kept + "RESULT=OBJ1" and len(llm.prompts) == 2
    p, _ = planner([loop])
    [plan] = p.plan("Find the man's face", ["IMAGE"])
    assert plan.ok and plan.source == loop
