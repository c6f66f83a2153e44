"""The replica side's pure parts (tools.deployments): resources from the pool's budget,
batch limits from the tool config, and how calls from many clients are merged and split.
The deployments themselves run on a real Ray cluster in test_remote.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tools import default_registry
from tools.backends import backend_class
from tools.backends.clip import OpenClipBackend
from tools.deployments import (
    GPU_STEP,
    actor_options,
    batch_limits,
    present_specs,
    replay,
    split,
)
from tools.remote import Call, ImageRef, images_to_refs, refs_to_images
from tools.settings import ModelSettings, ModelSpec, ServeSettings
from tools.types import Image


@pytest.fixture(scope="module")
def clip_spec(tmp_path_factory: pytest.TempPathFactory) -> ModelSpec:
    return OpenClipBackend.tiny_spec(tmp_path_factory.mktemp("clip"))


def test_gpu_fraction_and_memory_come_from_the_models_estimate(clip_spec: ModelSpec) -> None:
    settings = ModelSettings(serve=ServeSettings(num_cpus=0.25), memory_fraction=0.5)
    estimate = backend_class("open_clip").estimate_bytes(clip_spec, settings)
    assert estimate and estimate > 0
    # a GPU whose budget (half of it) is ten times the model: a tenth of it, in steps
    options = actor_options(clip_spec, settings, gpus=2, gpu_bytes=int(estimate * 20))
    assert options["num_gpus"] == pytest.approx(0.1)
    assert options["memory"] == estimate and options["num_cpus"] == 0.25
    # a model bigger than the budget takes a whole GPU, a tiny one at least one step
    assert actor_options(clip_spec, settings, gpus=1, gpu_bytes=estimate)["num_gpus"] == 1.0
    small = actor_options(clip_spec, settings, gpus=1, gpu_bytes=estimate * 10_000)
    assert small["num_gpus"] == GPU_STEP
    # no GPUs in the cluster, or a model pinned to the CPU: no GPU asked for
    assert "num_gpus" not in actor_options(clip_spec, settings, gpus=0, gpu_bytes=0)
    on_cpu = clip_spec.model_copy(update={"device": "cpu"})
    assert "num_gpus" not in actor_options(on_cpu, settings, gpus=1, gpu_bytes=estimate * 20)


def test_batch_limits_are_the_largest_the_roles_tools_ask_for() -> None:
    tools = list(default_registry(plugins=False))
    clip_tools = [t for t in tools if "clip" in t.requires and t.max_batch > 1]
    assert clip_tools
    size, wait = batch_limits("clip", tools, {})
    assert size == max(t.max_batch for t in clip_tools) and wait == 5.0
    options = {clip_tools[0].name: {"max_batch": 500, "max_wait_ms": 40}}
    assert batch_limits("clip", tools, options) == (500, 40.0)
    assert batch_limits("no-such-role", tools, options) == (1, 5.0)


def test_only_present_candidates_are_offered(clip_spec: ModelSpec, tmp_path) -> None:
    missing = ModelSpec(family="open_clip", model=str(tmp_path / "nowhere"))
    settings = ModelSettings(profile="offline")
    assert present_specs("clip", [missing, clip_spec], settings) == [clip_spec]


def test_split_cuts_rows_and_refuses_a_wrong_count() -> None:
    rows = torch.arange(10).reshape(5, 2)
    a, b = split(rows, [2, 3])
    assert a.tolist() == [[0, 1], [2, 3]] and b.shape == (3, 2)
    assert [p.tolist() for p in split(np.arange(3), [1, 2])] == [[0], [1, 2]]
    assert split(["x", "y"], [0, 2]) == [[], ["x", "y"]]
    with pytest.raises(Exception, match="rows"):
        split([1, 2, 3], [1, 1])


def test_replay_follows_calls_items_and_attributes_but_nothing_private() -> None:
    class Session:
        def __init__(self, n: int) -> None:
            self.n = n

        def times(self, k: int) -> int:
            return self.n * k

    class Backend:
        size = 3

        def open(self, n: int) -> tuple[Session, bool]:
            return Session(n), True

        def _secret(self) -> str:
            return "no"

    steps = (("call", "open", (4,), {}), ("item", 0), ("call", "times", (5,), {}))
    assert replay(Backend(), steps) == 20
    assert replay(Backend(), (("attr", "size"),)) == 3
    with pytest.raises(AttributeError, match="private"):
        replay(Backend(), (("call", "_secret", (), {}),))
    with pytest.raises(AttributeError, match="private"):
        replay(Backend(), (("attr", "__class__"),))


def test_images_become_refs_and_back_wherever_they_are_nested() -> None:
    from PIL import Image as PILImage

    image = Image(PILImage.new("RGB", (4, 3), (10, 20, 30)), name="IMAGE")
    crop = Image(PILImage.new("RGB", (4, 3), (10, 20, 30)), origin=(5, 6))
    store: dict[tuple, Image] = {}

    def put(im: Image) -> ImageRef:
        ref = ImageRef(im.hash, im.origin, im.name, object())
        store[ref.key()] = im
        return ref

    value = ("call", "answer", ([(image, "q"), (crop, "r")],), {"extra": [image]})
    sent = images_to_refs(value, put)
    assert not any(isinstance(v, Image) for v in _walk(sent))
    assert len(store) == 2  # same pixels, different position: two images
    back = refs_to_images(sent, lambda ref: store[ref.key()])
    assert back[2][0][1][0] is crop and back[3]["extra"][0] is image
    assert Call("k", (sent,)).batch is False


def _walk(value):
    if isinstance(value, (list, tuple)):
        for v in value:
            yield from _walk(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _walk(v)
    else:
        yield value
