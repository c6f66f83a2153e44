"""Decision parsing and the decision grammar, on their own."""

from __future__ import annotations

import pytest

from orchestrator.decisions import Action, DecisionError, decision_grammar, parse_decision
from orchestrator.forms import FORMS, PythonForm, extract_function, extract_program, register_form
from orchestrator.grammar import accepts, line_grammar
from tools import default_registry

REG = default_registry(plugins=False)
FOLLOW_UP = "OBJ1=FaceDet(image=IMAGE)\nRESULT=OBJ1\n"


def test_parse_each_action() -> None:
    assert parse_decision("ANSWER", extract_program).action is Action.ANSWER
    assert parse_decision("answer\n", extract_program).program is None
    d = parse_decision("CONTINUE\n" + FOLLOW_UP, extract_program)
    assert d.action is Action.CONTINUE and d.program == FOLLOW_UP
    d = parse_decision("Decision: REWRITE\n" + FOLLOW_UP + "\nInstruction: x", extract_program)
    assert d.action is Action.REWRITE and d.program == FOLLOW_UP
    py = "CONTINUE\ndef execute_command(image, dogs):\n    return len(dogs)\n"
    d = parse_decision(py, extract_function)
    assert d.program == "def execute_command(image, dogs):\n    return len(dogs)\n"
    assert d.to_dict()["action"] == "CONTINUE"


@pytest.mark.parametrize("text", ["", "maybe", "CONTINUE", "REWRITE\nno program here", "ANSWERS"])
def test_unreadable_decisions_are_typed_errors(text: str) -> None:
    with pytest.raises(DecisionError) as info:
        parse_decision(text, extract_program)
    assert info.value.code == "planning"


def test_the_grammar_wraps_the_line_grammar() -> None:
    g = decision_grammar(line_grammar(REG), "lines")
    assert accepts(g, "ANSWER") and accepts(g, "ANSWER\n")
    assert accepts(g, "CONTINUE\n" + FOLLOW_UP) and accepts(g, "REWRITE\n" + FOLLOW_UP)
    assert not accepts(g, "CONTINUE\nOBJ1=Nope(image=IMAGE)\nRESULT=OBJ1\n")
    assert not accepts(g, "MAYBE\n" + FOLLOW_UP) and not accepts(g, "ANSWER\n" + FOLLOW_UP)
    assert not accepts(g, "CONTINUE\n")  # a follow-up needs a program
    py = decision_grammar(None, "python")
    assert accepts(py, "CONTINUE\ndef execute_command(image, x):\n    return x\n")
    assert not accepts(py, "CONTINUE\nprint(1)\n") and accepts(py, "ANSWER")
    no_answer = decision_grammar(line_grammar(REG), "lines", answer=False)
    assert not accepts(no_answer, "ANSWER") and accepts(no_answer, "REWRITE\n" + FOLLOW_UP)


def test_the_grammar_asks_for_the_registered_forms_own_opening() -> None:
    """No branching on form names: a plug-in form's fixed opening is what a follow-up
    program must start with."""

    class Fenced(PythonForm):
        name = "fenced-python"
        opening = "# fenced\ndef execute_command("

    register_form(Fenced())
    try:
        g = decision_grammar(None, "fenced-python")
        assert accepts(g, "CONTINUE\n# fenced\ndef execute_command(image):\n    return 1\n")
        assert not accepts(g, "CONTINUE\ndef execute_command(image):\n    return 1\n")
        assert accepts(g, "ANSWER")
    finally:
        del FORMS["fenced-python"]


def test_answer_may_name_an_offered_computed_value() -> None:
    d = parse_decision("ANSWER N0\n", extract_program)
    assert d.action is Action.ANSWER and d.value == "N0" and d.program is None
    assert d.to_dict()["value"] == "N0"
    assert parse_decision("ANSWER\nN0", extract_program).value is None
    assert "value" not in parse_decision("ANSWER", extract_program).to_dict()
    g = decision_grammar(line_grammar(REG), "lines", values=("N0", "ANSWER1"))
    assert accepts(g, "ANSWER N0") and accepts(g, "ANSWER ANSWER1\n") and accepts(g, "ANSWER")
    assert not accepts(g, "ANSWER OBJ0")  # only the offered names
    assert not accepts(decision_grammar(line_grammar(REG), "lines"), "ANSWER N0")
    py = decision_grammar(None, "python", values=("count",))
    assert accepts(py, "ANSWER count\n")
