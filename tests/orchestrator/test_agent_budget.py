"""The agent loop's time budget (``agent.max_seconds``) bounds every LLM call it and its
planner make: decisions, programs and each repair. Time is an injected clock that only the
scripted LLM's calls move, so nothing here depends on how busy the machine is."""

from __future__ import annotations

from dataclasses import replace

from orchestrator import Trace
from orchestrator.agent import AgentRun
from orchestrator.answer_kind import kind_by_rules
from orchestrator.errors import RunErrorCode
from tests.orchestrator.test_agent import COUNT_RED, agent, picture  # noqa: F401 (a fixture)
from tests.support.scripted_llm import ScriptedLLM
from tools.backends.llm import DEFAULT_REQUEST, Completion, LLMRequest
from tools.convert import to_image

BROKEN = "IMAGE1=Tag(image=IMAGE, object=\n"  # never checks, and no fix-it applies
EMPTY_TAG = (
    "OBJ0=ColorFind(image=IMAGE, color='crimson')\nIMAGE0=Tag(image=IMAGE, object=OBJ0)\n"
    "RESULT=IMAGE0\n"
)


class Clock:
    """Seconds as the loop counts them: only the LLM's calls take time."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def slow(llm: ScriptedLLM, clock: Clock, seconds: float) -> list[tuple[float, float]]:
    """Make every call of ``llm`` take ``seconds`` on ``clock`` (and say so in its
    completions); returns the list the (start, end) of each call is appended to."""
    calls: list[tuple[float, float]] = []
    complete = llm.complete

    def timed(prompt: str, request: LLMRequest = DEFAULT_REQUEST) -> list[Completion]:
        start = clock.now
        out = complete(prompt, request)
        clock.now += seconds
        calls.append((start, clock.now))
        return [replace(c, seconds=seconds) for c in out]

    llm.complete = timed  # type: ignore[method-assign]
    return calls


def run(orch, instruction: str, clock: Clock):
    loop = AgentRun(orch, instruction, {"IMAGE": to_image(picture())}, Trace(), voting=1,
                    form=None, clock=clock)  # fmt: skip
    return loop, loop.run()


def test_no_repair_starts_without_the_time_it_takes(agent) -> None:  # noqa: F811
    """Round 1's program never checks; each call takes 40 s of a 50 s budget: after the
    first, no repair is started (it would end past the budget), and the run ends with the
    typed agent-limit error saying max_seconds, not after every repair the planner has."""
    assert kind_by_rules("Tag the crimson square") is not None  # no answer-kind call
    orch, llm = agent([BROKEN, BROKEN, BROKEN], max_seconds=50)
    clock = Clock()
    calls = slow(llm, clock, 40.0)
    loop, result = run(orch, "Tag the crimson square", clock)
    assert result.error.code == RunErrorCode.AGENT_LIMIT
    assert "max_seconds (50)" in result.error.message
    assert [start for start, _ in calls if start >= loop.deadline] == []
    assert len(calls) == 1 and all(end <= loop.deadline for _, end in calls)
    assert len(result.rounds) == 1 and result.rounds[0].error["code"] == "planning"


def test_a_follow_ups_repairs_stop_when_the_budget_is_spent(agent) -> None:  # noqa: F811
    """Round 1 runs (its detection finds nothing), the decision is CONTINUE and the
    follow-up never checks; each call takes 30 s of a 100 s budget. The planning call, the
    decision and the follow-up fit; its repair would not: none is made after the budget is
    spent, and round 1's result is returned with the agent-limit error."""
    orch, llm = agent([EMPTY_TAG, "CONTINUE", BROKEN, BROKEN, BROKEN], max_seconds=100)
    clock = Clock()
    calls = slow(llm, clock, 30.0)
    loop, result = run(orch, "Tag the crimson square", clock)
    assert [start for start, _ in calls if start >= loop.deadline] == []
    assert len(calls) == 3 and all(end <= loop.deadline for _, end in calls)
    assert result.error.code == RunErrorCode.AGENT_LIMIT
    assert "max_seconds (100)" in result.error.message
    one, two = result.rounds
    assert one.accepted and one.issues[0]["check"] == "empty-detection"
    assert two.kind == "continue" and two.error["code"] == "planning"
    assert "no time was left" in two.error["message"]
    assert len(llm.outputs) == 2  # the two repairs were never asked for


def test_a_budget_spent_before_planning_asks_nothing(agent) -> None:  # noqa: F811
    orch, llm = agent([EMPTY_TAG], max_seconds=10)
    clock = Clock()
    calls = slow(llm, clock, 30.0)
    loop = AgentRun(orch, "Tag the crimson square", {"IMAGE": to_image(picture())}, Trace(),
                    voting=1, form=None, clock=clock)  # fmt: skip
    clock.now = 10.0  # the budget is spent before the loop starts planning
    result = loop.run()
    assert calls == [] and result.error.code == RunErrorCode.AGENT_LIMIT
    assert "max_seconds (10)" in result.error.message


def test_no_decision_is_started_without_the_time_it_takes(agent) -> None:  # noqa: F811
    """The planning call took 40 s of a 60 s budget: a decision could take as long, so
    none is asked; round 1's result is returned with the agent-limit error."""
    orch, llm = agent([COUNT_RED], max_seconds=60, static_kind=False)
    clock = Clock()
    calls = slow(llm, clock, 40.0)
    _, result = run(orch, "Is there a red square?", clock)
    assert result.error.code == RunErrorCode.AGENT_LIMIT and "max_seconds" in str(result.error)
    assert len(calls) == 1  # the planning call; no decision was asked
    assert "the slowest so far took 40 s" in result.error.message


def test_the_executor_gets_what_is_left_of_the_budget(agent) -> None:  # noqa: F811
    """The planning call spent the whole budget: the program still runs (no LLM call), but
    the executor's deadline has passed, so its first step stops with a time-limit error."""
    orch, llm = agent([COUNT_RED], max_seconds=60)
    clock = Clock()
    slow(llm, clock, 60.0)
    _, result = run(orch, "How many red squares are there?", clock)
    assert result.error.code == RunErrorCode.AGENT_LIMIT and "max_seconds" in str(result.error)
    assert result.rounds[0].error["code"] == "time-limit"
