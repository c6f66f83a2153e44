"""The planner: an LLM writes a program for an instruction; its program form checks it;
errors go back to the LLM for repair.

generate (under the tools' grammar) → extract the program from the output → parse and
check it with its form (:mod:`orchestrator.forms`) against the tools that can run → on
errors, show the model every error (line, code, message) and ask again, up to
``repair_rounds`` times. Every LLM call is recorded
(prompt, raw output, errors, tokens, seconds) for the trace.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from typing import Any

from programs import Example, load_library, template
from sandbox import (
    ErrorCode,
    Limits,
    Program,
    ProgramError,
    ProgramInvalid,
    VisChainError,
)
from sandbox.hints import apply_fixes
from sandbox.repeats import repeated_steps
from tools.backends.llm import Completion, LanguageModel, LLMRequest
from tools.patch import api_docs
from tools.registry import Registry

from .capability import CapabilityError, fix_text, needed_unavailable
from .config import PlannerConfig
from .errors import RunErrorCode
from .examples import ExampleSelector, TextEmbedder
from .forms import FORMS, Parsed, get_form
from .grammar import gbnf_to_regex, line_grammar

log = logging.getLogger("vischain.planner")
#: the values a program may read: names (images), or names with their type names
InputNames = Sequence[str] | Mapping[str, str]
#: judges a checked program by its result's type name (None: the form cannot say) and the
#: program: None to accept it, else the error to repair (e.g. an image where a number is asked)
ResultCheck = Callable[[str | None, Parsed], ProgramError | None]
#: whether another LLM call may start, told how long the slowest call of this planning took
#: so far (seconds): the agent loop's time budget (``agent.max_seconds``)
Budget = Callable[[float], bool]
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


class PlanningError(VisChainError):
    """The planner could not produce a valid program."""

    code = RunErrorCode.PLANNING


@dataclass
class Attempt:
    """One LLM call of the planner, as the trace shows it."""

    kind: str  # generate | repair | follow-up | fix (the checker's fix-its, no LLM call) | resume
    prompt: str
    output: str
    program: str
    errors: list[dict[str, Any]] = field(default_factory=list)
    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    examples: list[str] = field(default_factory=list)
    grammar: bool = False
    grammar_respected: bool | None = None
    candidate: int = 0
    started: float = 0.0  # wall-clock time the LLM call began

    def record(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Plan:
    """A candidate program: checked (``program`` is runnable) or not, with the LLM calls
    that produced it."""

    source: str | None
    program: Parsed | None
    attempts: list[Attempt]
    error: VisChainError | None = None
    form: str = "lines"
    out_of_time: bool = False  # the budget stopped it before an LLM call it needed

    @property
    def ok(self) -> bool:
        return self.program is not None


def fill(text: str, **values: str) -> str:
    """Substitute ``{name}`` placeholders in one pass (braces inside values stay as they are)."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)


@lru_cache(maxsize=8)
def _grammar_regex(grammar: str) -> re.Pattern[str]:
    return gbnf_to_regex(grammar)


@dataclass
class _Prompting:
    """How the planner asks for programs of one form (the form itself parses and checks).
    ``request`` is how to sample it (max_tokens, stop strings, grammar); a call derives
    temperature, ``n`` and seed."""

    name: str
    template: str
    selector: ExampleSelector
    request: LLMRequest
    extract: Callable[[str], str]

    @property
    def grammar(self) -> str | None:
        return self.request.grammar


class Planner:
    """Writes checked programs for instructions, with one LLM and one set of tools."""

    def __init__(
        self,
        registry: Registry,
        llm: LanguageModel,
        config: PlannerConfig,
        *,
        examples: Sequence[Example] | None = None,
        embedder: TextEmbedder | None = None,
        limits: Limits | None = None,
        unavailable: Mapping[str, str] | None = None,
        catalog: Registry | None = None,
        stop_repeated: bool = False,
    ) -> None:
        """``unavailable`` (tool name → why) and ``catalog`` (every tool, those included)
        make the planner capability-aware: it is told which tools exist but cannot run
        here, may write them (grammar and examples cover the catalog), and a program that
        needs one is answered at once with a :class:`CapabilityError` instead of repairs.
        ``stop_repeated`` ends the repairs early when a repair brings back the same errors."""
        self.registry = registry
        self.stop_repeated = stop_repeated
        self.unavailable = dict(unavailable or {})
        self.catalog = catalog if catalog is not None and self.unavailable else registry
        self.llm = llm
        self.config = config
        self.limits = limits or Limits()
        library = list(examples) if examples is not None else load_library()
        self._result_types: dict[Example, str | None] = {}

        def selector(form: str) -> ExampleSelector:
            chosen = [e for e in library if e.form == form and self._runnable(e)]
            return ExampleSelector(chosen, embedder=embedder, count_tokens=llm.count_tokens)

        def request(stop: tuple[str, ...], grammar: str | None = None) -> LLMRequest:
            return LLMRequest(max_tokens=config.max_tokens, stop=stop, grammar=grammar)

        self.forms = {
            name: _Prompting(
                name,
                form.template,
                selector(name),
                request(
                    form.stop,
                    form.grammar(self.catalog, max_steps=config.max_steps)
                    if config.grammar
                    else None,
                ),
                form.extract,
            )
            for name, form in FORMS.items()
        }

    @property
    def grammar(self) -> str | None:
        return self.forms["lines"].grammar

    @property
    def selector(self) -> ExampleSelector:
        return self.forms["lines"].selector

    def _runnable(self, example: Example) -> bool:
        """Whether every tool an example calls is one this planner may use: examples that
        show unavailable tools teach the model to write programs that cannot run."""
        try:
            form = get_form(example.form)
            program = form.parse(example.program, limits=self.limits)
        except ProgramInvalid:
            return False
        return all(t in self.catalog for t in form.tools_used(program))

    def example_result_type(self, example: Example) -> str | None:
        """The type name of an example's result as the checker sees it with these tools
        (None: it does not check here, or its form cannot say); computed once per example."""
        if example not in self._result_types:
            try:
                form = get_form(example.form)
                program = form.parse(example.program, limits=self.limits)
                checked = form.check(program, self.catalog, inputs=list(example.inputs))
                self._result_types[example] = form.result_type(checked)
            except ProgramInvalid:
                self._result_types[example] = None
        return self._result_types[example]

    def nearest_example(
        self, instruction: str, form: str, accept: Callable[[Example], bool]
    ) -> Example | None:
        """The example of ``form`` most similar to ``instruction`` among those ``accept``
        takes (None: none)."""
        selector = self.forms[form].selector
        if not selector.examples:
            return None
        scores = selector.similarities(instruction)
        ranked = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
        return next((selector.examples[i] for i in ranked if accept(selector.examples[i])), None)

    # --- prompts -----------------------------------------------------------------------------

    def tool_docs(self) -> str:
        """One compact entry per tool: signature and first sentence; then the tools that
        exist but cannot run here, and why (capability-aware planners only)."""
        lines = []
        for t in self.registry:
            spec = t.spec
            summary = spec.description.split(". ")[0].rstrip(".")
            lines.append(f"{spec.usage()}  # {summary}")
        if self.unavailable:
            lines.append(template("unavailable").rstrip("\n"))
            for name, why in self.unavailable.items():
                tool = self.catalog.get(name)
                role, reason, _ = _role_and_reason(tool, why)
                need = f"no '{role}' model here" if role else _short(reason)
                lines.append(f"{tool.spec.usage()}  # NOT AVAILABLE: {need}")
        return "\n".join(lines)

    def render_example(self, example: Example) -> str:
        return fill(
            template("example"),
            instruction=example.instruction,
            inputs=", ".join(example.inputs),
            program=example.text,
        )

    def choose_form(self, instruction: str, form: str | None = None) -> str:
        """``form`` or the configured one; for 'auto', the form of the most similar example."""
        form = form or self.config.form
        if form != "auto":
            return form
        best = {
            name: (
                max(f.selector.similarities(instruction), default=-1.0)
                if f.selector.examples
                else -1.0
            )
            for name, f in self.forms.items()
        }
        return max(best, key=lambda n: best[n])

    @staticmethod
    def query(instruction: str, inputs: Sequence[str]) -> str:
        """The instruction in the examples' layout, ending on its ``Program:`` cue line."""
        text = fill(
            template("example"), instruction=instruction, inputs=", ".join(inputs), program=""
        )
        return text.rstrip("\n") + "\n"

    def prompt(
        self,
        instruction: str,
        inputs: Sequence[str],
        form: str = "lines",
        *,
        prefer: Callable[[Example], bool] | None = None,
    ) -> tuple[str, list[Example]]:
        """The planning prompt and the examples in it; ``prefer`` marks examples to rank
        higher (see :meth:`ExampleSelector.select`)."""
        spec = self.forms[form]
        query = self.query(instruction, inputs)
        parts = {
            "tools": self.tool_docs(),
            "api": api_docs(
                [t.spec.name for t in self.registry][:6],
                available={t.spec.name for t in self.registry},
            ),
        }
        budget = self.config.example_token_budget
        # what the model can take: the context minus the fixed text and the answer
        context = self.llm.context_length
        fixed = self.llm.count_tokens(fill(template(spec.template), examples="", **parts) + query)
        room = context - fixed - spec.request.max_tokens - 16
        if room < 0:
            raise PlanningError(
                f"the prompt does not fit {self.llm.spec.label()}'s context of {context} "
                f"tokens (tools and instruction take {fixed}); use fewer tools or a model "
                "with a longer context"
            )
        budget = min(budget, room)
        chosen = spec.selector.select(
            instruction,
            k=self.config.examples,
            budget_tokens=budget,
            inputs=inputs,
            render=self.render_example,
            prefer=prefer,
        )
        text = template(spec.template)
        head = fill(text, examples="\n".join(self.render_example(e) for e in chosen), **parts)
        # the instructions and tool docs, then those plus the examples, begin every prompt
        # with these examples: a local model keeps their state (on disk, across processes)
        if "{examples}" in text:
            self.llm.cache_prefix(fill(text[: text.index("{examples}")], **parts))
        self.llm.cache_prefix(head + "\n")
        return head + "\n" + query, chosen

    # --- planning ----------------------------------------------------------------------------

    def plan(
        self,
        instruction: str,
        inputs: Sequence[str],
        *,
        n: int = 1,
        temperature: float | None = None,
        form: str | None = None,
        prefer: Callable[[Example], bool] | None = None,
        result_check: ResultCheck | None = None,
        budget: Budget | None = None,
        drop_repeats: bool = False,
    ) -> list[Plan]:
        """``n`` candidate programs, each generated, checked and repaired independently
        (``prefer`` ranks examples, see :meth:`prompt`; ``result_check``, ``budget`` and
        ``drop_repeats`` see :meth:`write`)."""
        if not instruction.strip():
            raise PlanningError("the instruction is empty")
        form = self.choose_form(instruction, form)
        if form not in self.forms:
            raise PlanningError(f"unknown program form '{form}'")
        prompt, chosen = self.prompt(instruction, inputs, form, prefer=prefer)
        temp = self.config.temperature if temperature is None else temperature
        if n > 1 and temperature is None:
            temp = self.config.voting_temperature
        plans = self.write(
            prompt, instruction, inputs, form=form, n=n, temperature=temp, opening=False,
            result_check=result_check, budget=budget, drop_repeats=drop_repeats,
        )  # fmt: skip
        for plan in plans:
            if plan.attempts:
                plan.attempts[0].examples = [e.instruction for e in chosen]
        return plans

    def write(
        self,
        prompt: str,
        instruction: str,
        inputs: InputNames,
        *,
        form: str,
        n: int = 1,
        temperature: float | None = None,
        kind: str = "generate",
        opening: bool = True,
        avoid: Mapping[str, ProgramError] | None = None,
        result_check: ResultCheck | None = None,
        budget: Budget | None = None,
        drop_repeats: bool = False,
    ) -> list[Plan]:
        """``n`` programs of ``form`` written after ``prompt`` (which ends where a program
        begins), each decoded under the form's own request (grammar, stop strings,
        ``max_tokens``), then checked and repaired like any first program. The agent loop
        writes its follow-up programs with this. ``inputs`` names the values a program may
        read (a mapping gives their type names; a sequence means images). With ``opening``, a
        form with a fixed opening and no grammar gets the opening written for it (the
        prompt need not end on the examples' cue). ``avoid`` maps programs already tried to
        why they are not wanted (e.g. they failed, at that line): writing one of them again
        is that error in it, shown to the model for repair like any other. ``result_check``
        judges a checked program's result type (see :data:`ResultCheck`): its error is
        repaired like any other, and when the repairs are spent on it alone, the last
        program that failed only it is returned (runnable: its result is checked again after
        it ran). ``budget`` is asked before every LLM call, the first and each repair: when
        it refuses, no call is made and the plan so far is returned, ``out_of_time`` (no
        program when the first call was refused). With ``drop_repeats``, a checked line
        program's steps that repeat their chain's call (:func:`sandbox.repeats.repeated_steps`:
        a small model looping on ``Select``) are dropped by their fix-its before anything
        else judges it."""
        spec = self.forms[form]
        if budget is not None and not budget(0.0):
            error = PlanningError(f"no time was left to plan a program for: {instruction!r}")
            return [Plan(None, None, [], error, form=form, out_of_time=True) for _ in range(n)]
        start = get_form(form).opening if opening and spec.grammar is None else ""
        temp = self.config.temperature if temperature is None else temperature
        t0 = time.perf_counter()
        wall = time.time()
        completions = self.llm.complete(prompt + start, spec.request.with_(temperature=temp, n=n))
        seconds = time.perf_counter() - t0
        plans = []
        for i, completion in enumerate(completions):
            if start:
                completion = replace(completion, text=start + completion.text)
            share = seconds / max(len(completions), 1)
            first = self._attempt(spec, kind, prompt, completion, share, i)
            first.started = wall
            plan = self._check_and_repair(
                spec, instruction, inputs, prompt, first, avoid or {}, result_check, budget,
                drop_repeats,
            )  # fmt: skip
            plans.append(plan)
        return plans

    def _attempt(
        self,
        spec: _Prompting,
        kind: str,
        prompt: str,
        completion: Completion,
        seconds: float,
        candidate: int,
    ) -> Attempt:
        output = completion.text
        respected = None
        if spec.grammar is not None:
            respected = _grammar_regex(spec.grammar).fullmatch(output) is not None
            if not respected and completion.finish_reason != "length":
                log.warning(
                    "the LLM's output does not follow the grammar; is the server ignoring it?"
                )
        return Attempt(
            kind=kind,
            prompt=prompt,
            output=output,
            program=spec.extract(output),
            model=self.llm.spec.label(),
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            seconds=round(completion.seconds or seconds, 3),
            grammar=spec.grammar is not None,
            grammar_respected=respected,
            candidate=candidate,
        )

    def _resume(
        self, spec: _Prompting, attempts: Sequence[Attempt], looped: Attempt, line: int, tool: str
    ) -> Attempt:
        """The program ``looped`` up to ``line`` (its first step that repeats its chain's
        call, see :mod:`sandbox.repeats`), continued by the LLM after the prompt that wrote
        it, under a grammar whose next step calls a tool other than ``tool`` that takes a
        value of ``tool``'s result type (what the loop chose; kind "resume" in the trace)."""
        asked = next((a.prompt for a in reversed(attempts) if a.prompt), "")
        kept = [s.strip() for s in looped.program.split("\n")[: line - 1] if s.strip()]
        prefix = "".join(f"{s}\n" for s in kept)
        left = max(self.config.max_steps - len(kept), 1)
        grammar = line_grammar(self.catalog, max_steps=left, first=self._taking(tool))
        request = spec.request.with_(grammar=grammar, temperature=self.config.temperature)
        t0 = time.perf_counter()
        wall = time.time()
        completion = self.llm.complete(asked + prefix, request)[0]
        seconds = time.perf_counter() - t0
        attempt = self._attempt(
            spec, "resume", asked + prefix, completion, seconds, looped.candidate
        )
        attempt.program = prefix + attempt.program
        attempt.started = wall
        return attempt

    def _taking(self, tool: str) -> list[str]:
        """The tools other than ``tool`` with a parameter that takes its result."""
        if tool not in self.catalog:
            return []
        spec = self.catalog.get(tool).spec
        return [name for name in self.catalog.taking(spec.output) if name != spec.name]

    @staticmethod
    def _fixed(failed: Attempt, source: str) -> Attempt:
        """The attempt that applied the checker's fix-its to ``failed``'s program: no LLM
        call, so no prompt, model or tokens (``kind`` "fix" in the trace)."""
        return Attempt(
            kind="fix", prompt="", output=source, program=source, candidate=failed.candidate,
            started=time.time(),
        )  # fmt: skip

    def check(
        self,
        source: str,
        inputs: InputNames,
        form: str = "lines",
    ) -> tuple[Parsed | None, list[ProgramError]]:
        """The runnable program, or every problem found in it. A program that needs a tool
        that cannot run here raises :class:`CapabilityError` (capability-aware planners).
        ``inputs``: the names a program may read (a mapping gives their type names, and a
        name the program assigns is its own, not an input; a sequence means images)."""
        program, errors, _ = self._check(source, inputs, form)
        return program, errors

    def _check(
        self, source: str, inputs: InputNames, form: str
    ) -> tuple[Parsed | None, list[ProgramError], str | None]:
        """:meth:`check`, and the type name of the program's result as the checker knows it
        (None when it does not check, or its form cannot say)."""
        if not source.strip():
            error = ProgramError(ErrorCode.EMPTY_PROGRAM, "no program found in the output", 1, 1)
            return None, [error], None
        try:
            program_form = get_form(form)
            program = program_form.parse(source, limits=self.limits)
            if self.unavailable:
                self.refuse_unavailable(program)
            typed = (
                program_form.readable(program, inputs)
                if isinstance(inputs, Mapping)
                else list(inputs)
            )
            checked = program_form.check(program, self.registry, inputs=typed)
            return program, [], program_form.result_type(checked)
        except ProgramInvalid as exc:
            return None, exc.errors, None

    def refuse_unavailable(self, program: Parsed) -> None:
        """Raise a capability error when ``program`` calls a tool that cannot run here."""
        used = get_form(program.form).tools_used(program)
        missing = needed_unavailable(used, self.catalog, self.unavailable)
        if not missing:
            return
        line = next(
            (s.line for s in getattr(program, "steps", ())  # a line program names the line
             if s.tool in self.catalog and self.catalog.get(s.tool).spec.name == missing[0]),
            None,
        )  # fmt: skip
        raise CapabilityError(
            missing[0],
            *_role_and_reason(self.catalog.get(missing[0]), self.unavailable[missing[0]]),
            line=line,
        )

    def _check_and_repair(
        self,
        spec: _Prompting,
        instruction: str,
        inputs: InputNames,
        prompt: str,
        first: Attempt,
        avoid: Mapping[str, ProgramError] | None = None,
        result_check: ResultCheck | None = None,
        budget: Budget | None = None,
        drop_repeats: bool = False,
    ) -> Plan:
        attempts = [first]
        out_of_time = False
        runnable: tuple[Attempt, Parsed] | None = None  # the last refused only by those checks
        current = first
        seen: list[list[dict[str, Any]]] = []
        tried = {normal_source(source): why for source, why in (avoid or {}).items()}
        fixed_from: set[str] = set()  # programs already written by applying fix-its
        repairs = 0
        looped: tuple[Attempt, list[ProgramError]] | None = None  # a loop, resumed once
        while True:
            loop: tuple[int, str] | None = None  # (line, tool) of the first repeated step
            try:
                program, errors, result_type = self._check(current.program, inputs, spec.name)
                checks = program is not None
                repeats = (
                    repeated_steps(program, self.catalog)
                    if drop_repeats and isinstance(program, Program)
                    else []
                )
                if repeats and isinstance(program, Program):
                    first_repeat = program.step(repeats[0].step or "")
                    loop = (first_repeat.line, first_repeat.tool or "")
                wrong = (
                    result_check(result_type, program)
                    if program is not None and result_check is not None and not repeats
                    else None
                )
                if repeats or wrong is not None:  # it runs; its repeats or result are refused
                    if normal_source(current.program) not in tried:
                        runnable = (current, program)
                    program, errors = None, repeats or [wrong]
            except CapabilityError as exc:
                current.errors = [exc.to_dict()]
                return Plan(current.program, None, attempts, exc, form=spec.name)
            again = tried.get(normal_source(current.program)) if program is not None else None
            if again is not None:  # a program that was tried already: not again
                program, errors = None, [again]
            current.errors = [e.to_dict() for e in errors]
            if program is not None:
                return Plan(current.program, program, attempts, form=spec.name)
            resume = loop is not None and looped is None and spec.grammar is not None
            if resume and budget is not None and not budget(max(a.seconds for a in attempts)):
                resume, out_of_time = False, True  # no time for that LLM call: the fix-its
            if resume and loop is not None:
                # the loop ate the steps the program was heading for: write them from
                # before the loop, its tool not allowed next (a greedy model would loop again)
                looped = (current, errors)
                current = self._resume(spec, attempts, current, *loop)
                attempts.append(current)
                continue
            if current.kind == "resume" and not checks and looped is not None:
                # the resumed program does not check: the loop without its repeats instead
                source = apply_fixes(looped[0].program, looped[1]) or looped[0].program
                fixed_from.add(normal_source(source))
                current = self._fixed(looped[0], source)
                attempts.append(current)
                continue
            fixed = apply_fixes(current.program, errors)
            if fixed is not None and normal_source(fixed) not in fixed_from:
                # the checker knows the one name meant: try that first, no LLM call (a
                # small model tends to copy its program unchanged into a repair)
                fixed_from.add(normal_source(fixed))
                current = self._fixed(current, fixed)
                attempts.append(current)
                continue
            if repairs == self.config.repair_rounds or (
                self.stop_repeated and current.errors in seen  # the same errors again: stop
            ):
                break
            if budget is not None and not budget(max(a.seconds for a in attempts)):
                out_of_time = True  # no time for another LLM call
                break
            repairs += 1
            seen.append(current.errors)
            listing = "\n".join(f"# {e}" for e in errors)
            repair_prompt = prompt + current.program + fill(template("repair"), errors=listing)
            t0 = time.perf_counter()
            wall = time.time()
            # greedy decoding tends to repeat the same mistake: sample a little instead
            temperature = max(self.config.temperature, self.config.repair_temperature)
            request = spec.request.with_(temperature=temperature, seed=repairs)
            completion = self.llm.complete(repair_prompt, request)[0]
            current = self._attempt(
                spec, "repair", repair_prompt, completion, time.perf_counter() - t0, first.candidate
            )
            current.started = wall
            attempts.append(current)
        if runnable is not None:
            return Plan(runnable[0].program, runnable[1], attempts, form=spec.name,
                        out_of_time=out_of_time)  # fmt: skip
        errors = [
            ProgramError(ErrorCode(e["code"]), e["message"], e["line"], e["col"], e["step"])
            for e in current.errors
        ]
        error = PlanningError(
            f"no valid program after {len(attempts)} attempt(s) for: {instruction!r}"
            + ("; no time was left for another" if out_of_time else "")
            + "; last errors: "
            + "; ".join(str(e) for e in errors[:3])
        )
        return Plan(current.program or None, None, attempts, error, form=spec.name,
                    out_of_time=out_of_time)  # fmt: skip


def normal_source(source: str) -> str:
    """A program's text without the blank space that does not change it."""
    return "\n".join(line.strip() for line in source.strip().splitlines() if line.strip())


def _short(text: str, limit: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _role_and_reason(tool: Any, why: str) -> tuple[str | None, str, str]:
    """(role, reason, fix) for a tool that cannot run, from its 'unavailable' text."""
    role = next(iter(getattr(tool, "requires", ())), None)
    m = re.match(r"'([\w-]+)' model unavailable: (.*)", why, re.S)
    if m:
        role, why = m.group(1), m.group(2)
    return role, why, fix_text(role)
