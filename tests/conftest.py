"""Test-wide settings: never touch a model hub, never write to the user's cache."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

# fixtures whose tests belong to a marked tier, whichever module they are in
_TIER_FIXTURES = {"vllm_llama": "server", "vllm_llava": "server", "qwen": "slow"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tests by the fixtures they use (see the markers in pyproject.toml)."""
    for item in items:
        for fixture in set(getattr(item, "fixturenames", ())) & set(_TIER_FIXTURES):
            item.add_marker(_TIER_FIXTURES[fixture])


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    """An orchestrator on the 'tiny' profile: real offline models (MTCNN, RapidOCR, MiniLM,
    the embedded planner) plus tiny random-weight CLIP, OWL-ViT, SAM, LLaVA, Molmo2 and SD
    inpainting built in a temporary directory. Shared by the whole test session."""
    from orchestrator import Config, Orchestrator

    cache = tmp_path_factory.mktemp("tiny-cache")
    orch = Orchestrator(Config(models={"profile": "tiny", "cache_dir": cache}, plugins=False))
    yield orch
    orch.close()


@pytest.fixture
def provide(tiny) -> Iterator[Callable[[str, Any], Any]]:
    """``provide(role, backend)`` serves a role of the shared ``tiny`` orchestrator with a
    test double for this test only: the real model serves it again afterwards, so no test
    leaves a scripted LLM behind for the next."""
    with ExitStack() as stack:
        yield lambda role, backend: stack.enter_context(tiny.pool.providing(role, backend))


@pytest.fixture(scope="session")
def vllm_llama(tmp_path_factory: pytest.TempPathFactory):
    """A real vLLM server (CPU build, its own venv) serving a tiny random Llama, shared by
    every test that needs one. Fails, never skips, when vLLM is not installed."""
    from tests.support.tiny_llm import build_tiny_llama
    from tests.support.vllm_server import vllm_python, vllm_server

    if vllm_python() is None:
        pytest.fail("vLLM is not installed in .venv-vllm: run scripts/install_vllm_cpu.sh")
    model_dir = build_tiny_llama(tmp_path_factory.mktemp("tiny-llama") / "model")
    with vllm_server(model_dir, max_model_len=4096) as running:
        yield running
