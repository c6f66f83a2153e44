"""The model pool: load once, share, place, evict, resolve roles through profiles.

The backend here is a real (tiny) torch model whose size we choose, so memory accounting
and eviction are exercised exactly as with the big ones."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import torch

from tools.backends import BACKENDS, Backend, Located, Placement
from tools.base import ModelProvider
from tools.devices import dtype_for, list_devices
from tools.errors import ModelError, NoBackendError
from tools.pool import ModelPool
from tools.settings import ModelSettings, ModelSpec


class LinearBackend(Backend):
    """A linear layer of ``options['params']`` weights; ``model='missing'`` is not present."""

    family = "test_linear"
    loads = 0

    def __init__(self, spec: ModelSpec, placement: Placement) -> None:
        super().__init__(spec, placement)
        n = int(spec.options.get("params", 1000))
        self.layer = torch.nn.Linear(n, 1, bias=False).to(placement.device, placement.dtype)

    @classmethod
    def locate(cls, spec: ModelSpec, settings: ModelSettings) -> Located:
        if spec.model == "missing":
            return Located(False, hint="pip install the-weights")
        if spec.model == "broken-dependency":
            raise ImportError("no module named 'optional_lib'")
        return Located(True, "memory")

    @classmethod
    def load(cls, spec: ModelSpec, placement: Placement, settings: ModelSettings) -> Backend:
        LinearBackend.loads += 1
        if spec.model == "fails":
            raise RuntimeError("corrupt checkpoint")
        time.sleep(float(spec.options.get("delay", 0)))
        return cls(spec, placement)

    @classmethod
    def estimate_bytes(cls, spec: ModelSpec, settings: ModelSettings) -> int:
        return int(spec.options.get("params", 1000)) * 4

    def modules(self) -> list[torch.nn.Module]:
        return [self.layer]


BACKENDS["test_linear"] = LinearBackend


def spec(name: str, params: int = 1000, **options: object) -> ModelSpec:
    return ModelSpec(family="test_linear", model=name, options={"params": params, **options})


def pool(tmp_path: Path, **settings: object) -> ModelPool:
    return ModelPool(ModelSettings(cache_dir=tmp_path, **settings))  # type: ignore[arg-type]


def test_role_resolves_to_first_present_candidate_and_loads_once(tmp_path: Path) -> None:
    p = pool(tmp_path, roles={"x": [spec("missing"), spec("here")]})
    assert isinstance(p, ModelProvider)  # what tools and the executor rely on
    assert p.resolve("x")[0] == spec("here") and p.resolve("x")[1] is None
    first = p.get("x")
    assert p.get("x") is first
    assert p.load_counts[spec("here").key()] == 1


def test_concurrent_first_use_loads_once(tmp_path: Path) -> None:
    s = spec("slow", delay=0.2)
    p = pool(tmp_path, roles={"a": [s], "b": [s]})
    got: list[Backend] = []
    threads = [threading.Thread(target=lambda r=r: got.append(p.get(r))) for r in ["a", "b"] * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(g) for g in got}) == 1
    assert p.load_counts[s.key()] == 1
    assert sorted(p.loaded()[0]["roles"]) == ["a", "b"]


def test_unavailable_roles_say_why(tmp_path: Path) -> None:
    p = pool(tmp_path, roles={"x": [spec("missing"), spec("broken-dependency")]})
    reason = p.unavailable("x")
    assert reason is not None and "pip install the-weights" in reason and "optional_lib" in reason
    with pytest.raises(NoBackendError, match="the-weights"):
        p.get("x")
    assert "nothing" in (pool(tmp_path).unavailable("nothing") or "")


def test_load_failure_is_a_model_error(tmp_path: Path) -> None:
    p = pool(tmp_path, roles={"x": [spec("fails")]})
    with pytest.raises(ModelError, match="corrupt checkpoint"):
        p.get("x")


def test_cpu_placement_and_dtype(tmp_path: Path) -> None:
    p = pool(tmp_path, roles={"x": [spec("a")]}, devices="cpu")
    backend = p.get("x")
    assert backend.device == "cpu" and backend.dtype == torch.float32
    assert backend.layer.weight.dtype == torch.float32
    explicit = p.load(ModelSpec(family="test_linear", model="b", device="cpu", dtype="bfloat16"))
    assert explicit.layer.weight.dtype == torch.bfloat16
    assert dtype_for("cpu") == torch.float32
    assert list_devices("auto")[-1].name == "cpu"
    with pytest.raises(ValueError):
        list_devices(["cuda:7"])


def test_lru_eviction_under_a_memory_budget(tmp_path: Path) -> None:
    # budget of 10,000 bytes; each model is 4,000 bytes: two fit, a third evicts the LRU
    p = pool(tmp_path, memory_budget_gb={"cpu": 10_000 / 2**30}, devices="cpu")
    a, b, c = spec("a"), spec("b"), spec("c")
    p.load(a)
    p.load(b)
    p.load(a)  # a is now the most recently used
    p.load(c)
    assert p.is_loaded(a) and p.is_loaded(c) and not p.is_loaded(b)
    assert p.used("cpu") <= 10_000
    p.load(b)  # comes back: loaded a second time
    assert p.load_counts[b.key()] == 2


def test_provided_objects_serve_a_role(tmp_path: Path) -> None:
    p = pool(tmp_path)
    mine = LinearBackend(spec("mine"), Placement("cpu", torch.float32))
    p.provide("x", mine)
    assert p.get("x") is mine and p.unavailable("x") is None


def test_providing_serves_a_role_for_a_block_then_restores_what_was_there(
    tmp_path: Path,
) -> None:
    p = pool(tmp_path, roles={"x": [spec("a")]})
    configured = p.get("x")
    first = LinearBackend(spec("first"), Placement("cpu", torch.float32))
    second = LinearBackend(spec("second"), Placement("cpu", torch.float32))
    with p.providing("x", first):
        assert p.get("x") is first
        with pytest.raises(RuntimeError), p.providing("x", second):
            assert p.get("x") is second
            raise RuntimeError("a failing test")
        assert p.get("x") is first  # the outer double again, though the block raised
    assert p.get("x") is configured  # and the configured model after the outer block


def test_feature_cache_is_shared_and_bounded(tmp_path: Path) -> None:
    p = pool(tmp_path, roles={"x": [spec("a")]}, cache_mb=1)
    backend = p.get("x")
    calls = []
    _value, hit = backend.cached("img", lambda: calls.append(1) or torch.zeros(10))
    _value2, hit2 = backend.cached("img", lambda: calls.append(1) or torch.zeros(10))
    assert (hit, hit2) == (False, True) and len(calls) == 1
    assert p.features.max_bytes == 2**20


def test_real_tiny_backends_are_shared_and_evicted_under_a_budget(tmp_path: Path) -> None:
    from tools.backends import backend_class

    clip = backend_class("open_clip").tiny_spec(tmp_path / "clip")
    sam = backend_class("sam").tiny_spec(tmp_path / "sam")
    roles = {"clip": [clip], "sam": [sam], "also_clip": [clip]}
    probe = pool(tmp_path, roles=roles, devices="cpu")
    sizes = {role: probe.get(role).memory_bytes() for role in ("clip", "sam")}
    assert probe.get("also_clip") is probe.get("clip")  # two roles, one loaded model
    assert probe.load_counts[clip.key()] == 1
    # a budget that holds the larger model but not both: loading one evicts the other
    budget = max(sizes.values()) * 1.05
    p = pool(tmp_path, roles=roles, devices="cpu", memory_budget_gb={"cpu": budget / 2**30})
    first = p.get("clip")
    p.get("sam")
    assert p.is_loaded(sam) and not p.is_loaded(clip)
    assert p.used("cpu") <= budget
    assert p.get("clip") is not first and p.load_counts[clip.key()] == 2


def test_cached_values_are_handed_out_as_private_copies(tmp_path: Path) -> None:
    """Issue 14 item 1 (caches): what one caller does to a cached result (an OCR line's
    extra data, a list) never reaches the next caller."""
    from tools.types import Box, Object, ObjectList

    p = pool(tmp_path, roles={"x": [spec("a")]}, cache_mb=1)
    backend = p.get("x")

    def lines() -> ObjectList:
        return ObjectList((Object(Box(0, 0, 1, 1), label="a", extra={"quad": [[0, 0]]}),))

    first, _ = backend.cached("lines", lines)
    first.items[0].extra["quad"].append("POISON")
    again, hit = backend.cached("lines", lines)
    assert hit and again.items[0].extra == {"quad": [[0, 0]]}
    many = backend.cached_many(["k"], lambda idx: [["t0", "t1"] for _ in idx])
    many[0].clear()
    assert backend.cached_many(["k"], lambda idx: [["fresh"] for _ in idx]) == [["t0", "t1"]]
