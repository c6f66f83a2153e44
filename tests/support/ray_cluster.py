"""A small local Ray cluster for tests: started in this process, torn down after.

Ray's workers (Serve's controller, proxies and replicas) are started by the raylet, which
inherits this process's environment: PYTHONPATH points them at this checkout, and thread
counts and offline flags apply to them too. Other processes (the "clients" of a test) join
with the returned GCS address.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OBJECT_STORE_MB = 96


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def local_ray(num_cpus: int = 2) -> Iterator[str]:
    """``ray.init`` a fresh local cluster with a small object store; yields its address."""
    import ray
    from ray import serve

    env = {
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        ),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_DEDUP_LOGS": "0",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    temp = tempfile.mkdtemp(prefix="vcray")  # short: Ray's socket paths are length-limited
    try:
        ray.init(
            num_cpus=num_cpus,
            object_store_memory=OBJECT_STORE_MB * 2**20,
            include_dashboard=False,
            log_to_driver=False,
            _temp_dir=temp,
        )
        try:
            yield ray.get_runtime_context().gcs_address
        finally:
            with contextlib.suppress(Exception):
                serve.shutdown()
            ray.shutdown()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def start_client(script: str, *args: str) -> subprocess.Popen[str]:
    """Run ``script`` (Python source) in a fresh interpreter with this checkout importable;
    its stdout is captured for the test to read."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
