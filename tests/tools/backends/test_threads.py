"""Each model's forwards run on the thread that owns it, whichever thread calls."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from tools.backends.base import Backend
from tools.backends.clip import OpenClipBackend
from tools.backends.threads import ModelThread, on_model_thread
from tools.convert import to_image
from tools.pool import ModelPool
from tools.settings import ModelSettings, ModelSpec


class Recorder(Backend):
    family = "recorder"

    def __init__(self) -> None:
        super().__init__(ModelSpec(family="recorder"), placement=None)  # type: ignore[arg-type]
        self.seen: list[threading.Thread] = []

    @on_model_thread
    def outer(self, x: int) -> int:
        self.seen.append(threading.current_thread())
        return self.inner(x) + 1  # a forward calling another: runs in place, no deadlock

    @on_model_thread
    def inner(self, x: int) -> int:
        self.seen.append(threading.current_thread())
        return x * 2

    @on_model_thread
    def broken(self) -> None:
        raise ValueError("bad input")


def test_calls_from_many_threads_run_on_the_models_own_thread() -> None:
    model = Recorder()
    with ThreadPoolExecutor(8) as callers:
        results = list(callers.map(model.outer, range(40)))
    assert results == [x * 2 + 1 for x in range(40)]
    owner = model.model_thread()
    assert isinstance(owner, ModelThread)
    assert {t.ident for t in model.seen} == {owner.ident}
    assert owner.calls == 40  # the inner calls ran in place
    with pytest.raises(ValueError, match="bad input"):  # the caller gets the exception
        model.broken()
    assert model.outer(1) == 3  # and the thread goes on


def test_threading_off_runs_in_the_callers_thread() -> None:
    model = Recorder()
    model.threaded = False
    model.outer(2)
    assert model.seen == [threading.current_thread()] * 2
    assert model.model_thread() is None


@pytest.fixture(scope="module")
def clip_spec(tmp_path_factory: pytest.TempPathFactory) -> ModelSpec:
    return OpenClipBackend.tiny_spec(tmp_path_factory.mktemp("clip"))


@pytest.mark.parametrize("threaded", [True, False, None])
def test_a_pooled_clip_answers_the_same_from_many_threads(
    clip_spec: ModelSpec, tmp_path: Path, threaded: bool | None
) -> None:
    """None (the default) gives models on the CPU no thread of their own."""
    pool = ModelPool(ModelSettings(cache_dir=tmp_path, devices="cpu", model_threads=threaded))
    clip = pool.load(clip_spec)
    ran_on: set[int] = set()
    encode = clip.model.encode_image

    def spy(*args, **kwargs):
        ran_on.add(threading.get_ident())
        return encode(*args, **kwargs)

    clip.model.encode_image = spy
    photos = [to_image(f"sample:{n}") for n in ("astronaut", "coffee", "chelsea", "rocket")]
    labels = ["a person", "a cup", "a cat", "a rocket"]
    expected = clip.similarity(photos, labels)  # the calling thread's answer
    pool.features.clear()

    def one(i: int) -> np.ndarray:
        return clip.similarity([photos[i % 4]], labels)[0]

    with ThreadPoolExecutor(6) as callers:
        rows = list(callers.map(one, range(12)))
    for i, row in enumerate(rows):
        np.testing.assert_allclose(row, expected[i % 4], rtol=1e-5, atol=1e-6)
    if threaded:  # None: off, the model is on the CPU
        assert ran_on == {clip.model_thread().ident}
        owner = clip.model_thread()
        pool.evict(clip_spec.key())
        owner._thread.join(timeout=30)
        assert not owner._thread.is_alive()  # eviction ends the model's thread
    else:
        assert threading.get_ident() in ran_on  # the callers ran it themselves
        assert clip.model_thread() is None
    assert torch.is_grad_enabled()  # the callers' autograd state is untouched
