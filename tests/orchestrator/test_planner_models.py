"""The planner on real LLMs: the embedded default model writes programs that check, and
a real vLLM server decodes under the program grammar."""

from __future__ import annotations

import pytest
import torch

from orchestrator import Orchestrator
from orchestrator.config import PlannerConfig
from orchestrator.planner import Planner
from sandbox import parse
from tools import default_registry
from tools.backends import Placement
from tools.backends.llm_openai import OpenAIBackend
from tools.settings import ModelSettings, ModelSpec

INSTRUCTIONS = [
    ("How many faces are in this photo?", ["FaceDet", "Count"]),
    ("Blur the background behind the person's face", ["FaceDet", "BgBlur"]),
    ("Cover every face with a smiling emoji", ["FaceDet", "Emoji"]),
    ("Read the text in this image", ["Ocr"]),
]


@pytest.mark.slow
@pytest.mark.parametrize(("instruction", "tools"), INSTRUCTIONS)
def test_embedded_model_writes_programs_that_check(
    offline: Orchestrator, instruction: str, tools: list[str]
) -> None:
    planner = offline.planner()
    assert planner.llm.spec.family == "llama_cpp"
    [plan] = planner.plan(instruction, ["IMAGE"])
    assert plan.ok, plan.error
    used = [s.tool for s in plan.program.steps if s.tool]
    assert all(t in used for t in tools), plan.source
    assert plan.attempts[0].grammar_respected is True


def test_vllm_server_decodes_under_the_grammar(vllm_llama, tmp_path) -> None:
    spec = ModelSpec(
        family="openai", model=vllm_llama.model, options={"base_url": vllm_llama.base_url}
    )
    llm = OpenAIBackend.load(
        spec, Placement("cpu", torch.float32), ModelSettings(cache_dir=tmp_path)
    )
    # a 600-token vocabulary makes long prompts: offer a few tools, within the 4096 context;
    # and short programs, so that a random model reaches the end of the grammar in budget
    registry = default_registry(plugins=False).subset(["FaceDet", "Count", "Eval", "Crop"])
    assert llm.context_length == 4096
    config = PlannerConfig(
        repair_rounds=0, max_tokens=400, temperature=1.0, max_steps=2, examples=1
    )
    planner = Planner(registry, llm, config)
    plans = planner.plan("How many dogs are there?", ["IMAGE"], n=3, temperature=1.0)
    for plan in plans:
        attempt = plan.attempts[0]
        assert attempt.grammar and attempt.grammar_respected, attempt.output
        if attempt.program:
            parse(attempt.program)  # the grammar guarantees the syntax
    free = Planner(registry, llm, PlannerConfig(repair_rounds=0, max_tokens=60, grammar=False))
    loose = free.plan("How many dogs are there?", ["IMAGE"], n=3, temperature=1.0)
    assert not all(p.ok for p in loose)  # a random model without the grammar writes junk
