"""LLMRequest, the one sampling value every LLM backend takes, and the base class's
default complete_many (through the scripted test double, which inherits it)."""

from __future__ import annotations

import math

import pytest

from tests.support.scripted_llm import ScriptedLLM
from tools.backends.llm import DEFAULT_REQUEST, LanguageModel, LLMRequest


def test_defaults_are_one_greedy_sample() -> None:
    assert LLMRequest() == DEFAULT_REQUEST
    assert DEFAULT_REQUEST.n == 1 and DEFAULT_REQUEST.greedy
    assert DEFAULT_REQUEST.stop == () and DEFAULT_REQUEST.grammar is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_tokens": 0}, "max_tokens must be at least 1"),
        ({"n": 0}, "n must be at least 1"),
        ({"temperature": -0.1}, "temperature must be >= 0"),
        ({"temperature": math.nan}, "temperature must be >= 0"),
        ({"top_p": 0.0}, r"top_p must be in \(0, 1\]"),
        ({"top_p": 1.5}, r"top_p must be in \(0, 1\]"),
        ({"stop": "\n"}, "not one string"),
        ({"stop": ("\n", "")}, "non-empty strings"),
        ({"grammar": "  "}, "grammar must be GBNF text"),
        ({"seed": -1}, "seed must be >= 0"),
    ],
)
def test_bad_values_are_rejected_when_built(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LLMRequest(**changes)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):  # and when derived
        LLMRequest().with_(**changes)


def test_a_request_is_a_frozen_hashable_value() -> None:
    request = LLMRequest(max_tokens=8, stop=["\n\n", "END"])  # type: ignore[arg-type]
    assert request.stop == ("\n\n", "END")
    assert request == LLMRequest(max_tokens=8, stop=("\n\n", "END"))
    assert len({request, LLMRequest(max_tokens=8, stop=("\n\n", "END"))}) == 1
    with pytest.raises(AttributeError):
        request.n = 2  # type: ignore[misc]
    hot = request.with_(temperature=0.7, n=3, seed=5)
    assert (hot.max_tokens, hot.stop, hot.n, hot.temperature) == (8, ("\n\n", "END"), 3, 0.7)
    assert not hot.greedy and request.greedy  # the original is unchanged
    assert [hot.sample_seed(i) for i in range(3)] == [5, 6, 7]
    assert request.sample_seed(0) is None


def test_the_scripted_double_records_the_request_it_got() -> None:
    llm = ScriptedLLM(["a", "b", "c"])
    assert isinstance(llm, LanguageModel)
    request = LLMRequest(max_tokens=5, grammar='root ::= "a"', n=2)
    assert [c.text for c in llm.complete("p", request)] == ["a", "b"]
    assert llm.requests == [request, request] and llm.grammars == ['root ::= "a"'] * 2


def test_complete_many_gives_one_completion_per_prompt_in_order() -> None:
    llm = ScriptedLLM(["one", "two", "three"])
    request = LLMRequest(max_tokens=4, seed=3)
    assert [c.text for c in llm.complete_many(["p1", "p2", "p3"], request)] == [
        "one",
        "two",
        "three",
    ]
    assert llm.prompts == ["p1", "p2", "p3"] and llm.requests == [request] * 3
    with pytest.raises(ValueError, match="n must be 1"):
        llm.complete_many(["p"], request.with_(n=2))
