"""An orchestrator with only the offline profile's models, shared by the tests here."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator import Config, Orchestrator


@pytest.fixture(scope="session")
def offline(tmp_path_factory: pytest.TempPathFactory) -> Orchestrator:
    cache = tmp_path_factory.mktemp("cache")
    config = Config(models={"profile": "offline", "cache_dir": cache}, plugins=False)
    orch = Orchestrator(config)
    yield orch
    orch.close()


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    from tools.convert import to_image

    path = tmp_path / "astronaut.png"
    to_image("sample:astronaut").pil.save(path)
    return path
