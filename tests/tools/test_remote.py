"""Model roles on Ray Serve: a local Ray cluster, a tiny CLIP deployment, and clients in
other processes that share it (tools.remote and tools.deployments)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.support.ray_cluster import local_ray, start_client
from tools.backends.clip import OpenClipBackend
from tools.settings import ModelSettings, ModelSpec, ServeSettings

pytestmark = pytest.mark.server

APP = "vctest"
PROGRAM = "ANSWER0=Similarity(image=IMAGE, text='a photo of a cat')"
# Calls wait up to this long for a second call to share their batch (max_batch 2): long
# enough that two processes started together always meet, and a window to kill a replica in.
WAIT_MS = 8000


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    """A Serve app with one 'clip' deployment offering two tiny CLIP checkpoints."""
    from ray import serve

    from tools.deployments import models_app

    root = tmp_path_factory.mktemp("tiny-clip")
    first = OpenClipBackend.tiny_spec(root / "a")
    second = OpenClipBackend.tiny_spec(root / "b")
    with local_ray() as address:
        settings = ModelSettings(
            profile="offline",
            roles={"clip": [first]},
            cache_dir=root / "cache",
            serve=ServeSettings(
                address=address,
                app=APP,
                num_cpus=0.5,
                health_check_s=1.0,
                timeout_s=180,
                multiplex={"clip": [second]},
                batch={"clip": {"max_batch": 2, "max_wait_ms": WAIT_MS}},
            ),
        )
        serve.run(models_app(settings, roles=["clip"]), name=APP, route_prefix=None)
        yield {"address": address, "settings": settings, "first": first, "second": second}


def client_settings(served: dict, **roles: list[ModelSpec]) -> ModelSettings:
    serve_settings = served["settings"].serve
    return ModelSettings(profile="offline", roles=roles, serve=serve_settings)


CLIENT = """
import json, sys, time
from pathlib import Path
from orchestrator import Config, Orchestrator

models, go = json.loads(sys.argv[1]), Path(sys.argv[2])
orch = Orchestrator(Config(models=models, plugins=False))
orch.pool.resolve("clip")  # connect before the start signal
while not go.exists():
    time.sleep(0.01)
result = orch.execute(sys.argv[3], image="sample:astronaut")
step = result.trace.steps[0]
print(json.dumps({"ok": result.ok, "answer": result.output, "error": str(result.error),
                  "device": step.meta.get("device")}))
"""


def test_two_processes_share_one_model_load_and_one_batch(served: dict, tmp_path: Path) -> None:
    from orchestrator import Config, Orchestrator
    from tools.remote import RemoteModels

    models = client_settings(served).model_dump(mode="json")
    go = tmp_path / "go"
    clients = [start_client(CLIENT, json.dumps(models), str(go), PROGRAM) for _ in range(2)]
    go.touch()
    outputs = []
    for proc in clients:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    assert all(o["ok"] for o in outputs), outputs

    stats = RemoteModels(served["settings"].serve).stats("clip")
    first = served["first"].key()
    assert stats["loads"] == {first: 1}  # two processes, one copy of the model
    shared = [b for b in stats["batches"] if len(b["callers"]) == 2]
    assert shared and all(b["size"] > 1 for b in shared), stats["batches"]

    # the same answer the model gives in this process, without Serve
    local = Orchestrator(
        Config(models={"profile": "offline", "roles": {"clip": [served["first"]]}}, plugins=False)
    )
    try:
        expected = local.execute(PROGRAM, image="sample:astronaut")
    finally:
        local.close()
    for o in outputs:
        assert np.isclose(o["answer"], expected.output, atol=1e-5)
        assert o["device"] == "cpu"


def test_a_role_serves_several_checkpoints_each_loaded_once(served: dict) -> None:
    from tools.convert import to_image
    from tools.pool import ModelPool
    from tools.remote import RemoteModels

    image = to_image("sample:coffee")
    default = ModelPool(client_settings(served)).get("clip")
    other = ModelPool(client_settings(served, clip=[served["second"]])).get("clip")
    assert default.spec == served["first"] and other.spec == served["second"]

    results = {}

    def ask(name: str, backend) -> None:
        results[name] = backend.image_features([image])

    threads = [threading.Thread(target=ask, args=(n, b)) for n, b in (("a", default), ("b", other))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results["a"].shape == results["b"].shape == (1, 32)
    stats = RemoteModels(served["settings"].serve).stats("clip")
    assert stats["loads"][served["second"].key()] == 1
    assert stats["loads"][served["first"].key()] == 1
    assert set(stats["loaded"]) == {served["first"].key(), served["second"].key()}


def test_stateful_sessions_and_properties_are_served(served: dict) -> None:
    from tools.convert import to_image
    from tools.pool import ModelPool

    clip = ModelPool(client_settings(served)).get("clip")
    assert clip.logit_scale > 0  # a property, read on the replica
    probs = clip.zero_shot([to_image("sample:chelsea")], ["cat", "rocket"])
    assert probs.shape == (1, 2) and np.isclose(probs.sum(), 1.0, atol=1e-5)
    with pytest.raises(AttributeError):
        clip._private_thing  # noqa: B018


def test_killed_replica_fails_the_call_in_flight_then_restarts(served: dict) -> None:
    from tools.convert import to_image
    from tools.errors import ReplicaDiedError
    from tools.pool import ModelPool
    from tools.remote import RemoteModels

    remote = RemoteModels(served["settings"].serve)
    clip = ModelPool(client_settings(served)).get("clip")
    image = to_image("sample:rocket")
    before = remote.stats("clip")
    errors: list[BaseException] = []

    def in_flight() -> None:
        try:
            clip.similarity([image], ["a rocket"])
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=in_flight)
    thread.start()
    while remote.stats("clip")["pending"] < 1:  # the call waits in the replica's batch queue
        time.sleep(0.05)
    os.kill(before["pid"], signal.SIGKILL)
    thread.join(timeout=300)
    assert len(errors) == 1 and isinstance(errors[0], ReplicaDiedError), errors

    sims = clip.similarity([image], ["a rocket"])  # Serve started a new replica
    assert sims.shape == (1, 1)
    after = remote.stats("clip")
    assert after["pid"] != before["pid"]
    assert after["loads"] == {served["first"].key(): 1}  # the new replica loaded it anew
