"""What the backend tests share: a model cache per module, one torch thread, an empty
Hugging Face cache, and for a module that lists backend classes in ``FAMILIES`` a tiny random
model of each (``specs``) loaded on ``tests.support.backends.CPU`` (``loaded``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import huggingface_hub
import pytest
import torch

from tests.support.backends import CPU
from tools.settings import ModelSettings, ModelSpec


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> ModelSettings:
    """Model settings with a fresh cache for the module (nothing from the user's), no bars."""
    return ModelSettings(cache_dir=tmp_path_factory.mktemp("cache"), progress=False)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core machine OpenMP
    spinning makes them 10-50x slower; the setting is restored after each module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache, so tests never see the machine's own."""
    cache = tmp_path / "hf"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture(scope="module")
def specs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, ModelSpec]:
    """A tiny random model of each class in the module's ``FAMILIES``, by family."""
    return {
        cls.family: cls.tiny_spec(tmp_path_factory.mktemp(cls.family))
        for cls in request.module.FAMILIES
    }


@pytest.fixture(scope="module")
def loaded(
    request: pytest.FixtureRequest, specs: dict[str, ModelSpec], settings: ModelSettings
) -> dict[str, object]:
    """Each of ``specs`` loaded through its class's real loader, by family."""
    return {
        cls.family: cls.load(specs[cls.family], CPU, settings) for cls in request.module.FAMILIES
    }
