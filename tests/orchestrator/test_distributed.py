"""``Orchestrator.map(..., engine="ray")`` (orchestrator.distributed): Ray workers that share
one Serve deployment, and the same results and report as the thread engine."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.support.ray_cluster import local_ray
from tools.backends.clip import OpenClipBackend

pytestmark = pytest.mark.server

APP = "vcmap"
PROGRAMS = [
    "ANSWER0=Similarity(image=IMAGE, text='a photo of a cat')",
    "ANSWER0=Similarity(image=IMAGE, text='a rocket')",
    "ANSWER0=Match(image=IMAGE, options=['cat', 'coffee', 'astronaut'])",
    "ANSWER0=Nope(image=IMAGE)",
]
IMAGES = ["sample:chelsea", "sample:rocket", "sample:coffee", "sample:astronaut"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    from ray import serve

    from tools.deployments import models_app
    from tools.settings import ModelSettings, ServeSettings

    root = tmp_path_factory.mktemp("map")
    spec = OpenClipBackend.tiny_spec(root / "clip")
    with local_ray() as address:
        settings = ModelSettings(
            profile="offline",
            roles={"clip": [spec]},
            serve=ServeSettings(address=address, app=APP, num_cpus=0.5),
        )
        serve.run(models_app(settings, roles=["clip"]), name=APP, route_prefix=None)
        yield {"settings": settings, "spec": spec}


def test_map_on_ray_gives_the_thread_engines_results_and_report(
    cluster: dict, tmp_path: Path
) -> None:
    from orchestrator import Config, Orchestrator
    from tools.remote import RemoteModels

    settings = cluster["settings"]
    remote = Orchestrator(Config(models=settings.model_dump(mode="json"), plugins=False))
    local = Orchestrator(
        Config(models={"profile": "offline", "roles": {"clip": [cluster["spec"]]}}, plugins=False)
    )
    try:
        on_ray = remote.map(
            PROGRAMS, IMAGES, engine="ray", workers=2, concurrency=4,
            trace_dir=tmp_path / "ray", progress=False,
        )  # fmt: skip
        threads = local.map(PROGRAMS, IMAGES, trace_dir=tmp_path / "threads", progress=False)
    finally:
        remote.close()
        local.close()

    assert [r.ok for r in on_ray] == [r.ok for r in threads] == [True, True, True, False]
    for a, b in zip(on_ray[:2], threads[:2], strict=True):
        assert np.isclose(a.output, b.output, atol=1e-5)
    assert on_ray[2].output == threads[2].output
    assert on_ray[3].error.code == threads[3].error.code == "unknown-tool"
    assert [len(r.trace.steps) for r in on_ray] == [len(r.trace.steps) for r in threads]

    rows = [
        json.loads(line) for line in (tmp_path / "ray" / "report.jsonl").read_text().splitlines()
    ]
    assert [r["ok"] for r in rows] == [True, True, True, False]
    assert all((tmp_path / "ray" / f"{i:05d}" / "index.html").is_file() for i in range(3))
    # two worker processes, one model: the deployment's replica loaded it once
    assert RemoteModels(settings.serve).stats("clip")["loads"] == {cluster["spec"].key(): 1}


def test_map_on_ray_needs_served_models() -> None:
    from orchestrator import Config, Orchestrator

    orch = Orchestrator(Config(models={"profile": "offline"}, plugins=False))
    try:
        with pytest.raises(ValueError, match=r"models\.serve"):
            orch.map(PROGRAMS[:1], IMAGES[:1], engine="ray", progress=False)
    finally:
        orch.close()
