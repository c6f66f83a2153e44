"""Batching by model: concurrent calls of one model step share a batch (Lane), on stand-in
steps and on the tiny CLIP and LLaVA, where calls from different tools share one."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import torch

from tests.support.backends import noise_image
from tools.backends.clip import OpenClipBackend
from tools.backends.coalesce import Lane
from tools.backends.vlm import LlavaBackend
from tools.base import ToolContext
from tools.builtin.ask import Vqa
from tools.builtin.match import Classify, Select
from tools.cache import ByteLRU
from tools.settings import ModelSettings, ModelSpec
from tools.types import Box, Object, ObjectList

FAMILIES = [OpenClipBackend, LlavaBackend]


class Gated:
    """A step that records its batches; the first batch waits for ``release``."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, rows: list[Any]) -> list[Any]:
        self.batches.append(list(rows))
        if len(self.batches) == 1:
            self.entered.set()
            self.release.wait()
        if "bad" in rows:
            raise ValueError("bad row")
        return [str(r).upper() for r in rows]


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def go() -> None:
        try:
            out.append(fn())
        except Exception as exc:
            out.append(exc)

    t = threading.Thread(target=go)
    t.start()
    return t, out


def wait_queued(lane: Lane, n: int) -> None:
    """Until ``n`` calls wait in the lane (no time bound: the test's timeout is the bound)."""
    while lane.waiting() < n:
        time.sleep(0.001)


def hold(lane: Lane, step: Gated) -> tuple[threading.Thread, list[Any]]:
    """A first call that keeps a batch in flight until ``step.release`` is set."""
    first = in_thread(lambda: lane(["first"]))
    step.entered.wait()
    return first


def test_a_lone_call_runs_at_once() -> None:
    step = Gated()
    step.release.set()
    lane = Lane("t", step, max_wait_ms=3_600_000)  # an hour: a lone call must not wait it
    assert lane(["a", "b"]) == ["A", "B"]
    assert step.batches == [["a", "b"]]


def test_a_caller_still_preparing_joins_the_idle_models_batch() -> None:
    """A caller that reaches the idle model leads; another one announced (still preparing
    its rows, :meth:`Lane.after`) is waited for, so both share one batch. A failed
    preparation is no longer expected: the next lone call runs at once."""
    step = Gated()
    step.release.set()
    lane = Lane("t", step, max_wait_ms=3_600_000)  # an hour: bounds nothing here
    preparing, ready = threading.Event(), threading.Event()

    def prepare() -> list[str]:
        preparing.set()
        ready.wait()
        return ["a"]

    late = in_thread(lambda: lane.after(prepare))
    preparing.wait()
    early = in_thread(lambda: lane(["b"]))  # leads and waits for the announced rows
    wait_queued(lane, 1)
    ready.set()
    for t, _ in (late, early):
        t.join()
    assert late[1] == [["A"]] and early[1] == [["B"]]
    assert step.batches == [["b", "a"]]

    def broken() -> list[str]:
        raise ValueError("cannot prepare")

    with pytest.raises(ValueError):
        lane.after(broken)
    assert lane.after(lambda: ["c"]) == ["C"]  # nobody else coming: no waiting
    assert step.batches[-1] == ["c"]


def test_calls_arriving_during_a_batch_fill_the_next_one() -> None:
    step = Gated()
    lane = Lane("t", step, max_wait_ms=0)
    first = hold(lane, step)
    others = [in_thread(lambda r=r: lane(r)) for r in (["b"], ["c", "d"], ["e"])]
    wait_queued(lane, 3)
    step.release.set()
    for t, _ in [first, *others]:
        t.join()
    assert first[1] == [["FIRST"]]
    assert [out for _, out in others] == [[["B"]], [["C", "D"]], [["E"]]]
    assert step.batches[0] == ["first"]
    assert sorted(step.batches[1]) == ["b", "c", "d", "e"]  # one batch for all three calls
    assert lane.stats.batches == 2 and lane.stats.largest == 3


def test_batches_respect_max_batch_without_splitting_a_call() -> None:
    step = Gated()
    lane = Lane("t", step, max_batch=3, max_wait_ms=0)
    first = hold(lane, step)
    others = [in_thread(lambda r=r: lane(r)) for r in (["a", "b"], ["c", "d"], ["e"])]
    wait_queued(lane, 3)
    step.release.set()
    for t, _ in [first, *others]:
        t.join()
    assert all(len(b) <= 3 for b in step.batches[1:])
    assert sorted(r for b in step.batches[1:] for r in b) == ["a", "b", "c", "d", "e"]
    assert [out[0] for _, out in others] == [["A", "B"], ["C", "D"], ["E"]]


def test_a_bad_row_fails_only_its_call() -> None:
    step = Gated()
    lane = Lane("t", step, max_wait_ms=0)
    first = hold(lane, step)
    good, bad = in_thread(lambda: lane(["ok"])), in_thread(lambda: lane(["bad"]))
    wait_queued(lane, 2)
    step.release.set()
    for t, _ in (first, good, bad):
        t.join()
    assert good[1] == [["OK"]]
    assert isinstance(bad[1][0], ValueError)


def test_equal_keys_run_once() -> None:
    seen: list[list[str]] = []

    def step(rows: list[str]) -> torch.Tensor:
        seen.append(list(rows))
        return torch.tensor([[float(ord(r[0]))] for r in rows])

    lane = Lane("t", step, key=lambda r: r)
    out = lane(["a", "b", "a"])
    assert seen == [["a", "b"]]
    assert out[:, 0].tolist() == [97.0, 98.0, 97.0]


# --- real models: different tools share one batch of the same model step -------------------


class Pool:
    """A provider serving the given backends by role."""

    def __init__(self, **backends: Any) -> None:
        self.backends = backends

    def get(self, role: str) -> Any:
        return self.backends[role]

    def resolve(self, role: str) -> tuple[Any, None]:
        return self.backends[role].spec, None

    def unavailable(self, role: str) -> None:
        return None


def gate_lane(backend: Any, name: str, run: Callable[[list[Any]], Any]) -> tuple[Lane, Gated]:
    """Make the backend's lane ``name`` with a step whose first batch waits for release."""
    gate = Gated()

    def step(rows: list[Any]) -> Any:
        if not gate.batches:
            gate.batches.append([])
            gate.entered.set()
            gate.release.wait()
        return run(rows)

    lane = backend.lanes.get(name, step, max_batch=64)
    assert isinstance(lane, Lane)
    return lane, gate


def objects(image: Any, n: int) -> ObjectList:
    w = image.width // n
    return ObjectList(tuple(Object(Box(i * w, 0, (i + 1) * w, image.height)) for i in range(n)))


def test_select_and_classify_fill_one_clip_batch(
    specs: dict[str, ModelSpec], settings: ModelSettings
) -> None:
    from tests.support.backends import CPU

    clip = OpenClipBackend.load(specs["open_clip"], CPU, settings)
    alone = OpenClipBackend.load(specs["open_clip"], CPU, settings)
    clip.cache, alone.cache = ByteLRU(2**26, "features"), ByteLRU(2**26, "features")
    lane, gate = gate_lane(clip, "image_encoder", clip._encode_pixels)
    ctx = ToolContext(models=Pool(clip=clip))
    picture, other = noise_image(3, 96, 64), noise_image(4, 90, 60)
    select_call = {"image": picture, "object": objects(picture, 3), "query": "a dog"}
    classify_call = {"image": other, "object": objects(other, 2), "categories": ["cat", "dog"]}
    first = in_thread(lambda: clip.image_features([noise_image(5, 40, 40)]))
    gate.entered.wait()
    select = in_thread(lambda: Select().run_batch(ctx, [select_call]))
    classify = in_thread(lambda: Classify().run_batch(ctx, [classify_call]))
    wait_queued(lane, 2)
    gate.release.set()
    for t, _ in (first, select, classify):
        t.join()
    assert lane.stats.batches == 2 and lane.stats.largest == 2  # both tools in one batch
    assert clip.stats["image_encoder"] == 2
    # the same answers as each tool alone on a model of its own
    actx = ToolContext(models=Pool(clip=alone))
    assert select[1][0] == Select().run_batch(actx, [select_call])
    assert classify[1][0] == Classify().run_batch(actx, [classify_call])


def test_vqa_and_captions_fill_one_generate_batch(
    specs: dict[str, ModelSpec], settings: ModelSettings
) -> None:
    from tests.support.backends import CPU

    vlm = LlavaBackend.load(specs["llava"], CPU, settings)
    lane, gate = gate_lane(vlm, "generate", vlm._generate_rows)
    ctx = ToolContext(models=Pool(vlm=vlm))
    a, b, c = noise_image(6, 50, 40), noise_image(7, 57, 70), noise_image(8, 64, 100)
    first = in_thread(lambda: vlm.caption([c], max_new_tokens=3))
    gate.entered.wait()
    vqa = in_thread(lambda: Vqa().run_batch(ctx, [{"image": a, "question": "Is it red?"}]))
    captions = in_thread(lambda: vlm.caption([b], max_new_tokens=5))
    wait_queued(lane, 2)
    gate.release.set()
    for t, _ in (first, vqa, captions):
        t.join()
    assert lane.stats.batches == 2 and lane.stats.largest == 2
    assert vlm.stats["generate_calls"] == 2
    assert captions[1][0] == vlm.caption([b], max_new_tokens=5)
    assert vqa[1][0] == Vqa().run_batch(ctx, [{"image": a, "question": "Is it red?"}])
