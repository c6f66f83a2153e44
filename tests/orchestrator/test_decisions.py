"""Decision parsing and the decision grammar, on their own."""

from __future__ import annotations

import pytest

from orchestrator.decisions import (
    Action,
    DecisionError,
    decision_grammar,
    parse_decision,
    program_cue,
)
from orchestrator.grammar import accepts


def test_parse_each_action() -> None:
    assert parse_decision("ANSWER").action is Action.ANSWER
    assert parse_decision("answer\n").action is Action.ANSWER
    assert parse_decision("CONTINUE").action is Action.CONTINUE
    d = parse_decision("Decision: REWRITE\nOBJ0=FaceDet(image=IMAGE)")
    assert d.action is Action.REWRITE and d.value is None
    assert parse_decision(" rewrite: a new program").action is Action.REWRITE
    assert parse_decision("CONTINUE").to_dict() == {
        "action": "CONTINUE",
        "raw": "CONTINUE",
    }


@pytest.mark.parametrize(
    "text", ["", "maybe", "ANSWERS", "REWRITE_and_a_follow_up=Count(OBJ0)", "CONTINUE2"]
)
def test_unreadable_decisions_are_typed_errors(text: str) -> None:
    """A word that only starts with a keyword is not one: the program part cannot swallow
    the keyword, nor the keyword the program."""
    with pytest.raises(DecisionError) as info:
        parse_decision(text)
    assert info.value.code == "planning"


def test_the_grammar_allows_the_keyword_alone() -> None:
    g = decision_grammar()
    assert all(accepts(g, a) for a in ("ANSWER", "CONTINUE", "REWRITE"))
    assert not accepts(g, "ANSWER\n") and not accepts(g, "REWRITE\nOBJ0=FaceDet(image=IMAGE)")
    assert not accepts(g, "REWRITE_and_a_follow_up") and not accepts(g, "MAYBE")
    no_answer = decision_grammar(answer=False)
    assert not accepts(no_answer, "ANSWER") and accepts(no_answer, "REWRITE")
    assert accepts(no_answer, "CONTINUE")


def test_answer_may_name_an_offered_computed_value() -> None:
    d = parse_decision("ANSWER N0\n")
    assert d.action is Action.ANSWER and d.value == "N0"
    assert d.to_dict()["value"] == "N0"
    assert parse_decision("ANSWER\nN0").value is None
    assert "value" not in parse_decision("ANSWER").to_dict()
    g = decision_grammar(values=("N0", "ANSWER1"))
    assert accepts(g, "ANSWER N0") and accepts(g, "ANSWER ANSWER1") and accepts(g, "ANSWER")
    assert not accepts(g, "ANSWER OBJ0")  # only the offered names
    assert not accepts(decision_grammar(), "ANSWER N0")
    no_result = decision_grammar(answer=False, values=("count",))
    assert accepts(no_result, "ANSWER count") and not accepts(no_result, "ANSWER")


def test_the_program_cue_is_the_keyword_then_the_examples_cue() -> None:
    assert program_cue(Action.REWRITE) == "REWRITE\nProgram:\n"
    assert program_cue(Action.CONTINUE) == "CONTINUE\nProgram:\n"
    assert program_cue(Action.CONTINUE, "# lead\n") == "CONTINUE\n# lead\nProgram:\n"
