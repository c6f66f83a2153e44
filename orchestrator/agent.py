"""The agent loop behind ``run()``: the planner sees what its tools returned, and acts on it.

Algorithm (one :class:`AgentRun` holds a run's state):

1. Decide once what kind of answer the instruction asks for (:mod:`.answer_kind`: its
   wording, else the planner's LLM under a grammar of kind names).
2. Round 1: the planner writes a program (repairs and voting as in one-shot runs), with
   the examples whose result is of the kind asked for ranked first (their result type as
   the checker knows it, else their wording: a small planner copies a pattern that returns
   the right kind). Every program the loop writes is checked for its result's type before
   it runs (``agent.static_kind``, :mod:`.wrong_kind`): one that cannot give the kind
   asked for (an image for a yes/no question) is sent back for repair, not run (when the
   repairs are spent on that alone, it runs, and its result is checked after). A program
   that needs a tool that exists but cannot run here ends the run at once with a typed
   :class:`~.capability.CapabilityError` naming the tool, its model role and how to get it.
   A program that still does not check after its repairs is a finding like a runtime
   error: the next round (when one is left) is a REWRITE at once, without a decision (nothing
   ran: there is nothing to accept or continue from), told what went wrong.
   A line program whose detection finds nothing the instruction names (decided once from
   its wording, :mod:`.tool_fit`: ``FaceDet`` for "how many wheels?") is sent back for
   repair the same way as one of the wrong kind (``agent.checks.tool_fit``).
3. Execute the round; the checks (:mod:`.checks`) read its step records and its result.
4. No finding: accept the result (or, with ``decide: always``, ask anyway). Otherwise render
   an observation (:mod:`.observation`) and ask the LLM for a decision (:mod:`.decisions`,
   grammar-constrained): ANSWER accepts (not offered after a round without a result, nor
   after a tool-fit finding, nor for one of the wrong kind: then the prompt says which
   kind is needed and shows the most similar example program that gives it); ``ANSWER
   NAME`` (offered when the answer-kind check names computed values of the kind asked
   for) returns that value through a one-line follow-up (when the planner declines it and
   its next round still has no result of that kind, or the loop would end in an error,
   the loop returns it itself, with a warning: ``agent.take_offered``); CONTINUE runs a follow-up
   program that starts from every value computed so far (finished steps are not run
   again); REWRITE runs a fresh program, written after the planning prompt with what
   went wrong in each round ahead of the instruction (not after the failed program,
   which a small planner copies; tool results are memoised, so repeated calls cost
   nothing).
5. A round whose result is the previous round's again, with only soft findings (an empty
   detection, a low score, an unsure answer: what the tools found, or could not tell, may
   simply be so), is accepted: the re-phrased round confirmed it. Otherwise stop at a
   capability error, when the same findings come back (compared without the program's names
   and lines; for a program that never checked, its errors' text), when a follow-up's
   planner ends on an earlier round's program again (refused, so nothing ran: it would fail
   the same way), at ``max_rounds``, ``max_tool_calls`` or ``max_seconds`` — or when less
   time is left than the slowest LLM call so far took, so no generation outlives the run's
   budget (asked before every LLM call the loop and its planner make: the answer-kind
   question, each decision, each program and each repair; a round left without a program by
   it ends the loop): the best round's result is returned with a typed ``agent-limit`` error
   saying why — unless it computed a result of the kind asked for whose only findings are
   ``agent.warn_at_limit`` ones (a low score, an unsure reply: a user can weigh them; by
   default): it is returned without an error, those findings as ``RunResult.warnings`` (and
   the trace's meta). Such a round does not even start another unless
   ``agent.retry_warnings`` (re-phrasing rarely changes a score or a model's doubt, and a
   small planner's re-plan tends to break a working program); every accepted result carries
   its round's findings as warnings. The configured fallback still runs when the loop ends
   in an error. Every round goes to ``RunResult.rounds`` and the trace.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from programs import template
from sandbox import ErrorCode, ProgramError, VisChainError
from tools.backends.llm import LLMRequest
from tools.errors import ToolErrorCode
from tools.types import value_type

from . import take_offered
from .answer_kind import AnswerKind, kind_by_rules, kind_grammar, kind_prompt, parse_kind
from .capability import CapabilityError, capability_error
from .checks import SOFT, Check, Issue, run_checks
from .decisions import (
    Action,
    Decision,
    DecisionError,
    decision_grammar,
    parse_decision,
    program_cue,
)
from .errors import RunErrorCode
from .forms import get_form
from .observation import Observation, render
from .planner import PlanningError, ResultCheck, fill, normal_source
from .render import summarize
from .rounds import Round, RoundKind
from .tool_fit import content, named, program_steps, proper_names, unfit
from .trace import StepStatus
from .wrong_kind import KindAsked

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from tools.types import Image

    from .api import Orchestrator, RunResult
    from .forms import Parsed
    from .planner import Plan
    from .trace import Trace

log = logging.getLogger("vischain.agent")


class Stop(StrEnum):
    ACCEPTED = "accepted"
    CONFIRMED = "confirmed"  # a re-phrased round gave the same result: it stands
    CAPABILITY = "capability"
    PLANNING = "planning"
    REPEATED = "repeated"
    MAX_ROUNDS = "max_rounds"
    MAX_TOOL_CALLS = "max_tool_calls"
    MAX_SECONDS = "max_seconds"
    BAD_DECISION = "bad_decision"


class AgentLimitError(VisChainError):
    """The loop stopped before a round's result passed its checks."""

    code = RunErrorCode.AGENT_LIMIT


@dataclass
class _Current:
    """The round in progress."""

    index: int
    kind: RoundKind
    form: str
    program: str | None
    prompt: str | None
    first_step: int
    started: float
    wall: float
    result: RunResult | None = None
    issues: list[Issue] = field(default_factory=list)
    observation: Observation | None = None
    decision: Decision | None = None
    tool_calls: int = 0


class AgentRun:
    """One ``run()`` with the loop on: per-run state and a short main loop."""

    def __init__(
        self,
        orch: Orchestrator,
        instruction: str,
        named: Mapping[str, Image],
        trace: Trace,
        *,
        voting: int,
        form: str | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``clock`` tells the seconds the time budget (``agent.max_seconds``) is counted in
        (``time.monotonic`` by default)."""
        self.orch = orch
        self.config = orch.config.agent
        self.instruction = instruction
        self.named = dict(named)
        self.trace = trace
        self.voting = voting
        self.form_choice = form
        self.planner = orch.planner(agent=True)
        self.llm = self.planner.llm
        self.clock = clock
        self.started = clock()
        self.deadline = self.started + self.config.max_seconds
        self.out_of_time = False  # the budget refused an LLM call the round needed
        self.expected = AnswerKind.ANY
        self.about: frozenset[str] = frozenset()  # what the instruction names (tool-fit)
        self.proper: frozenset[str] = frozenset()  # the names it gives (tool-fit)
        self.form = "lines"
        self.base_prompt = ""  # the planning prompt: decisions extend it (prefix cache)
        self.known: dict[str, Any] = {}
        self.rounds: list[Round] = []
        self.results: list[RunResult] = []
        self.current: _Current | None = None
        self.tool_calls = 0
        self.issues: list[list[Issue]] = []  # each closed round's findings
        self.llm_seconds = 0.0  # the slowest LLM call so far (the next one may take as long)
        # the latest computed value of the kind asked for that a check named (round, name);
        # whether the planner was offered one and did not return it; whether the loop did
        self.offered: tuple[int, str] | None = None
        self.declined = False
        self.taken = False
        self.loop_warnings: list[dict[str, Any]] = []
        self.follow_up_shown = False  # the last decision prompt showed a follow-up example
        self.repeated: int | None = None  # the round whose program the planner wrote again

    # --- main loop -----------------------------------------------------------------------

    def run(self) -> RunResult:
        self.expected = self.answer_kind()
        if self.config.checks.tool_fit:
            self.about = named(self.instruction, self.config.checks.fit_synonyms)
            self.proper = proper_names(self.instruction)
            self.trace.meta["about"] = sorted(self.about)
        result = self.plan()
        while True:
            stop = self.review(result)
            if self.should_take(stop):
                result = self.take(stop)
                continue
            if stop is not None:
                return self.end(stop)
            decision = self.decide()
            if decision is None:
                if self.should_take(Stop.BAD_DECISION):
                    result = self.take(Stop.BAD_DECISION)
                    continue
                return self.end(Stop.BAD_DECISION)
            if decision.action is Action.ANSWER and decision.value is None:
                return self.end(Stop.ACCEPTED)
            result = self.follow(decision)

    # --- steps of the loop ---------------------------------------------------------------

    def answer_kind(self) -> AnswerKind:
        """The kind of answer the instruction asks for, decided once (in the trace's meta;
        an LLM call is also a planning record)."""
        mode = self.config.answer_kind
        kind = kind_by_rules(self.instruction) if mode != "planner" else None
        by = "rules"
        if kind is None and mode != "rules" and not self.may_call():
            by = "none (no time was left to ask)"
        elif kind is None and mode != "rules":
            by = "planner"
            prompt = kind_prompt(self.instruction)
            t0 = time.perf_counter()
            wall = time.time()
            request = LLMRequest(max_tokens=4, stop=("\n",), grammar=kind_grammar())
            completion = self.llm.complete(prompt, request)[0]
            kind = parse_kind(completion.text)
            self._timed(time.perf_counter() - t0)
            self.trace.add_planning({
                "kind": "answer-kind", "prompt": prompt, "output": completion.text,
                "program": "", "model": self.llm.spec.label(),
                "prompt_tokens": completion.prompt_tokens,
                "completion_tokens": completion.completion_tokens,
                "seconds": round(time.perf_counter() - t0, 3), "started": wall,
            })  # fmt: skip
        kind = kind or AnswerKind.ANY
        self.trace.meta.update(answer_kind=str(kind), answer_kind_by=by)
        return kind

    def plan(self) -> RunResult:
        """Round 1: the planner's program, executed (or the reason there is none)."""
        self.start(RoundKind.PLAN, None, None)
        inputs = self.inputs
        kind_known = self.expected is not AnswerKind.ANY
        try:
            plans = self.planner.plan(
                self.instruction,
                inputs,
                n=self.voting,
                form=self.form_choice,
                prefer=self.kind_asked.shows_kind if kind_known else None,
                result_check=self.result_check(),
                budget=self.may_call,
                drop_repeats=self.config.drop_repeats,
            )
        except VisChainError as exc:
            return self.orch_result(None, exc)
        for plan in plans:
            for attempt in plan.attempts:
                record = attempt.record()
                self._timed(float(record.get("seconds") or 0.0))
                self.trace.add_planning(record)
        first = plans[0]
        self.form = first.form
        self.base_prompt = first.attempts[0].prompt if first.attempts else ""
        valid = [p for p in plans if p.ok]
        # no program, and no time to repair one (a runnable one still runs: no LLM call)
        self.out_of_time = not valid and any(p.out_of_time for p in plans)
        current = self.current
        assert current is not None
        current.form = self.form
        if not valid:
            current.program = first.source
            if first.source:
                self.trace.set_program(first.source, first.form)
            return self.orch_result(None, first.error or PlanningError("no valid program"))
        current.program = valid[0].source
        if len(valid) == 1:
            return self.orch.run_program(
                valid[0].program, self.named, self.trace, deadline=self.run_deadline()
            )
        result = self.orch.vote(valid, self.named, self.trace)
        current.program = result.trace.program
        return result

    def review(self, result: RunResult) -> Stop | None:
        """Check the round's result; return why the loop stops, or None to ask the LLM."""
        current = self.current
        assert current is not None
        current.result = result
        steps = self.trace.steps[current.first_step :]
        current.tool_calls = sum(
            1
            for s in steps
            if s.tool
            and s.status in (StepStatus.OK, StepStatus.ERROR)
            and not s.meta.get("memoised")
        )
        self.tool_calls += current.tool_calls
        error = self.capability(result)
        if error is not None:
            current.result = self.orch_result(None, error)
            return Stop.CAPABILITY
        if self.out_of_time:
            return Stop.MAX_SECONDS  # an LLM call the round needed would outlive the budget
        if (
            result.program is None
            and result.error is not None
            and current.index == 1
            and (not current.program or self.limit() is not None)
        ):
            # planning failed and its repairs were spent; a program that still does not
            # check gets another round (a fresh program) when one is left
            return Stop.PLANNING
        current.issues = run_checks(
            steps,
            output=result.output,
            error=result.error,
            expected=self.expected,
            config=self.config.checks,
            values={n: v for n, v in result.values.items() if n not in self.named},
            about=self.about,
            names=content(self.instruction),
            queries=current.kind is not RoundKind.CONTINUE,
            proper=self.proper,
        )
        again = self.repeat_of(result)
        if again is not None:
            self.repeated = again
            return Stop.REPEATED
        offered = [
            n for i in current.issues if i.check is Check.ANSWER_KIND for n in i.fits
            if not n.startswith("_") and n in result.values
        ]  # fmt: skip
        if offered:
            self.offered = (current.index, offered[0])
        if not current.issues and self.config.decide == "issues":
            return Stop.ACCEPTED
        if (
            current.issues
            and not self.config.retry_warnings
            and self._warnings_only(result.error, result.output, [i.check for i in current.issues])
        ):
            return Stop.ACCEPTED  # an answer of the kind asked for, with warnings
        if current.issues and self.rounds:
            before = self.issues[-1]
            if (
                all(i.check in SOFT for i in current.issues + before)
                and self.results[-1].error is None
                and _same(result.output, self.results[-1].output)
            ):
                return Stop.CONFIRMED
            if self._signature(current.issues) == self._signature(before):
                return Stop.REPEATED
        limit = self.limit()
        if limit is not None:
            return Stop.ACCEPTED if not current.issues else limit
        current.observation = render(
            steps,
            result=self.describe(result),
            issues=current.issues,
            variables=self.variables(result) if get_form(self.form).takes_values else None,
            budget=self.config.observation_tokens,
            count_tokens=self.llm.count_tokens,
        )
        return None

    def repeat_of(self, result: RunResult) -> int | None:
        """The earlier round whose program this round's planner wrote again (the same text
        up to blank space), when it ended on that copy: the copy was refused — it would
        run as that round ran and fail the same way — so nothing ran, and another round
        would be asked what this one was (measured with Qwen2.5-Coder-0.5B on "How many
        wheels are there in the two pictures together?": rounds 2 and 3 both wrote round
        1's program, twice each, after being told it was round 1's program again)."""
        current = self.current
        assert current is not None
        if (
            current.kind is RoundKind.PLAN
            or result.program is not None
            or not isinstance(result.error, PlanningError)
            or not current.program
        ):
            return None
        mine = normal_source(current.program)
        return next(
            (r.index for r in self.rounds if r.program and normal_source(r.program) == mine),
            None,
        )

    def decide(self) -> Decision | None:
        """Ask the LLM what to do: the keyword alone, under the decision grammar, a few
        tokens at most (None: an unreadable answer)."""
        current = self.current
        assert current is not None and current.observation is not None
        self.follow_up_shown = False
        unchecked = current.result is not None and isinstance(current.result.error, PlanningError)
        if unchecked:
            # nothing ran, so there is nothing to accept or continue from: a fresh program,
            # without asking (measured with Qwen2.5-Coder-0.5B: it chose CONTINUE, and the
            # follow-up written after the failed program copied it)
            self._decision_meta = {"by": "loop", "why": "the program did not check"}
            current.decision = Decision(Action.REWRITE)
            return current.decision
        names = [n for n in self.known_after(current) if not n.startswith("_")]
        prompt = self.base_prompt + (current.program or "")
        if not prompt.endswith("\n"):
            prompt += "\n"
        # a round without a result has nothing to accept, and a result of the wrong kind, or
        # computed with a detection of something the instruction does not name, must not
        # be accepted (a small planner accepts anything): ANSWER is not offered
        wrong_kind = any(i.check is Check.ANSWER_KIND for i in current.issues)
        unfit_tools = any(i.check is Check.TOOL_FIT for i in current.issues)
        answer = (
            current.result is not None
            and current.result.error is None
            and not wrong_kind
            and not unfit_tools
        )
        # values a check found to be of the kind asked for: ANSWER NAME returns one
        ready = tuple(dict.fromkeys(n for i in current.issues for n in i.fits if n in names))
        if wrong_kind:
            offer, self.follow_up_shown = self.kind_asked.wrong_kind_text(
                current.program, current.result, self.inputs[0]
            )
        elif unfit_tools:
            offer = template("decision_tool_fit")
        else:
            offer = template("decision_answer" if answer else "decision_no_answer")
        if ready:
            offer += fill(template("decision_answer_value"), values=", ".join(ready))
        prompt += fill(
            template("decision"),
            round=str(current.index),
            observation=current.observation.text,
            answer=offer,
            variables=", ".join(names) or "none",
        )
        t0 = time.perf_counter()
        request = LLMRequest(
            max_tokens=self.config.decision_max_tokens,
            temperature=self.orch.config.planner.temperature,
            stop=("\n",),
            grammar=decision_grammar(answer=answer, values=ready),
        )
        completion = self.llm.complete(prompt, request)[0]
        self._timed(time.perf_counter() - t0)
        self._decision_meta = {
            "prompt": prompt,
            "raw": completion.text,
            "seconds": round(time.perf_counter() - t0, 3),
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
        }
        try:
            decision = parse_decision(completion.text)
            if decision.action is Action.ANSWER and decision.value is None and not answer:
                raise DecisionError(
                    "ANSWER was not offered: the result is not of the kind asked for"
                    if wrong_kind
                    else "ANSWER was not offered: a detection is not about what the "
                    "instruction names"
                    if unfit_tools
                    else "ANSWER was not offered: the round has no result to accept"
                )
            if decision.value is not None and decision.value not in ready:
                # an unconstrained server may name anything: only an offered value is returned
                raise DecisionError(f"'{decision.value}' was not offered")
        except DecisionError as exc:
            self._decision_meta.update(action=None, error=exc.message)
            self.declined = self.declined or bool(ready)
            return None
        current.decision = decision
        self.declined = self.declined or (bool(ready) and decision.value is None)
        return decision

    def should_take(self, stop: Stop | None) -> bool:
        """Whether the loop returns the offered value itself (:mod:`.take_offered`)."""
        return take_offered.should_take(self, stop)

    def take(self, stop: Stop | None) -> RunResult:
        """A round of the loop's own that returns the offered value (:mod:`.take_offered`)."""
        return take_offered.take(self, stop)

    def follow(self, decision: Decision) -> RunResult:
        """The next round: a follow-up (CONTINUE, or ``ANSWER NAME``: a one-line follow-up
        that returns NAME) or a fresh program (REWRITE). A CONTINUE or REWRITE program is
        written after the decision under the form's own grammar, checked and repaired like
        a first program (one that needs a tool that cannot run here is a capability
        error), then run; a follow-up starts from every value computed so far."""
        kind = RoundKind.REWRITE if decision.action is Action.REWRITE else RoundKind.CONTINUE
        prompt = self._decision_meta.get("prompt", "")
        known = self.known_after(self.current) if kind is RoundKind.CONTINUE else {}
        self.close()
        if kind is RoundKind.REWRITE:
            prompt = self.rewrite_prompt()
        elif decision.value is None:
            # after a follow-up was shown, a line says the program is one (measured with
            # Qwen2.5-Coder-0.5B on "Put a sunglasses emoji over her face": without it, its
            # follow-up repeated the round's Select fifteen times; with it, it ended with
            # the Emoji step shown)
            lead = template("decision_follow_up_cue") if self.follow_up_shown else ""
            prompt += program_cue(decision.action, lead)
        self.start(kind, None, prompt)
        current = self.current
        assert current is not None
        if decision.value is not None:
            program: Any = get_form(self.form).returning(decision.value)
        else:
            plan = self.write(prompt, {**known, **self.named})
            if plan.program is None:
                current.program = plan.source
                if plan.source:
                    self.trace.set_program(plan.source, self.form)
                return self.orch_result(None, plan.error or PlanningError("no valid program"))
            program = plan.program
        current.program = getattr(program, "source", program)
        result = self.orch.run_program(
            program,
            self.named,
            self.trace,
            form=self.form,
            known=known,
            deadline=self.run_deadline(),
        )
        if kind is RoundKind.CONTINUE:
            result.values = {**known, **result.values}
        return result

    def write(self, prompt: str, readable: Mapping[str, Any]) -> Plan:
        """A follow-up or fresh program written after ``prompt``, checked (it may read the
        ``readable`` values) and repaired; its LLM calls go to the trace."""
        plan = self.planner.write(
            prompt,
            self.instruction,
            {n: value_type(v) for n, v in readable.items()},
            form=self.form,
            temperature=self.orch.config.planner.temperature,
            kind="follow-up",
            avoid=self.tried(),
            result_check=self.result_check(),
            budget=self.may_call,
            drop_repeats=self.config.drop_repeats,
        )[0]
        self.out_of_time = plan.out_of_time and plan.program is None
        for attempt in plan.attempts:
            record = attempt.record()
            self._timed(float(record.get("seconds") or 0.0))
            self.trace.add_planning(record)
        return plan

    # --- the kind of answer asked for ------------------------------------------------------

    @property
    def kind_asked(self) -> KindAsked:
        """The kind of answer asked for, judged against the run's planner, instruction and
        form as they are now (:mod:`.wrong_kind`): its examples, checks and prompt text."""
        return KindAsked(self.planner, self.expected, self.instruction, self.form)

    def result_check(self) -> ResultCheck | None:
        """The checks of a program before it runs: its result's type (``agent.static_kind``)
        and its detections (``agent.checks.tool_fit``)."""
        kind = self.config.static_kind and self.expected is not AnswerKind.ANY
        if not kind and not (self.config.checks.tool_fit and self.about):
            return None
        return self.check_result

    def check_result(self, type_name: str | None, program: Parsed) -> ProgramError | None:
        """An error to repair before a program runs: its result, by its type, cannot be of
        the kind asked for (:meth:`.wrong_kind.KindAsked.check_kind`), or a detection it
        depends on finds nothing the instruction names (:mod:`.tool_fit`, line programs: a
        Python program's calls are judged from its step records after it ran)."""
        if self.config.static_kind and self.expected is not AnswerKind.ANY:
            wrong = self.kind_asked.check_kind(type_name, program)
            if wrong is not None:
                return wrong
        if not self.config.checks.tool_fit or not self.about:
            return None
        checks = self.config.checks
        follow_up = self.current is not None and self.current.kind is RoundKind.CONTINUE
        steps = program_steps(program, self.planner.registry)
        misses = unfit(self.about, steps, subjects=checks.fit_subjects,
                       synonyms=checks.fit_synonyms, queries=not follow_up,
                       proper=self.proper)  # fmt: skip
        if not misses:
            return None
        miss = misses[0]
        message = miss.message(content(self.instruction))
        return ProgramError(ErrorCode.ERROR, message, miss.step.line, 1, miss.step.name)

    def failed(self) -> dict[str, tuple[int, str, int]]:
        """The programs of earlier rounds that failed or had findings: program → (round,
        what was wrong, the line that failed), the first round that wrote each."""
        out: dict[str, tuple[int, str, int]] = {}
        for rnd in self.rounds:
            problem = "; ".join(i["message"] for i in rnd.issues[:2]) or (
                (rnd.error or {}).get("message")
            )
            if rnd.program and problem and rnd.program not in out:
                out[rnd.program] = (rnd.index, problem, (rnd.error or {}).get("line") or 1)
        return out

    @property
    def inputs(self) -> list[str]:
        """The names of the run's inputs, as the planner is told them."""
        return list(self.named) or ["IMAGE"]

    def tried(self) -> dict[str, ProgramError]:
        """The programs of earlier rounds that failed or had findings, and why (at the line
        that failed): written again, one is sent back for repair instead of being run."""
        return {
            program: ProgramError(
                ErrorCode.ERROR,
                f"this is round {index}'s program again, which had: {problem}; fix it",
                line,
                1,
            )
            for program, (index, problem, line) in self.failed().items()
        }

    def rewrite_prompt(self) -> str:
        """What a REWRITE's program is written after: the planning prompt (instructions,
        tools, examples), then what went wrong in each earlier round, then the instruction.
        The failed programs themselves are not shown: a small greedy planner copies the
        program it saw last for the same instruction, so what follows the instruction is
        the examples' pattern (a program written again is still refused and repaired)."""
        query = self.planner.query(self.instruction, self.inputs)
        base = self.base_prompt
        head = base[: -len(query)] if base.endswith(query) else base + "\n"
        tried = "".join(
            f"# round {index}: {problem}\n" for index, problem, _ in self.failed().values()
        )
        return head + fill(template("rewrite"), tried=tried) + query

    # --- rounds ----------------------------------------------------------------------------

    def start(self, kind: RoundKind, program: str | None, prompt: str | None) -> None:
        index = len(self.rounds) + 1
        self.trace.round = index
        self.current = _Current(
            index,
            kind,
            self.form,
            program,
            prompt,
            len(self.trace.steps),
            time.perf_counter(),
            time.time(),
        )
        self._decision_meta: dict[str, Any] = {}

    def close(self, stop: Stop | None = None, *, accepted: bool = False) -> Round:
        """Freeze the round in progress into a :class:`Round` (``stop``: why the loop
        ended after it, if it did)."""
        current = self.current
        assert current is not None and current.result is not None
        result = current.result
        if current.decision is not None:
            decision = {"by": "planner", **self._decision_meta, **current.decision.to_dict()}
        elif self._decision_meta:
            decision = {"by": "planner", **self._decision_meta}
        elif stop is Stop.ACCEPTED:
            decision = {"action": "ANSWER", "by": "checks"}
        elif stop is Stop.CONFIRMED:
            decision = {"action": "ANSWER", "by": "loop", "stop": str(stop)}
        else:
            decision = {"action": None, "by": "loop", "stop": str(stop)}
        rnd = Round(
            index=current.index,
            kind=current.kind,
            form=current.form,
            program=current.program,
            prompt=current.prompt,
            steps=tuple(s.step for s in self.trace.steps[current.first_step :]),
            answer=None if result.error is not None else _answer(result),
            error=result.error.to_dict() if result.error is not None else None,
            issues=tuple(i.to_dict() for i in current.issues),
            observation=current.observation.text if current.observation else None,
            decision=decision,
            tool_calls=current.tool_calls,
            seconds=round(time.perf_counter() - current.started, 3),
            started=current.wall,
            accepted=accepted,
        )
        self.rounds.append(rnd)
        self.results.append(result)
        self.issues.append(list(current.issues))
        self.current = None
        self.trace.round = None
        return rnd

    def end(self, stop: Stop) -> RunResult:
        """The run's result: the accepted round's, or the best one with a typed error."""
        current = self.current
        assert current is not None and current.result is not None
        if stop in (Stop.ACCEPTED, Stop.CONFIRMED, Stop.CAPABILITY, Stop.PLANNING):
            chosen = len(self.rounds)
            self.close(stop, accepted=True)
            final = self.results[chosen]
            if final.error is None and self.rounds[chosen].issues:
                self._warn(final, chosen)
        else:
            self.close(stop)
            chosen = self._best()
            best = self.results[chosen]
            self.rounds[chosen] = _accepted(self.rounds[chosen])
            if self._round_warnings_only(chosen, at_limit=True):
                # a computed result of the kind asked for, with only findings a user can
                # weigh (a low score, an unsure reply): returned, the findings as warnings
                final = self.orch_result(best.output, None, best)
                self._warn(final, chosen)
            else:
                final = self.orch_result(best.output, self.limit_error(stop, chosen), best)
        if self.loop_warnings and final.error is None:
            final.warnings = [*final.warnings, *self.loop_warnings]
            self.trace.meta["warnings"] = final.warnings
        for rnd in self.rounds:
            self.trace.add_round(rnd.to_dict())
        program = self.rounds[chosen].program
        if program:
            self.trace.set_program(program, self.rounds[chosen].form)
        self.trace.meta["rounds"] = len(self.rounds)
        self.trace.meta["stop"] = str(stop)
        final.rounds = list(self.rounds)
        return final

    # --- helpers ---------------------------------------------------------------------------

    def orch_result(
        self, output: Any, error: VisChainError | None, like: RunResult | None = None
    ) -> RunResult:
        from .api import RunResult

        if like is None:
            return RunResult(output, None, self.trace, error, dict(self.known))
        return RunResult(output, like.program, self.trace, error, like.values, like.step_errors)

    def capability(self, result: RunResult) -> CapabilityError | None:
        """A capability error for the round: planned with a tool that cannot run here, or
        a step that found no model for its role."""
        error = result.error
        if isinstance(error, CapabilityError):
            return error
        if error is None or error.code != ToolErrorCode.NO_BACKEND or error.step is None:
            return None
        tool = next((s.tool for s in self.trace.steps if s.step == error.step and s.tool), None)
        if tool is None or tool not in self.orch.registry:
            return None
        return capability_error(tool, self.orch.registry, self.orch.pool, line=error.line,
                                step=error.step)  # fmt: skip

    def limit(self) -> Stop | None:
        """Why no further round may start (None: one may). Another round needs a decision,
        an LLM call: it is not started when less time is left than the slowest so far."""
        if len(self.rounds) + 1 >= self.config.max_rounds:
            return Stop.MAX_ROUNDS
        if self.tool_calls >= self.config.max_tool_calls:
            return Stop.MAX_TOOL_CALLS
        if not self.may_call():
            return Stop.MAX_SECONDS
        return None

    def may_call(self, seconds: float = 0.0) -> bool:
        """Whether another LLM call may start: more time is left of ``max_seconds`` than
        the slowest LLM call so far took (``seconds``: the slowest of a planning still
        under way), so no call outlives the run's budget. Asked before every call the loop
        and its planner make (decisions, programs, repairs)."""
        return self.clock() + max(self.llm_seconds, seconds) < self.deadline

    def run_deadline(self) -> float:
        """The run's deadline as the executor counts it (a ``time.monotonic()`` instant)."""
        return time.monotonic() + (self.deadline - self.clock())

    def _timed(self, seconds: float) -> None:
        self.llm_seconds = max(self.llm_seconds, seconds)

    def limit_error(self, stop: Stop, chosen: int) -> VisChainError:
        rnd = self.rounds[chosen]
        again = self.repeated
        why = {
            Stop.REPEATED: f"the planner wrote round {again}'s program again (refused: it "
            "would fail the same way)"
            if again
            else "the same problems came back",
            Stop.MAX_ROUNDS: f"max_rounds ({self.config.max_rounds}) was reached",
            Stop.MAX_TOOL_CALLS: f"max_tool_calls ({self.config.max_tool_calls}) was reached",
            Stop.MAX_SECONDS: f"max_seconds ({self.config.max_seconds:g}) was reached, or "
            f"too little of it was left for another LLM call (the slowest so far took "
            f"{self.llm_seconds:.0f} s)",
            Stop.BAD_DECISION: "the planner's decision could not be read",
        }[stop]
        problems = "; ".join(f"{i['check']}: {i['message']}" for i in rnd.issues[:3])
        return AgentLimitError(
            f"the agent stopped after {len(self.rounds)} round(s) because {why}; returning "
            f"round {rnd.index}'s result" + (f", which still has: {problems}" if problems else "")
        )

    def _best(self) -> int:
        """The round to return when none was accepted: no error first, then only findings
        that are warnings at the limit, then the fewest findings, then the latest."""
        scored = [
            (r.error is None, self._round_warnings_only(i, at_limit=True), -len(r.issues), i)
            for i, r in enumerate(self.rounds)
        ]
        return max(scored)[3]

    def _warnings_only(
        self, error: Any, output: Any, checks: list[str], *, at_limit: bool = False
    ) -> bool:
        """Whether a result (its error, its output) is computed and its findings (their
        ``checks``) are all ``warn_at_limit`` ones — at the limit, ``warn_after_retry`` ones
        too (so the loop may return it without an error)."""
        warn = set(self.config.warn_at_limit)
        if at_limit:
            warn |= set(self.config.warn_after_retry)
        return error is None and output is not None and all(c in warn for c in checks)

    def _round_warnings_only(self, index: int, *, at_limit: bool = False) -> bool:
        """:meth:`_warnings_only` for closed round ``index`` (0-based)."""
        rnd = self.rounds[index]
        checks = [i["check"] for i in rnd.issues]
        return self._warnings_only(rnd.error, self.results[index].output, checks, at_limit=at_limit)

    def _warn(self, final: RunResult, index: int) -> None:
        """Round ``index``'s findings as the result's warnings (and the trace's meta)."""
        final.warnings = [dict(i) for i in self.rounds[index].issues]
        self.trace.meta["warnings"] = final.warnings

    def known_after(self, current: _Current | None) -> dict[str, Any]:
        """Every value a follow-up program may read: inputs and computed values."""
        values = dict(current.result.values) if current and current.result else {}
        return {**values, **self.named}

    def variables(self, result: RunResult) -> dict[str, dict[str, Any]]:
        """Typed summaries of the values a Python follow-up can take as parameters."""
        out: dict[str, dict[str, Any]] = {}
        for name, value in result.values.items():
            try:
                out[name] = summarize(value)
            except Exception:  # an exotic value: still name it
                out[name] = {"type": type(value).__name__, "text": ""}
        return out

    @staticmethod
    def describe(result: RunResult) -> str:
        if result.error is not None:
            return f"error {result.error}"
        summary = summarize(result.output)
        return f"{summary.get('type')} {summary.get('text')}"

    @staticmethod
    def _signature(issues: list[Issue]) -> list[tuple[str, str]]:
        return sorted(i.signature for i in issues)


def _same(a: Any, b: Any) -> bool:
    """Whether two results are the same value (images by their pixels' hash)."""
    try:
        return summarize(a) == summarize(b)
    except Exception:  # an exotic value: not provably the same
        return False


def _answer(result: RunResult) -> str | None:
    try:
        return result.answer
    except Exception:  # a summary must never break the loop
        return None


def _accepted(rnd: Round) -> Round:
    from dataclasses import replace

    return replace(rnd, accepted=True)


__all__ = ["AgentLimitError", "AgentRun", "Stop"]
