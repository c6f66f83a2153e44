"""GPU: does a model's work stay warm? (``ATTN`` lines; run by check.sh, or alone from the
repository root: ``PYTHONPATH=. python3 bench/gpu/attention.py``.)

The batched six-question ``vlm.answer`` of bench/batching.py's NLVR case (tiny LLaVA),
timed (best of 3, synchronised) from a fresh caller thread each time:
* with the model's own thread (the default: the forward runs on a thread that ran it before),
* without it (the forward runs on the fresh thread), cuDNN attention on and then off,
and ``orch.execute`` of the NLVR program. On an H100 (GPU.md) the call took 0.12-0.15 s on a
warm thread and 1.5-2.2 s on a fresh one with cuDNN attention on.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import torch  # noqa: E402
from batching import NLVR  # noqa: E402
from common import orchestrator  # noqa: E402

from tools.convert import to_image  # noqa: E402


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def in_fresh_thread(fn) -> float:
    out: list[float] = []

    def body() -> None:
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t0)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    return out[0]


def main() -> None:
    orch = orchestrator("tiny", memo=False)
    vlm = orch.pool.get("vlm")
    print(f"ATTN device={vlm.device} dtype={vlm.dtype} torch={torch.__version__} "
          f"cudnn_sdp={torch.backends.cuda.cudnn_sdp_enabled()}", flush=True)  # fmt: skip
    left, right = to_image("sample:coffee"), to_image("sample:chelsea")
    questions = ["How many people are in the image?", "How many boats are in the image?",
                 "Is it daytime?"]  # fmt: skip
    varied = [(left if i % 2 == 0 else right, questions[i // 2]) for i in range(6)]

    def call() -> None:
        vlm.answer(varied, max_new_tokens=24)

    def times(label: str) -> None:
        ts = [in_fresh_thread(call) for _ in range(4)]
        print(f"ATTN {label}: first {ts[0]:.3f} s, then best {min(ts[1:]):.3f} s "
              f"(fresh caller thread each call)", flush=True)  # fmt: skip

    times("model thread (default)")
    vlm.threaded = False
    for cudnn in (True, False):
        torch.backends.cuda.enable_cudnn_sdp(cudnn)
        times(f"no model thread, cudnn_sdp={cudnn}")
    vlm.threaded = True
    torch.backends.cuda.enable_cudnn_sdp(orch.pool.settings.cudnn_attention)
    images = {"LEFT": "sample:coffee", "RIGHT": "sample:chelsea"}
    ts = []
    for _ in range(3):
        sync()
        t0 = time.perf_counter()
        assert orch.execute(NLVR, images=images).ok
        sync()
        ts.append(time.perf_counter() - t0)
    print(f"ATTN orch.execute NLVR: {' '.join(f'{t:.3f}' for t in ts)} s", flush=True)
    orch.close()


if __name__ == "__main__":
    main()
