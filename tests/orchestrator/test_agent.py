"""The agent loop with a scripted planner: each scenario of a round, the bounds, the
capability error, continuation without re-running finished steps, and the trace."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from orchestrator import Config, Orchestrator, Trace
from orchestrator.agent import AgentRun
from orchestrator.answer_kind import kind_by_rules
from orchestrator.decisions import decision_grammar
from orchestrator.errors import RunErrorCode
from orchestrator.examples import ExampleSelector, lexical_similarity
from orchestrator.grammar import line_grammar
from orchestrator.rounds import returned
from programs import Example, load_library
from sandbox import ErrorCode
from tests.orchestrator.test_api import TAGGING
from tests.support.scripted_llm import ScriptedLLM
from tools import Image, ObjectList, Registry, default_registry, tool
from tools.convert import to_image
from tools.types import Box, Object

CALLS: Counter[str] = Counter()
COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}


@tool(name="ColorFind")
def color_find(image: Image, color: str) -> ObjectList:
    """Find the region of one pure colour (red, green or blue) in a picture.

    Args:
        image: the picture
        color: red, green or blue
    """
    CALLS[color] += 1
    rgb = COLOURS.get(color)
    if rgb is None:
        return ObjectList(())
    mask = np.all(np.asarray(image.pil.convert("RGB")) == rgb, axis=-1)
    if not mask.any():
        return ObjectList(())
    ys, xs = np.nonzero(mask)
    box = Box(float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    return ObjectList((Object(box, label=color, score=0.9),))


@tool(name="ColorKeep")
def color_keep(object: ObjectList, color: str) -> ObjectList:
    """Keep the objects labelled with a colour.

    Args:
        object: the objects
        color: red, green or blue
    """
    return ObjectList(tuple(o for o in object if o.label == color))


def picture() -> PILImage.Image:
    pil = PILImage.new("RGB", (64, 64), "white")
    pil.paste((255, 0, 0), (8, 8, 24, 24))
    return pil


@pytest.fixture
def agent(tmp_path: Path):
    """An orchestrator (offline models, memo off so re-runs would show) with ColorFind and
    a scripted LLM; returns (orchestrator, llm)."""
    made: list[Orchestrator] = []

    def make(outputs: list[str], **agent_config: object) -> tuple[Orchestrator, ScriptedLLM]:
        config = Config(
            models={"profile": "offline", "cache_dir": tmp_path / "cache"},
            plugins=False,
            executor={"memo_mb": 0},
            agent=agent_config,
        )
        registry = Registry([*default_registry(plugins=False), color_find, color_keep])
        orch = Orchestrator(config, registry=registry)
        llm = ScriptedLLM(outputs)
        orch.pool.provide("llm", llm)
        made.append(orch)
        CALLS.clear()
        return orch, llm

    yield make
    for orch in made:
        orch.close()


COUNT_RED = "OBJ0=ColorFind(image=IMAGE, color='red')\nN0=Count(object=OBJ0)\nRESULT=N0\n"


def test_a_good_first_answer_is_accepted_in_one_round_without_asking(agent) -> None:
    orch, llm = agent([COUNT_RED])  # one output: a decision call would exhaust the script
    result = orch.run("How many red squares are there?", image=picture())
    assert result.ok and result.output == 1
    [rnd] = result.rounds
    assert rnd.kind == "plan" and rnd.accepted and rnd.issues == ()
    assert rnd.decision == {"action": "ANSWER", "by": "checks"}
    assert len(llm.prompts) == 1


def test_decide_always_asks_and_answer_accepts(agent) -> None:
    orch, llm = agent([COUNT_RED, "ANSWER\n"], decide="always")
    result = orch.run("How many red squares are there?", image=picture())
    assert result.ok and result.output == 1 and len(result.rounds) == 1
    assert result.rounds[0].decision["action"] == "ANSWER"
    assert result.rounds[0].decision["by"] == "planner"
    assert llm.requests[1].grammar == decision_grammar()
    assert "# Checks: none fired" in llm.prompts[1]


def test_a_runtime_error_is_shown_and_a_rewrite_fixes_it(agent) -> None:
    broken = COUNT_RED.replace("RESULT=N0", "N1=Eval('{N0} / 0')\nRESULT=N1")
    orch, llm = agent([broken, "REWRITE", COUNT_RED])
    result = orch.run("How many red squares are there?", image=picture())
    assert result.ok and result.output == 1
    first, second = result.rounds
    assert [i["check"] for i in first.issues] == ["runtime-error"]
    assert first.error["code"] == "eval-error" and first.decision["action"] == "REWRITE"
    assert second.kind == "rewrite" and second.accepted and not first.accepted
    prompt = llm.prompts[1]
    assert prompt.startswith(llm.prompts[0])  # the planning prompt is the prefix
    assert "# N1 (line 3, Eval): error [eval-error]" in prompt
    assert "# Check runtime-error: [eval-error] (line 3, step N1)" in prompt
    assert "There is no result to accept" in prompt and "# ANSWER" not in prompt
    assert llm.requests[1].grammar == decision_grammar(answer=False)
    # nothing to accept: ANSWER is not even allowed; the decision is a few tokens at most
    assert llm.requests[1].max_tokens == orch.config.agent.decision_max_tokens == 16
    # the fresh program is written after the planning prompt with what went wrong ahead of
    # the instruction, not after the failed program (a small planner copies what it saw last)
    rewrite = llm.prompts[2]
    assert rewrite == second.prompt and rewrite.endswith(
        "# round 1: [eval-error] (line 3, step N1) division by zero\n\n"
        "Instruction: How many red squares are there?\nImages: IMAGE\nProgram:\n"
    )
    query = rewrite.index("# Earlier programs")
    assert rewrite[:query] == llm.prompts[0][:query] and "{N0} / 0" not in rewrite
    assert llm.requests[2].grammar == line_grammar(orch.registry)
    follow_up = [r for r in result.trace.planning if r["kind"] == "follow-up"]
    assert [r["round"] for r in follow_up] == [2] and follow_up[0]["program"] == COUNT_RED


def test_a_follow_up_that_does_not_check_is_repaired_like_a_first_program(agent) -> None:
    broken = COUNT_RED.replace("RESULT=N0", "N1=Eval('{N0} / 0')\nRESULT=N1")
    unchecked = "OBJ0=ColorFind(image=IMAGE, color='red')\nN0=Count(object=REDS)\nRESULT=N0\n"
    orch, llm = agent([broken, "REWRITE", unchecked, COUNT_RED])
    result = orch.run("How many red squares are there?", image=picture())
    assert result.ok and result.output == 1 and len(result.rounds) == 2
    kinds = [(r["kind"], r.get("round")) for r in result.trace.planning]
    assert kinds == [("generate", 1), ("follow-up", 2), ("repair", 2)]
    assert "undefined-name" in llm.prompts[3] and llm.prompts[3].startswith(llm.prompts[2])
    assert result.rounds[1].program == COUNT_RED


def test_a_rewrite_that_copies_the_failed_program_is_sent_back_for_repair(agent) -> None:
    broken = COUNT_RED.replace("RESULT=N0", "N1=Eval('{N0} / 0')\nRESULT=N1")
    orch, llm = agent([broken, "REWRITE", broken, COUNT_RED])
    result = orch.run("How many red squares are there?", image=picture())
    assert result.ok and result.output == 1 and len(result.rounds) == 2
    refused = next(r for r in result.trace.planning if r["kind"] == "follow-up")
    assert refused["errors"][0]["code"] == "error"
    assert refused["errors"][0]["line"] == 3  # where it failed in round 1
    assert "this is round 1's program again, which had: [eval-error]" in llm.prompts[3]
    assert result.rounds[1].program == COUNT_RED
    assert CALLS == {"red": 2}  # round 1 and the repaired program: the copy did not run


def test_an_empty_detection_continues_with_a_rephrased_object(agent) -> None:
    first = "OBJ0=ColorFind(image=IMAGE, color='crimson')\nIMAGE0=Tag(image=IMAGE, object=OBJ0)\nRESULT=IMAGE0\n"
    follow = "OBJ1=ColorFind(image=IMAGE, color='red')\nIMAGE1=Tag(image=IMAGE, object=OBJ1)\nRESULT=IMAGE1\n"
    orch, llm = agent([first, "CONTINUE", follow])
    result = orch.run("Tag the crimson square", image=picture())
    assert result.ok and isinstance(result.output, Image)
    one, two = result.rounds
    assert [i["check"] for i in one.issues] == ["empty-detection"]
    assert "ColorFind found nothing for OBJ0 (line 1), and IMAGE0 used it" in llm.prompts[1]
    assert two.kind == "continue" and two.steps == ("OBJ1", "IMAGE1", "RESULT")
    assert CALLS == {"crimson": 1, "red": 1}
    assert set(result.values) >= {"OBJ0", "IMAGE0", "OBJ1", "IMAGE1", "IMAGE"}


def test_continuation_reads_earlier_values_without_running_them_again(agent) -> None:
    first = (
        "OBJ0=ColorFind(image=IMAGE, color='red')\nOBJ1=ColorFind(image=IMAGE, color='crimson')\n"
        "N0=Count(object=OBJ1)\nRESULT=N0\n"
    )
    follow = "N1=Count(object=OBJ0)\nRESULT=N1\n"
    orch, _ = agent([first, "CONTINUE", follow], checks={"empty_counts": True})
    result = orch.run("How many red or crimson squares are there?", image=picture())
    assert result.ok and result.output == 1
    assert CALLS == {"red": 1, "crimson": 1}  # OBJ0 was read, not computed again
    assert result.rounds[1].steps == ("N1", "RESULT")
    assert [s.meta["round"] for s in result.trace.steps] == [1, 1, 1, 1, 2, 2]


def test_a_wrong_answer_kind_is_rewritten(agent) -> None:
    yes_no = COUNT_RED.replace("RESULT=N0", "A0=Eval('{N0} > 0')\nRESULT=A0")
    orch, llm = agent([COUNT_RED, "REWRITE", yes_no], static_kind=False)
    result = orch.run("Is there a red square?", image=picture())
    assert result.ok and result.answer == "yes"
    assert [i["check"] for i in result.rounds[0].issues] == ["answer-kind"]
    assert "asks for a yes/no answer but the result is a number" in llm.prompts[1]
    assert result.trace.meta["answer_kind"] == "yesno"
    # a result of the wrong kind is not offered for acceptance (a small planner takes it)
    assert "# ANSWER if" not in llm.prompts[1] and "do not keep it" in llm.prompts[1]
    assert "# must end with a yes/no answer." in llm.prompts[1]
    shown = llm.prompts[1].split("# A program that ends with a yes/no answer, for ")[1]
    example = next(e for e in load_library() if shown.startswith(f'"{e.instruction}"'))
    assert kind_by_rules(example.instruction) == "yesno"  # a library example of that kind
    assert f"#   {example.text.splitlines()[-1]}" in shown
    assert llm.requests[1].grammar == decision_grammar(answer=False)


def test_the_answer_kind_can_be_decided_by_the_planner(agent) -> None:
    orch, llm = agent([" number\n", COUNT_RED], answer_kind="planner")
    result = orch.run("Red squares: how many?", image=picture())
    assert result.ok and result.trace.meta["answer_kind"] == "number"
    assert llm.prompts[0].endswith("Instruction: Red squares: how many?\nKind:")
    assert "yesno" in llm.requests[0].grammar
    record = next(r for r in result.trace.planning if r["kind"] == "answer-kind")
    assert record["output"] == " number\n"


TAG_RED = "OBJ0=ColorFind(image=IMAGE, color='red')\nIMAGE0=Tag(image=IMAGE, object=OBJ0)\nRESULT=IMAGE0\n"


def test_max_rounds_returns_the_best_result_with_a_typed_error(agent) -> None:
    orch, _ = agent([COUNT_RED, "REWRITE", TAG_RED], max_rounds=2, static_kind=False)
    result = orch.run("Is there a red square?", image=picture())
    assert not result.ok and result.error.code == RunErrorCode.AGENT_LIMIT
    assert "max_rounds (2)" in result.error.message and "answer-kind" in result.error.message
    assert isinstance(result.output, Image)  # the best round's output is still there
    assert len(result.rounds) == 2 and result.rounds[1].accepted
    assert result.rounds[1].decision == {"action": None, "by": "loop", "stop": "max_rounds"}


def test_repeated_findings_stop_early_even_under_other_names(agent) -> None:
    renamed = COUNT_RED.replace("OBJ0", "OBJ7").replace("N0", "N7")
    orch, _ = agent([COUNT_RED, "REWRITE", renamed], max_rounds=5, static_kind=False)
    result = orch.run("Is there a red square?", image=picture())
    assert result.error.code == RunErrorCode.AGENT_LIMIT
    assert "the same problems came back" in result.error.message
    assert len(result.rounds) == 2 and result.trace.meta["stop"] == "repeated"


def test_a_rewrite_that_ends_on_an_earlier_program_stops_the_loop(agent) -> None:
    """The planner told that its rewrite is round 1's program again writes it again (up to
    blank space): nothing ran, and a third round would be asked the same; the loop stops
    after round 2 with round 1's result and an error saying why."""
    copy = COUNT_RED.replace("\n", "  \n")
    outputs = [COUNT_RED, "REWRITE", COUNT_RED, copy, "N0=Count(object=OBJ0)\nRESULT=N0\n"]
    orch, llm = agent([*outputs, "REWRITE", COUNT_RED, COUNT_RED], max_rounds=5, static_kind=False)
    result = orch.run("Is there a red square?", image=picture())
    assert result.error.code == RunErrorCode.AGENT_LIMIT
    assert "the planner wrote round 1's program again" in result.error.message
    assert "answer-kind: the instruction asks for a yes/no answer" in result.error.message
    assert result.output == 1 and result.rounds[0].accepted  # round 1's result is returned
    assert len(result.rounds) == 2 and result.trace.meta["stop"] == "repeated"
    assert result.rounds[1].error["code"] == "planning" and CALLS == {"red": 1}
    assert len(llm.prompts) == 4


def test_an_empty_detection_that_is_only_counted_is_the_answer(agent) -> None:
    """'How many purple squares?' on a picture with none: 0 is the answer, not a failure;
    'Is there one?' counted and compared: 'no'. One round, no decision asked."""
    empty = "OBJ0=ColorFind(image=IMAGE, color='purple')\nN0=Count(object=OBJ0)\nRESULT=N0\n"
    orch, llm = agent([empty])
    result = orch.run("How many purple squares are there?", image=picture())
    assert result.ok and result.output == 0 and len(result.rounds) == 1
    assert result.rounds[0].issues == () and len(llm.prompts) == 1
    exists = empty.replace("RESULT=N0", "A0=Eval('{N0} > 0')\nRESULT=A0")
    orch, llm = agent([exists])
    result = orch.run("Is there a purple square?", image=picture())
    assert result.ok and result.answer == "no" and len(llm.prompts) == 1
    # counted, but the instruction asks for an image: the empty detection is a finding
    counted_tag = empty.replace("RESULT=N0", "IMAGE0=Tag(image=IMAGE, object=OBJ0)\nRESULT=IMAGE0")
    orch, llm = agent([counted_tag, "ANSWER\n"])
    result = orch.run("Tag the purple square", image=picture())
    assert [i["check"] for i in result.rounds[0].issues] == ["empty-detection"]
    # and with checks.empty_counts the counted one is a finding too
    orch, llm = agent([empty, "ANSWER\n"], checks={"empty_counts": True})
    result = orch.run("How many purple squares are there?", image=picture())
    assert [i["check"] for i in result.rounds[0].issues] == ["empty-detection"]
    assert len(llm.prompts) == 2


def test_a_rephrased_round_that_reproduces_the_result_confirms_it(agent) -> None:
    first = "OBJ0=ColorFind(image=IMAGE, color='purple')\nIMAGE0=Tag(image=IMAGE, object=OBJ0)\nRESULT=IMAGE0\n"
    follow = "OBJ1=ColorFind(image=IMAGE, color='violet')\nIMAGE1=Tag(image=IMAGE, object=OBJ1)\nRESULT=IMAGE1\n"
    orch, llm = agent([first, "CONTINUE", follow], max_rounds=5)
    result = orch.run("Tag the purple square", image=picture())
    assert result.ok and isinstance(result.output, Image)
    one, two = result.rounds
    assert [i["check"] for i in one.issues] == [i["check"] for i in two.issues]
    assert [i["check"] for i in two.issues] == ["empty-detection"]  # recorded, not hidden
    assert two.accepted and two.decision == {"action": "ANSWER", "by": "loop", "stop": "confirmed"}
    assert result.trace.meta["stop"] == "confirmed" and len(llm.prompts) == 3


def test_a_computed_value_of_the_right_kind_is_returned_with_answer_name(agent) -> None:
    tagged = COUNT_RED.replace("RESULT=N0", "IMAGE0=Tag(image=IMAGE, object=OBJ0)\nRESULT=IMAGE0")
    orch, llm = agent([tagged, "ANSWER N0\n"], static_kind=False)
    result = orch.run("How many red squares are there?", image=picture())
    assert result.ok and result.output == 1
    one, two = result.rounds
    assert one.issues[0]["fits"] == ["N0"]
    assert "already computed and of that kind: N0 = 1" in llm.prompts[1]
    assert "# ANSWER and one of these names" in llm.prompts[1]
    assert llm.requests[1].grammar == decision_grammar(answer=False, values=("N0",))
    assert one.decision["action"] == "ANSWER" and one.decision["value"] == "N0"
    assert two.kind == "continue" and two.program == "RESULT=N0\n" and two.accepted
    assert CALLS == {"red": 1}  # nothing computed again


def test_answer_name_in_a_python_program(agent) -> None:
    first = (
        "def execute_command(image):\n    reds = ColorFind(image, 'red')\n"
        "    n = Count(reds)\n    return Tag(image, reds)\n"
    )
    orch, _ = agent([first, "ANSWER n\n"], static_kind=False)
    result = orch.run("How many red squares are there?", image=picture(), form="python")
    assert result.ok and result.output == 1
    assert result.rounds[1].program == "def execute_command(n):\n    return n\n"
    assert CALLS == {"red": 1}


def test_a_name_that_was_not_offered_is_not_returned(agent) -> None:
    tagged = COUNT_RED.replace("RESULT=N0", "IMAGE0=Tag(image=IMAGE, object=OBJ0)\nRESULT=IMAGE0")
    orch, _ = agent(
        [tagged, "ANSWER OBJ0\n"], static_kind=False, take_offered=False
    )  # an unconstrained server could write this
    result = orch.run("How many red squares are there?", image=picture())
    assert result.error.code == RunErrorCode.AGENT_LIMIT
    assert result.rounds[0].decision["error"] == "'OBJ0' was not offered"
    # by default the loop returns the offered value itself rather than end in an error
    orch, _ = agent([tagged, "ANSWER OBJ0\n"], static_kind=False)
    result = orch.run("How many red squares are there?", image=picture())
    assert result.ok and result.output == 1 and result.rounds[1].program == "RESULT=N0\n"
    decision = result.rounds[0].decision
    assert decision["error"] == "'OBJ0' was not offered" and decision["by"] == "loop"
    assert decision["value"] == "N0" and "stop" in decision["why"]


def test_the_tool_call_bound(agent) -> None:
    empty = "OBJ0=ColorFind(image=IMAGE, color='crimson')\nIMAGE0=Tag(image=IMAGE, object=OBJ0)\nRESULT=IMAGE0\n"
    orch, _ = agent([empty], max_tool_calls=1)
    result = orch.run("Tag the crimson square", image=picture())
    assert result.error.code == RunErrorCode.AGENT_LIMIT and "max_tool_calls (1)" in str(
        result.error
    )
    assert len(result.rounds) == 1 and result.rounds[0].tool_calls == 2


def test_a_python_follow_up_gets_earlier_values_as_parameters(agent) -> None:
    first = (
        "def execute_command(image):\n    reds = ColorFind(image, 'crimson')\n"
        "    return Count(reds)\n"
    )
    follow = (
        "def execute_command(image, reds):\n    more = ColorFind(image, 'red')\n"
        "    return Count(more) + len(reds)\n"
    )
    # the opening is written for the model: it writes what follows
    orch, llm = agent(
        [first, "CONTINUE", follow.removeprefix("def execute_command(")],
        checks={"empty_counts": True},
    )
    result = orch.run("How many crimson squares are there?", image=picture(), form="python")
    assert result.ok and result.output == 1
    assert [r.kind for r in result.rounds] == ["plan", "continue"]
    assert "reds = 0 object(s)" in llm.prompts[1].split("# Variables: ")[1]
    assert llm.requests[1].grammar == decision_grammar()
    # no grammar for Python: the form's opening is written for the model
    assert llm.prompts[2].endswith("CONTINUE\nProgram:\ndef execute_command(")
    assert result.rounds[1].program == follow
    assert CALLS == {"crimson": 1, "red": 1}


def test_agent_false_keeps_the_one_shot_run(agent) -> None:
    broken = COUNT_RED.replace("RESULT=N0", "N1=Eval('{N0} / 0')\nRESULT=N1")
    orch, llm = agent([broken])
    result = orch.run("How many red squares are there?", image=picture(), agent=False)
    assert result.error.code == ErrorCode.EVAL_ERROR and result.rounds == []
    assert len(llm.prompts) == 1 and "NOT AVAILABLE" not in llm.prompts[0]
    orch, _ = agent([broken])
    orch.config.agent.enabled = False
    assert orch.run("How many red squares are there?", image=picture()).rounds == []


BIG_BANG = "Tag the 7 main characters on the TV show Big Bang Theory"


def test_a_tool_that_cannot_run_here_ends_the_run_at_once(agent) -> None:
    orch, llm = agent([TAGGING, TAGGING, TAGGING])
    result = orch.run(BIG_BANG, image="sample:astronaut")
    assert result.error.code == RunErrorCode.CAPABILITY
    error = result.error
    assert error.tool == "Classify" and error.role == "clip" and error.line == 3
    assert "vischain models" in error.message and "models.roles.clip" in error.message
    assert len(llm.prompts) == 1 and len(result.rounds) == 1  # no repairs, no more rounds
    assert CALLS == {} and result.trace.steps == []  # nothing ran
    tools_part = llm.prompts[0].split("# Examples")[0]
    assert "Classify(" in tools_part and "NOT AVAILABLE: " in tools_part
    assert "Vqa(" in tools_part  # told about it, with why
    assert result.trace.error["code"] == "capability" and result.trace.error["tool"] == "Classify"


def test_rounds_are_in_the_trace_jsonl_html_and_result(agent, tmp_path: Path) -> None:
    broken = COUNT_RED.replace("RESULT=N0", "N1=Eval('{N0} / 0')\nRESULT=N1")
    orch, _ = agent([broken, "REWRITE", COUNT_RED])
    out = tmp_path / "t"
    result = orch.run("How many red squares are there?", image=picture(), trace_dir=out)
    records = [json.loads(line) for line in (out / "trace.jsonl").read_text().splitlines()]
    rounds = [r for r in records if r["type"] == "round"]
    assert [r["index"] for r in rounds] == [1, 2] and rounds[1]["accepted"]
    assert rounds[0]["observation"].startswith("# What happened:")
    from orchestrator import Trace

    loaded = Trace.load(out)
    assert [r["kind"] for r in loaded.rounds] == ["plan", "rewrite"]
    html = (out / "index.html").read_text()
    assert 'id="round-1"' in html and 'id="round-2" open' in html
    assert 'id="round-1" open' not in html
    assert [r.index for r in result.rounds] == [1, 2]


def test_returned_rounds_and_their_findings() -> None:
    from orchestrator.rounds import findings, returned

    plan = {"index": 1, "kind": "plan", "issues": [{"check": "answer-kind"}]}
    cont = {"index": 2, "kind": "continue", "issues": [], "accepted": True}
    assert returned([plan, cont]) == (1, 2) and findings([plan, cont]) == []
    rewrite = {"index": 2, "kind": "rewrite", "issues": [{"check": "runtime-error"}]}
    assert returned([plan, rewrite]) == (2, 2)  # none accepted: the last
    assert findings([plan, rewrite]) == [{"check": "runtime-error"}]
    assert returned([]) is None and findings([]) == []


def test_a_text_question_answered_with_an_image_is_rewritten_to_read_the_labels(agent) -> None:
    """'What does the sign say?' written as Ocr → Tag: nothing computed is text yet, so no
    name is offered; the rewrite reads the found objects' labels (what Ocr's lines hold)."""
    read = "OBJ0=ColorFind(image=IMAGE, color='red')\nA0=Eval(\"' '.join({OBJ0}.labels)\")\nRESULT=A0\n"
    orch, llm = agent([TAG_RED, "REWRITE", read], static_kind=False)
    result = orch.run("What colour is written on the red square?", image=picture())
    assert result.ok and result.output == "red"
    first = result.rounds[0]
    assert [i["check"] for i in first.issues] == ["answer-kind"] and first.issues[0]["fits"] == []
    assert "# ANSWER and one of these names" not in llm.prompts[1]


def test_a_program_that_never_checked_gets_another_round(agent) -> None:
    """Round 1's program and its repairs do not check (the same error comes back): that
    is not the end of the run while a round is left — it is rewritten at once, without a
    decision call (nothing ran: nothing to accept or continue from; a small planner chose
    CONTINUE and copied the failed program), told what went wrong."""
    undefined = "N0=Count(object=OBJ9)\nRESULT=N0\n"
    orch, llm = agent([undefined, undefined, COUNT_RED])
    result = orch.run("How many red squares are there?", image=picture())
    assert result.ok and result.output == 1
    first, second = result.rounds
    assert first.error["code"] == "planning" and first.program == undefined
    assert [i["check"] for i in first.issues] == ["runtime-error"]
    assert first.decision == {"by": "loop", "why": "the program did not check",
                              "action": "REWRITE", "raw": ""}  # fmt: skip
    assert second.kind == "rewrite" and second.accepted
    assert len(llm.prompts) == 3 and llm.prompts[2] == second.prompt
    assert "Decision:" not in llm.prompts[2]
    assert "# round 1: [planning]" in llm.prompts[2] and "'OBJ9' is not defined" in llm.prompts[2]
    # with no round left, the planning error is the run's error, as before
    orch, _ = agent([undefined, undefined], max_rounds=1)
    result = orch.run("How many red squares are there?", image=picture())
    assert result.error.code == "planning" and len(result.rounds) == 1


YES_RED = COUNT_RED.replace("RESULT=N0", "A0=Eval('{N0} > 0')\nRESULT=A0")


def test_a_program_of_the_wrong_kind_is_repaired_before_it_runs(agent) -> None:
    """The checker knows a program's result type: a count for a yes/no question is sent
    back for repair (no round spent, nothing run); a Vqa-style text is not refused."""
    orch, llm = agent([COUNT_RED, YES_RED])
    result = orch.run("Is there a red square?", image=picture())
    assert result.ok and result.answer == "yes" and len(result.rounds) == 1
    assert CALLS == {"red": 1}  # the refused program never ran
    assert (
        "the result is a number (Number), but the instruction asks for a yes/no" in (llm.prompts[1])
    )
    assert "tools that give one:" not in llm.prompts[1]  # no tool's type is a yes/no
    orch, llm = agent([COUNT_RED, "REWRITE", TAG_RED, COUNT_RED, YES_RED])
    result = orch.run("Tag the red square", image=picture())
    assert "asks for an image: end the program" in llm.prompts[1]
    assert "Tag" in llm.prompts[1].split("tools that give one:")[1]
    # repairs spent on the kind alone: the program runs, and the loop takes it from there
    orch, llm = agent([COUNT_RED, COUNT_RED, "REWRITE", YES_RED])
    result = orch.run("Is there a red square?", image=picture())
    assert result.ok and result.answer == "yes" and len(result.rounds) == 2
    assert [i["check"] for i in result.rounds[0].issues] == ["answer-kind"]


def test_agent_runs_prefer_examples_that_give_the_kind_asked_for(agent) -> None:
    """Agent runs rank examples whose result (by the checker's types, else the example's
    wording) is of the kind asked for; one-shot runs keep today's prompt exactly."""
    instruction = "Is the red square tagged in the picture?"
    orch, llm = agent([YES_RED])
    orch.run(instruction, image=picture())
    agent_prompt = llm.prompts[0]
    orch, llm = agent([YES_RED])
    orch.run(instruction, image=picture(), agent=False)
    one_shot = llm.prompts[0]
    assert one_shot == orch.planner(agent=False).prompt(instruction, ["IMAGE"])[0]
    run = AgentRun(orch, instruction, {"IMAGE": to_image(picture())}, Trace(), voting=1,
                   form=None)  # fmt: skip
    run.expected = run.answer_kind()

    def last_example(prompt: str) -> Example:
        text = prompt.rsplit("Instruction: ", 2)[-2].split("\n", 1)[0]
        return next(e for e in load_library() if e.instruction == text)

    assert run.kind_asked.shows_kind(last_example(agent_prompt))
    assert not run.kind_asked.shows_kind(last_example(one_shot))  # the similar one tags: an image


def test_soft_findings_at_the_limit_are_warnings_hard_ones_errors(agent) -> None:
    """A result of the kind asked for whose only findings are a low score or an unsure
    reply is returned at the round limit, the findings as warnings; with
    ``warn_at_limit: []`` (or a hard finding) it is the typed agent-limit error."""
    low = {"low_confidence": {"ColorFind": 0.95}}
    orch, _ = agent([TAG_RED], max_rounds=1, checks=low)
    result = orch.run("Tag the red square", image=picture())
    assert result.ok and isinstance(result.output, Image)
    assert [w["check"] for w in result.warnings] == ["low-confidence"]
    assert result.trace.meta["warnings"] == result.warnings
    orch, _ = agent([TAG_RED], max_rounds=1, checks=low, warn_at_limit=[])
    result = orch.run("Tag the red square", image=picture())
    assert result.error.code == RunErrorCode.AGENT_LIMIT and result.warnings == []
    # by default such a round is accepted at once; retry_warnings asks the planner first
    orch, llm = agent([TAG_RED], checks=low)
    result = orch.run("Tag the red square", image=picture())
    assert result.ok and len(result.rounds) == 1 and len(llm.prompts) == 1
    assert [w["check"] for w in result.warnings] == ["low-confidence"]
    assert result.rounds[0].decision == {"action": "ANSWER", "by": "checks"}
    # the best round is one with warnings only, over one with fewer but hard findings
    purple = TAG_RED.replace("'red'", "'purple'")
    orch, llm = agent([TAG_RED, "REWRITE", purple], max_rounds=2, checks=low,
                      retry_warnings=True)  # fmt: skip
    result = orch.run("Tag the red or purple square", image=picture())
    assert result.ok and result.rounds[0].accepted and not result.rounds[1].accepted
    assert [i["check"] for i in result.rounds[1].issues] == ["empty-detection"]
    assert "# Check low-confidence:" in llm.prompts[1]


def test_planning_failures_repeat_only_when_their_errors_do(agent) -> None:
    """Two rounds whose programs never checked, for other reasons, are not "the same
    findings": the loop goes on (a third round fixes it); the same error under other names
    is, and the loop stops."""
    undefined = "N0=Count(object=OBJ9)\nRESULT=N0\n"
    unknown = "OBJ0=Nope(image=IMAGE)\nN0=Count(object=OBJ0)\nRESULT=N0\n"
    outputs = [undefined, undefined, unknown, unknown, COUNT_RED]
    orch, _ = agent(outputs, max_rounds=3)
    result = orch.run("How many red squares are there?", image=picture())
    assert result.ok and result.output == 1 and len(result.rounds) == 3
    assert [r.error["code"] for r in result.rounds[:2]] == ["planning", "planning"]
    again = "N1=Count(object=OBJ8)\nRESULT=N1\n"
    orch, _ = agent([undefined, undefined, again, again], max_rounds=3)
    result = orch.run("How many red squares are there?", image=picture())
    assert result.trace.meta["stop"] == "repeated" and len(result.rounds) == 2


BLUE_COUNT = "OBJ0=ColorFind(image=IMAGE, color='blue')\nN0=Count(object=OBJ0)\nRESULT=N0\n"


def test_a_detection_the_instruction_does_not_name_is_repaired_before_it_runs(agent) -> None:
    """tool-fit before a program runs: counting blue regions for "how many red squares?"
    gives a number, but not of what was asked; the program is sent back for repair with
    why, and the repaired one runs — one round, nothing run twice."""
    orch, llm = agent([BLUE_COUNT, COUNT_RED])
    result = orch.run("How many red squares are there?", image=picture())
    assert result.ok and result.output == 1 and len(result.rounds) == 1
    assert CALLS == {"red": 1}  # the blue program never ran
    assert (
        "ColorFind finds 'blue' for OBJ0 (line 1), not what the instruction names (red, squares)"
        in llm.prompts[1]
    )
    assert (
        result.trace.meta["about"] == sorted(result.trace.meta["about"])
        and "red" in result.trace.meta["about"]
    )
    orch, llm = agent([BLUE_COUNT], checks={"tool_fit": False})  # configurable: off, it runs
    result = orch.run("How many red squares are there?", image=picture())
    assert result.ok and result.output == 0 and len(llm.prompts) == 1


PY_COUNT = (
    "def execute_command(image):\n    found = ColorFind(image, '{}')\n    return Count(found)\n"
)


def test_a_detection_the_instruction_does_not_name_starts_another_round(agent) -> None:
    """tool-fit after a round (a Python program is judged from its step records): ANSWER is
    not offered (a small planner accepts anything), the decision prompt says why, and a
    rewrite that finds what is named is accepted. At the round limit the result is
    returned with the finding as a warning (``warn_after_retry``), or, with
    ``warn_after_retry: []``, with the typed agent-limit error."""
    blue, red = PY_COUNT.format("blue"), PY_COUNT.format("red")
    opening = "def execute_command("
    orch, llm = agent([blue, "REWRITE", red.removeprefix(opening)])
    result = orch.run("How many red squares are there?", image=picture(), form="python")
    assert result.ok and result.output == 1
    one, two = result.rounds
    assert [i["check"] for i in one.issues] == ["tool-fit"] and two.accepted
    assert llm.requests[1].grammar == decision_grammar(answer=False)
    assert "# A detection of the program is not about what the instruction names" in llm.prompts[1]
    assert "# ANSWER if" not in llm.prompts[1]
    orch, _ = agent([blue], max_rounds=1)
    result = orch.run("How many red squares are there?", image=picture(), form="python")
    assert result.ok and result.output == 0
    assert [w["check"] for w in result.warnings] == ["tool-fit"]
    orch, _ = agent([blue], max_rounds=1, warn_after_retry=[])
    result = orch.run("How many red squares are there?", image=picture(), form="python")
    assert result.error.code == RunErrorCode.AGENT_LIMIT and "tool-fit" in result.error.message


def test_the_loop_returns_an_offered_value_the_planner_keeps_declining(agent) -> None:
    """ "Find the red square" answered with text, then (after a REWRITE instead of the
    offered ``ANSWER OBJ0``) with a count: the planner declined a value of the kind asked
    for and its next program still gave none, so the loop returns the latest such value
    itself — a one-line follow-up of the round that computed it, with a warning — rather
    than spend its rounds and end in an error."""
    text = "OBJ0=ColorFind(image=IMAGE, color='red')\nA0=Eval(\"' '.join({OBJ0}.labels)\")\nRESULT=A0\n"
    count = "OBJ1=ColorFind(image=IMAGE, color='red')\nN0=Count(object=OBJ1)\nRESULT=N0\n"
    orch, llm = agent([text, "REWRITE", count], static_kind=False, max_rounds=5)
    result = orch.run("Find the red square", image=picture())
    assert result.ok and isinstance(result.output, ObjectList) and len(result.output) == 1
    one, two, three = result.rounds
    assert one.issues[0]["fits"] == ["OBJ0"] and one.decision["action"] == "REWRITE"
    assert two.decision == {"by": "loop", "action": "ANSWER", "value": "OBJ1", "round": 2,
                            "why": "the planner declined it"}  # fmt: skip
    assert three.kind == "continue" and three.program == "RESULT=OBJ1\n" and three.accepted
    assert [w["key"] for w in result.warnings] == ["taken"] and "OBJ1" in result.warnings[0][
        "message"
    ]
    assert len(llm.prompts) == 3  # no decision was asked after round 2
    assert returned(result.rounds) == (2, 3)
    # the value is taken from an earlier round too: the steps behind it start there
    assert returned([
        {"index": 1, "kind": "plan", "decision": {"action": "REWRITE"}},
        {"index": 2, "kind": "rewrite", "decision": {"by": "loop", "round": 1}},
        {"index": 3, "kind": "continue", "accepted": True},
    ]) == (1, 3)  # fmt: skip
    # at the limit the offered value is returned at once; take_offered: false ends in error
    orch, llm = agent([text], static_kind=False, max_rounds=1)
    result = orch.run("Find the red square", image=picture())
    assert result.ok and isinstance(result.output, ObjectList) and len(llm.prompts) == 1
    assert result.rounds[0].decision["why"] == "the loop stopped (max_rounds)"
    orch, _ = agent([text], static_kind=False, max_rounds=1, take_offered=False)
    result = orch.run("Find the red square", image=picture())
    assert result.error.code == RunErrorCode.AGENT_LIMIT


@pytest.mark.parametrize("ranking", ["embeddings", "word overlap"])
def test_an_edit_that_stops_at_objects_is_shown_the_step_that_finishes_it(
    agent, ranking: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "Tag the red square" written as a detection only: the wrong-kind decision shows,
    besides the nearest example that ends with an image, that example's last step as a
    follow-up reading this round's objects, so a CONTINUE finishes what was computed.
    Without an embedding model (examples ranked by word overlap) the nearest image example
    ends with a step that cannot read the objects: the nearest one whose step can is shown."""
    if ranking == "word overlap":
        monkeypatch.setattr(
            ExampleSelector,
            "similarities",
            lambda self, text: lexical_similarity(text, [e.instruction for e in self.examples]),
        )
    found = "OBJ0=ColorFind(image=IMAGE, color='red')\nRESULT=OBJ0\n"
    tag = "IMAGE0=Tag(image=IMAGE, object=OBJ0)\nRESULT=IMAGE0\n"
    orch, llm = agent([found, "CONTINUE", tag], static_kind=False)
    result = orch.run("Tag the red square", image=picture())
    assert result.ok and isinstance(result.output, Image) and CALLS == {"red": 1}
    prompt = llm.prompts[1]
    shown = prompt.split("# A follow-up (CONTINUE) that ends with an image from OBJ0, as")[1]
    first, second = [line.removeprefix("#   ") for line in shown.splitlines()[1:3]]
    target, call = first.split("=", 1)
    tool = call.split("(", 1)[0]
    assert orch.registry.get(tool).spec.output == "Image" and "object=OBJ0" in call
    assert "image=IMAGE" in call and second == f"RESULT={target}"
    # the program after CONTINUE is cued as a follow-up (the 0.5B otherwise wrote the
    # round's program again, its Select repeated)
    assert llm.prompts[2].endswith("CONTINUE\n# Only the follow-up's own steps:\nProgram:\n")


SELECT_LOOP = "OBJ0=ColorFind(image=IMAGE, color='red')\n" + "".join(
    f"OBJ{i}=ColorKeep(object=OBJ{i - 1}, color='red')\n" for i in range(1, 5)
)
EMOJI_RED = (
    "OBJ0=ColorFind(image=IMAGE, color='red')\n"
    "IMAGE0=Emoji(image=IMAGE, object=OBJ0, emoji='ghost')\nRESULT=IMAGE0\n"
)


def test_a_loop_of_repeated_steps_is_resumed_or_dropped_before_the_repair_of_its_kind(
    agent,
) -> None:
    """A small planner's loop (a selection on what the same selection chose, as the 0.5B
    writes with Select until the step limit): the program is written again from before the
    loop, the looping tool not allowed next; when that loops again, the repeats are dropped
    without an LLM call, so the repair of the result's kind sees the short program, and the
    tools it is told give an image start with those of the most similar example (Emoji
    here), which the old list, cut at eight, left out."""
    loop = SELECT_LOOP + "RESULT=OBJ4\n"
    ending = "IMAGE0=Emoji(image=IMAGE, object=OBJ1, emoji='ghost')\nRESULT=IMAGE0\n"
    orch, llm = agent([loop, ending])
    result = orch.run("Hide the red square behind a ghost emoji", image=picture())
    assert result.ok and result.answer.startswith("image") and len(result.rounds) == 1
    assert [r["kind"] for r in result.trace.planning] == ["generate", "resume"]
    assert result.program.source.count("ColorKeep(") == 1
    orch, llm = agent([loop, SELECT_LOOP.split("\n", 2)[2] + "RESULT=OBJ4\n", EMOJI_RED])
    result = orch.run("Hide the red square behind a ghost emoji", image=picture())
    assert result.ok and result.answer.startswith("image") and len(result.rounds) == 1
    assert [r["kind"] for r in result.trace.planning] == ["generate", "resume", "fix", "repair"]
    repair = llm.prompts[2]
    shown = repair[repair.rindex("Instruction: Hide the red square") :]
    assert shown.count("ColorKeep(") == 1 and "RESULT=OBJ1" in shown
    tools = repair.split("tools that give one: ")[1].split(")")[0].split(", ")
    assert tools[0] == "Emoji" and "Tag" in tools  # then those that take the objects
    # one-shot runs keep the program as written
    orch, llm = agent([loop], enabled=False)
    result = orch.run("Find the red square", image=picture())
    assert result.ok and result.program.source.count("ColorKeep(") == 4 and len(llm.prompts) == 1
