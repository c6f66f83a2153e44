"""The planner: an LLM writes a program for an instruction; the sandbox checks it; errors go
back to the LLM for repair.

generate (under the tools' grammar) → extract the program from the output → parse and
check against the tools that can run → on errors, show the model every error (line, code,
message) and ask again, up to ``repair_rounds`` times. Every LLM call is recorded
(prompt, raw output, errors, tokens, seconds) for the trace.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

from programs import Example, load_library, template
from sandbox import (
    BoundProgram,
    ErrorCode,
    Limits,
    ProgramError,
    ProgramInvalid,
    VisChainError,
    check,
    parse,
)
from tools.registry import Registry

from .config import PlannerConfig
from .examples import ExampleSelector
from .grammar import gbnf_to_regex, line_grammar

log = logging.getLogger("vischain.planner")
_STEP = re.compile(r"^\s*[A-Za-z_][A-Za-z0-9_]*\s*=")
_PLACEHOLDER = re.compile(r"\{(tools|examples|instruction|inputs|program|errors)\}")


class PlanningError(VisChainError):
    """The planner could not produce a valid program."""

    code = ErrorCode.PLANNING


@dataclass
class Attempt:
    """One LLM call of the planner, as the trace shows it."""

    kind: str  # generate | repair
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

    def record(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Plan:
    """A candidate program: checked (``bound``) or not, with the calls that produced it."""

    source: str | None
    bound: BoundProgram | None
    attempts: list[Attempt]
    error: VisChainError | None = None

    @property
    def ok(self) -> bool:
        return self.bound is not None


def fill(text: str, **values: str) -> str:
    """Substitute ``{name}`` placeholders in one pass (braces inside values stay as they are)."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def extract_program(output: str) -> str:
    """The program in an LLM's output: step and comment lines from the first step on, without
    code fences or prose, up to the first line that is neither."""
    lines: list[str] = []
    started = False
    for raw in output.replace("\r\n", "\n").split("\n"):
        line = raw.rstrip()
        stripped = line.strip()
        if stripped.startswith("```"):
            if started:
                break
            continue
        if _STEP.match(line):
            started = True
            lines.append(stripped)
        elif started and stripped.startswith("#"):
            lines.append(stripped)
        elif started:
            break
    return "\n".join(lines) + ("\n" if lines else "")


@lru_cache(maxsize=8)
def _grammar_regex(grammar: str) -> re.Pattern[str]:
    return gbnf_to_regex(grammar)


class Planner:
    """Writes checked programs for instructions, with one LLM and one set of tools."""

    def __init__(
        self,
        registry: Registry,
        llm: Any,
        config: PlannerConfig,
        *,
        examples: Sequence[Example] | None = None,
        embedder: Any | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.registry = registry
        self.llm = llm
        self.config = config
        self.limits = limits or Limits()
        library = list(examples) if examples is not None else load_library(form="lines")
        library = [e for e in library if self._runnable(e)]
        count: Callable[[str], int] | None = getattr(llm, "count_tokens", None)
        self.selector = ExampleSelector(library, embedder=embedder, count_tokens=count)
        self.grammar = line_grammar(registry) if config.grammar else None

    def _runnable(self, example: Example) -> bool:
        """Whether every tool an example calls is one this planner may use: examples that
        show unavailable tools teach the model to write programs that cannot run."""
        try:
            program = parse(example.program, form="lines", limits=self.limits)
        except ProgramInvalid:
            return False
        return all(step.tool is None or step.tool in self.registry for step in program.steps)

    # --- prompts -----------------------------------------------------------------------------

    def tool_docs(self) -> str:
        """One compact entry per tool: signature and first sentence."""
        lines = []
        for t in self.registry:
            spec = t.spec
            summary = spec.description.split(". ")[0].rstrip(".")
            lines.append(f"{spec.usage()}  # {summary}")
        return "\n".join(lines)

    def render_example(self, example: Example) -> str:
        return fill(
            template("example"),
            instruction=example.instruction,
            inputs=", ".join(example.inputs),
            program=example.text,
        )

    def prompt(self, instruction: str, inputs: Sequence[str]) -> tuple[str, list[Example]]:
        chosen = self.selector.select(
            instruction,
            k=self.config.examples,
            budget_tokens=self.config.example_token_budget,
            inputs=inputs,
            render=self.render_example,
        )
        head = fill(
            template("lines"),
            tools=self.tool_docs(),
            examples="\n".join(self.render_example(e) for e in chosen),
        )
        query = fill(
            template("example"), instruction=instruction, inputs=", ".join(inputs), program=""
        )
        return head + "\n" + query.rstrip("\n") + "\n", chosen

    # --- planning ----------------------------------------------------------------------------

    def plan(
        self,
        instruction: str,
        inputs: Sequence[str],
        *,
        n: int = 1,
        temperature: float | None = None,
    ) -> list[Plan]:
        """``n`` candidate programs, each generated, checked and repaired independently."""
        if not instruction.strip():
            raise PlanningError("the instruction is empty")
        prompt, chosen = self.prompt(instruction, inputs)
        temp = self.config.temperature if temperature is None else temperature
        if n > 1 and temperature is None:
            temp = self.config.voting_temperature
        t0 = time.perf_counter()
        completions = self.llm.complete(
            prompt,
            max_tokens=self.config.max_tokens,
            temperature=temp,
            stop=["\n\n", "\nInstruction:"],
            grammar=self.grammar,
            n=n,
        )
        seconds = time.perf_counter() - t0
        plans = []
        for i, completion in enumerate(completions):
            first = self._attempt(
                "generate", prompt, completion, seconds / max(len(completions), 1), i
            )
            first.examples = [e.instruction for e in chosen]
            plans.append(self._check_and_repair(instruction, inputs, prompt, first))
        return plans

    def _attempt(
        self, kind: str, prompt: str, completion: Any, seconds: float, candidate: int
    ) -> Attempt:
        output = completion.text
        respected = None
        if self.grammar is not None:
            respected = _grammar_regex(self.grammar).fullmatch(output) is not None
            if not respected and completion.finish_reason != "length":
                log.warning(
                    "the LLM's output does not follow the grammar; is the server ignoring it?"
                )
        return Attempt(
            kind=kind,
            prompt=prompt,
            output=output,
            program=extract_program(output),
            model=self.llm.spec.label(),
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            seconds=round(getattr(completion, "seconds", seconds) or seconds, 3),
            grammar=self.grammar is not None,
            grammar_respected=respected,
            candidate=candidate,
        )

    def check(
        self, source: str, inputs: Sequence[str]
    ) -> tuple[BoundProgram | None, list[ProgramError]]:
        if not source.strip():
            return None, [
                ProgramError(ErrorCode.EMPTY_PROGRAM, "no program found in the output", 1, 1)
            ]
        try:
            program = parse(source, form="lines", limits=self.limits)
            return check(program, self.registry, inputs=list(inputs)), []
        except ProgramInvalid as exc:
            return None, exc.errors

    def _check_and_repair(
        self, instruction: str, inputs: Sequence[str], prompt: str, first: Attempt
    ) -> Plan:
        attempts = [first]
        current = first
        for round_ in range(self.config.repair_rounds + 1):
            bound, errors = self.check(current.program, inputs)
            current.errors = [e.to_dict() for e in errors]
            if bound is not None:
                return Plan(current.program, bound, attempts)
            if round_ == self.config.repair_rounds:
                break
            listing = "\n".join(f"# {e}" for e in errors)
            repair_prompt = prompt + current.program + fill(template("repair"), errors=listing)
            t0 = time.perf_counter()
            completion = self.llm.complete(
                repair_prompt,
                max_tokens=self.config.max_tokens,
                # greedy decoding tends to repeat the same mistake: sample a little instead
                temperature=max(self.config.temperature, self.config.repair_temperature),
                stop=["\n\n", "\nInstruction:"],
                grammar=self.grammar,
                seed=round_ + 1,
            )[0]
            current = self._attempt(
                "repair", repair_prompt, completion, time.perf_counter() - t0, first.candidate
            )
            attempts.append(current)
        errors = [
            ProgramError(ErrorCode(e["code"]), e["message"], e["line"], e["col"], e["step"])
            for e in current.errors
        ]
        error = PlanningError(
            f"no valid program after {len(attempts)} attempt(s) for: {instruction!r}; last errors: "
            + "; ".join(str(e) for e in errors[:3])
        )
        return Plan(current.program or None, None, attempts, error)
