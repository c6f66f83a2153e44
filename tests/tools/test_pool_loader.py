"""Model loading off the request path: loads run on the pool's loader thread, a request for
a model being loaded waits on its future while loaded models keep serving, prefetch starts
loads without waiting, and a failed load is a typed error naming the role."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.support.backends import GatedBackend
from tools.backends import Backend
from tools.errors import ModelError, ModelLoadError
from tools.pool import ModelPool
from tools.settings import ModelSettings, ModelSpec


def spec(name: str) -> ModelSpec:
    return ModelSpec(family="test_gated", model=name)


def make_pool(tmp_path: Path, **roles: str) -> ModelPool:
    settings = ModelSettings(cache_dir=tmp_path, roles={r: [spec(m)] for r, m in roles.items()})
    return ModelPool(settings)


@pytest.fixture(autouse=True)
def fresh() -> None:
    GatedBackend.gates.clear()
    GatedBackend.started.clear()
    GatedBackend.threads.clear()


def test_loads_run_on_the_loader_thread(tmp_path: Path) -> None:
    pool = make_pool(tmp_path, a="a")
    assert pool.get("a").spec == spec("a")
    assert GatedBackend.threads == ["vischain-loader"]


def test_a_model_being_loaded_does_not_hold_up_loaded_ones(tmp_path: Path) -> None:
    pool = make_pool(tmp_path, a="a", slow="slow")
    loaded = pool.get("a")
    GatedBackend.gates["slow"] = threading.Event()
    got: list[Backend] = []
    waiters = [threading.Thread(target=lambda: got.append(pool.get("slow"))) for _ in range(2)]
    for t in waiters:
        t.start()
    GatedBackend.started.setdefault("slow", threading.Event()).wait()
    assert pool.get("a") is loaded  # served while 'slow' is still loading
    assert not got
    GatedBackend.gates["slow"].set()
    for t in waiters:
        t.join()
    assert len(got) == 2 and got[0] is got[1]  # both waited on the one load
    assert pool.load_counts[spec("slow").key()] == 1


def test_prefetch_starts_loads_and_returns_at_once(tmp_path: Path) -> None:
    pool = make_pool(tmp_path, a="a", b="b")
    GatedBackend.gates["a"] = threading.Event()
    futures = pool.prefetch(["a", "b", "a", "nobody"])
    assert set(futures) == {"a", "b"}  # each once; a role without a model is skipped
    GatedBackend.started.setdefault("a", threading.Event()).wait()
    assert not futures["a"].done()
    GatedBackend.gates["a"].set()
    assert futures["a"].result() is pool.get("a")
    assert futures["b"].result() is pool.get("b")
    assert pool.prefetch(["a", "b"]) == {}  # loaded: nothing to start
    assert pool.load_counts[spec("a").key()] == 1


def test_a_failed_load_names_the_role_and_is_tried_again(tmp_path: Path) -> None:
    pool = make_pool(tmp_path, vlm="fails")
    pool.prefetch(["vlm"])  # fails in the background: nothing raised here
    for _ in range(2):
        with pytest.raises(ModelLoadError, match=r"'vlm' model .*corrupt checkpoint") as info:
            pool.get("vlm")
        assert info.value.role == "vlm" and isinstance(info.value, ModelError)
    assert GatedBackend.threads.count("vischain-loader") >= 2  # each request tried again
