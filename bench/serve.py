"""Serving: N client processes running programs, (a) each with its own in-process model pool,
(b) all through one Ray Serve application (``models.serve``).

Every client runs the same number of programs (CLIP ``Match`` on a different crop of a
sample photo each time, so no feature cache or memo answers for it) two at a time, after a
warm-up program that loads (a) or reaches (b) the model. Reported per N and mode:
throughput (programs per second, all clients together, from the common start signal to
the last one done), the peak memory (PSS: shared pages counted once) of every process
involved together (this one, the clients, and in (b) Ray's own processes and the replica),
the model memory (the weights held, summed
over the processes holding them), and how many times the model was loaded.

The CLIP is a mid-sized architecture with random weights (``CONFIG``; ~28 M parameters), so
eight private copies still fit a shared machine. Run: ``.venv/bin/python bench/serve.py``
(``--clients 1 4 8 --programs 24``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

from common import RESULTS, ROOT, report

CONFIG = {
    "embed_dim": 256,
    "vision_cfg": {
        "image_size": 224,
        "layers": 6,
        "width": 384,
        "head_width": 64,
        "patch_size": 32,
    },
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 256, "heads": 4, "layers": 6},
}
OPTIONS = ["a cat", "a cup of coffee", "a rocket", "an astronaut", "a horse", "a camera"]
PROGRAM = f"ANSWER0=Match(image=IMAGE, options={OPTIONS!r})"
APP = "vcbench"
CLIENT_MB = 900  # about what one client process takes (torch and the tools imported)

CLIENT = """
import json, os, random, sys, time
from pathlib import Path
from orchestrator import Config, Orchestrator
from tools.convert import to_image

config, go, count, seed = json.loads(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
program = sys.argv[5]
orch = Orchestrator(Config(**config))
photos = [to_image(f"sample:{n}").pil for n in ("chelsea", "coffee", "rocket", "astronaut", "horse")]
rng = random.Random(seed)

def crop():
    pil = rng.choice(photos)
    w, h = pil.size
    side = rng.randint(min(w, h) // 3, min(w, h))
    x, y = rng.randint(0, w - side), rng.randint(0, h - side)
    return pil.crop((x, y, x + side, y + side))

warm = orch.execute(program, image=crop())
assert warm.ok, warm.error
print("ready", flush=True)
parent = os.getppid()
while not go.exists():
    if os.getppid() != parent:  # the benchmark is gone: do not wait forever
        sys.exit(1)
    time.sleep(0.005)
images = [crop() for _ in range(count)]
start = time.time()
results = orch.map([program] * count, images, mode="execute", concurrency=2, progress=False)
end = time.time()
loaded = orch.pool.loaded()
print(json.dumps({
    "start": start, "end": end, "ok": sum(r.ok for r in results),
    "loads": sum(orch.pool.load_counts.values()),
    "model_mb": sum(e["memory_mb"] for e in loaded),
}), flush=True)
orch.close()
"""


def pss_mb(pid: int | str) -> float:
    """A process's proportional set size (shared pages split among their users), in MB:
    summed over processes it counts shared libraries and memory once, unlike RSS."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return 0.0


def descendants_mb(root: int) -> float:
    """Memory (PSS) of ``root``'s descendant processes (not ``root`` itself), in MB."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0.0, list(children.get(root, []))
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            total += pss_mb(pid)
        except (OSError, IndexError, ValueError):
            continue
    return total


class PeakMemory:
    """Samples the summed PSS of this process and its descendants until stopped; keeps the
    peak."""

    def __init__(self) -> None:
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, descendants_mb(os.getpid()) + pss_mb("self"))
            time.sleep(0.1)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("inf")


def run_clients(config: dict[str, Any], n: int, programs: int, work: Path) -> dict[str, Any]:
    need = n * CLIENT_MB + 2048
    if available_mb() < need:  # a shared machine: never push others' work out of memory
        raise MemoryError(f"{n} clients need ~{need:.0f} MB; {available_mb():.0f} MB available")
    go = work / f"go-{time.time_ns()}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    script = textwrap.dedent(CLIENT)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                script,
                json.dumps(config),
                str(go),
                str(programs),
                str(i),
                PROGRAM,
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(n)
    ]
    with PeakMemory() as memory:
        for proc in procs:
            line = proc.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"client failed: {line}{proc.stderr.read()[-3000:]}")
        go.touch()
        outs = []
        for proc in procs:
            out, err = proc.communicate(timeout=1800)
            if proc.returncode != 0:
                raise RuntimeError(f"client failed: {err[-3000:]}")
            outs.append(json.loads(out.strip().splitlines()[-1]))
    seconds = max(o["end"] for o in outs) - min(o["start"] for o in outs)
    return {
        "programs": sum(o["ok"] for o in outs),
        "seconds": seconds,
        "throughput": sum(o["ok"] for o in outs) / seconds,
        "peak_mb": memory.peak,
        "loads": sum(o["loads"] for o in outs),
        "model_mb": sum(o["model_mb"] for o in outs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--programs", type=int, default=24, help="programs per client")
    parser.add_argument(
        "--modes", nargs="+", default=["a", "b"], choices=["a", "b"],
        help="which to measure; a mode left out keeps its rows from bench/results/serve.json",
    )  # fmt: skip
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="vcbench"))
    model = work / "bench_clip.json"
    model.write_text(json.dumps(CONFIG))
    spec = {"family": "open_clip", "model": str(model), "options": {"random_init": True}}
    base = {"plugins": False, "executor": {"memo_mb": 0}}
    local = {**base, "models": {"profile": "offline", "progress": False, "roles": {"clip": [spec]}}}
    previous = RESULTS / "serve.json"
    rows = []
    if len(args.modes) < 2 and previous.is_file():
        kept = [
            r for r in json.loads(previous.read_text())["rows"] if r["mode"][0] not in args.modes
        ]
        rows.extend({**r, "earlier_run": True} for r in kept)
    for n in args.clients if "a" in args.modes else []:
        row = run_clients(local, n, args.programs, work)
        rows.append({"mode": "a: own pool", "clients": n, **row})
        print(rows[-1], flush=True)
    if "b" not in args.modes:
        return finish(rows)

    import ray
    from ray import serve

    from tools.deployments import models_app
    from tools.remote import RemoteModels
    from tools.settings import ModelSettings

    os.environ["PYTHONPATH"] = str(ROOT)
    ray.init(num_cpus=os.cpu_count(), object_store_memory=256 * 2**20, include_dashboard=False,
             log_to_driver=False, _temp_dir=tempfile.mkdtemp(prefix="vcray"))  # fmt: skip
    try:
        address = ray.get_runtime_context().gcs_address
        served = {**local["models"], "serve": {"address": address, "app": APP, "num_cpus": 1}}
        settings = ModelSettings(**served)
        serve.run(models_app(settings, roles=["clip"]), name=APP, route_prefix=None)
        remote = {**base, "models": served}
        for n in args.clients:
            began = time.time()
            row = run_clients(remote, n, args.programs, work)
            stats = RemoteModels(settings.serve).stats("clip")
            sizes = [b["size"] for b in stats["batches"] if b["at"] >= began]
            row.update(
                loads=sum(stats["loads"].values()),
                model_mb=stats["memory_mb"],
                mean_batch=sum(sizes) / max(1, len(sizes)),
            )
            rows.append({"mode": "b: one Serve app", "clients": n, **row})
            print(rows[-1], flush=True)
    finally:
        serve.shutdown()
        ray.shutdown()

    finish(rows)


def finish(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        own = next(r for r in rows if r["mode"].startswith("a") and r["clients"] == row["clients"])
        row["throughput_vs_a"] = row["throughput"] / own["throughput"]
        row["model_mem_vs_a"] = row["model_mb"] / own["model_mb"] if own["model_mb"] else None
    report(
        "serve",
        rows,
        [
            "mode",
            "clients",
            "programs",
            "seconds",
            "throughput",
            "throughput_vs_a",
            "peak_mb",
            "model_mb",
            "model_mem_vs_a",
            "loads",
            "mean_batch",
        ],
        machine_note="2-core CPU, no GPU, shared and noisy",
        model=CONFIG,
        program=PROGRAM,
    )


if __name__ == "__main__":
    main()
