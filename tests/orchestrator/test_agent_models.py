"""The agent loop on the real embedded planners (llama.cpp, greedy decoding, fixed seed):
a run-time failure repaired by Qwen2.5-Coder-0.5B on the tiny profile, and the issue's
first example — a tool whose model is missing — answered at once by the default planner
(Qwen2.5-Coder-1.5B) through the CLI on a fresh offline install."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub.constants
import pytest

from orchestrator import Config, Orchestrator, Trace
from orchestrator.cli import main
from tests.support.scripted_llm import ScriptedLLM
from tools.backends.llm import DEFAULT_REQUEST, Completion, LanguageModel, LLMRequest
from tools.settings import ModelSpec

pytestmark = pytest.mark.slow

QWEN_05B = "qwen2.5-coder-0.5b-instruct-q4_k_m"
BIG_BANG = "Tag the 7 main characters on the TV show Big Bang Theory"


class FirstThenReal(ScriptedLLM):
    """Round 1's program is given, every later call goes to a real model: the case fails
    at run time the same way every time, and the real model must see it and repair it."""

    def __init__(self, outputs: list[str], real: LanguageModel) -> None:
        super().__init__(outputs)
        self.real = real

    def complete(self, prompt: str, request: LLMRequest = DEFAULT_REQUEST) -> list[Completion]:
        if self.outputs:
            return super().complete(prompt, request)
        self.prompts.append(prompt)
        self.requests.append(request)
        return self.real.complete(prompt, request)

    def cache_prefix(self, prefix: str) -> None:
        super().cache_prefix(prefix)
        self.real.cache_prefix(prefix)

    def count_tokens(self, text: str) -> int:
        return self.real.count_tokens(text)

    @property
    def context_length(self) -> int:
        return self.real.context_length


def test_the_embedded_qwen_planner_repairs_a_run_time_failure(tiny: Orchestrator) -> None:
    """Tiny profile, the real Qwen2.5-Coder-0.5B: round 1 adds text to the face count in
    Eval, a type error at run time; the model is shown the observation, decides (under the
    decision grammar) and writes a program (under the line grammar) that runs."""
    spec = ModelSpec(family="llama_cpp", model=QWEN_05B, options={"seed": 0})
    # the tiny fixture's cache: its random-weight models and GGUFs are built once
    cache = tiny.config.models.cache_dir
    config = Config(
        models={"profile": "tiny", "cache_dir": cache, "roles": {"llm": [spec]}}, plugins=False
    )
    orch = Orchestrator(config)
    try:
        assert orch.config.planner.temperature == 0  # greedy: the same output every time
        broken = (
            "OBJ0=FaceDet(image=IMAGE)\nANSWER0=Count(object=OBJ0)\n"
            "ANSWER1=Eval(\"{ANSWER0} + ' faces'\")\nRESULT=ANSWER1\n"
        )
        llm = FirstThenReal([broken], orch.pool.get("llm"))
        orch.pool.provide("llm", llm)
        result = orch.run("How many faces are in this photo?", image="sample:astronaut")

        first, *later = result.rounds
        assert first.error is not None and first.error["code"] == "eval-error"
        assert [i["check"] for i in first.issues] == ["runtime-error"]
        assert first.decision["action"] in ("CONTINUE", "REWRITE"), first.decision
        assert "error [eval-error]" in llm.prompts[1]  # the model saw what failed
        assert result.ok, (result.error, [r.to_dict() for r in result.rounds])
        assert later and later[-1].accepted and later[-1].error is None
        assert "1" in result.answer  # MTCNN finds the astronaut's one face
        written = [r for r in result.trace.planning if r["kind"] == "follow-up"]
        assert written and all(r["grammar_respected"] for r in written)
    finally:
        orch.close()


def test_the_default_planner_says_at_once_what_tagging_characters_needs(
    offline: Orchestrator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The issue's first example on a fresh offline install (default profile, no hub
    cache, the default planner Qwen2.5-Coder-1.5B): one round, one planning call, and a
    typed capability error naming Classify, the 'clip' role and what `vischain models`
    says about it — not an ill-typed substitute."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.cache/clip
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    config = tmp_path / "vischain.yaml"
    # the offline fixture's cache: the planner GGUF is assembled once per test session
    config.write_text(
        f"models:\n  profile: default\n  cache_dir: {offline.config.models.cache_dir}\n"
        "plugins: false\n"
    )
    monkeypatch.setenv("VISCHAIN_CONFIG", str(config))

    assert main(["models"]) == 0
    models = capsys.readouterr().out
    clip = models.split("clip  (tools:")[1].split("\n")
    why = next(line.strip() for line in clip if line.strip().startswith("unavailable: "))
    assert "Classify" in clip[0]

    code = main(
        ["run", BIG_BANG, "--image", "sample:astronaut", "--trace-dir", str(tmp_path / "out")]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "error: [capability]" in out and "Classify cannot run on this machine" in out
    assert "it needs the 'clip' model, which is unavailable" in out
    assert why.removeprefix("unavailable: ") in out  # what `vischain models` says
    assert "models.roles.clip" in out and "`vischain models`" in out

    trace = Trace.load(tmp_path / "out")
    assert trace.error["code"] == "capability" and trace.error["tool"] == "Classify"
    assert trace.error["role"] == "clip"
    assert len(trace.rounds) == 1 and trace.meta["stop"] == "capability"
    calls = [r for r in trace.planning if r["kind"] != "answer-kind"]
    assert len(calls) == 1 and calls[0]["model"].endswith("qwen2.5-coder-1.5b-instruct-q4_k_m")
    assert "Classify(" in trace.program and trace.steps == []  # nothing ran
