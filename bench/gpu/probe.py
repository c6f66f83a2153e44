"""Per-family GPU smoke: build each tiny random-weight model, load it through the pool
(devices from $VISCHAIN_MODELS__DEVICES, like the tests) and report where its weights went.

One line per family: ``PROBE <family> OK|FAIL device=... dtype=... params=... secs=...``;
a FAIL names the exception, and the run goes on to the next family. Exit 0 always: the
verdicts are in the lines (the script's CLIP assertion is the hard check).
"""

from __future__ import annotations

import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

from orchestrator import Config
from tools.backends import backend_class
from tools.convert import to_image
from tools.pool import ModelPool
from tools.settings import ModelSpec

FAMILIES = ["open_clip", "owlvit", "owlv2", "grounding_dino", "sam", "llava", "molmo2",
            "sd_inpaint", "mtcnn"]  # fmt: skip


def params_of(backend) -> tuple[set[str], set[str], int]:
    devs, dts, n = set(), set(), 0
    for m in backend.modules():
        if isinstance(m, torch.nn.Module):
            for p in m.parameters():
                devs.add(p.device.type)
                dts.add(str(p.dtype).replace("torch.", ""))
                n += p.numel()
    return devs, dts, n


def smoke(family: str, backend, image) -> str:
    """One small call on the loaded model, so a device/dtype bug in its forward shows."""
    if family == "open_clip":
        return f"sim={backend.similarity([image], ['a person', 'a cat']).round(3).tolist()}"
    if family in ("owlvit", "owlv2", "grounding_dino"):
        return f"detect->{[len(o) for o in backend.detect([image], [['person', 'cup']])]}"
    if family == "llava":
        return f"answer={backend.answer([(image, 'what is it?')], max_new_tokens=4)!r}"
    if family == "molmo2":
        return f"point->{[len(p) for p in backend.point([(image, 'face')], max_new_tokens=8)]}"
    if family == "sam":
        predictor, _ = backend.predictor(image)
        masks = predictor.predict_points([(250.0, 120.0)])
        auto = backend.automatic(image, max_masks=4)
        return f"points->{len(masks)} masks, automatic->{len(auto)}"
    if family == "sd_inpaint":
        import numpy as np

        from tools.types import Mask

        box = np.zeros((image.height, image.width), bool)
        box[100:200, 150:300] = True
        out = backend.inpaint(image, Mask(box), "a cat face", seed=0)
        return f"inpaint->{out.size}"
    if family == "mtcnn":
        return f"faces={[len(f) for f in backend.detect_faces([image])]}"
    return "loaded"


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="vischain-probe-"))
    cfg = Config(models={"profile": "offline", "cache_dir": tmp, "progress": False}, plugins=False)
    settings = cfg.model_settings()
    print(f"PROBE settings.devices={settings.devices!r} cuda={torch.cuda.is_available()}")
    pool = ModelPool(settings)
    image = to_image("sample:astronaut")
    failed = 0
    for family in FAMILIES:
        t0 = time.perf_counter()
        try:
            cls = backend_class(family)
            spec = ModelSpec(family="mtcnn") if family == "mtcnn" else cls.tiny_spec(tmp / family)
            backend = pool.load(spec)
            devs, dts, n = params_of(backend)
            try:
                extra = smoke(family, backend, image)
            except Exception as exc:  # the load worked; say what the forward did
                extra = f"forward FAILED {type(exc).__name__}: {str(exc)[:300]}"
                failed += 1
            print(f"PROBE {family} OK placement={backend.device}/{str(backend.dtype)[6:]} "
                  f"param_devices={sorted(devs)} dtypes={sorted(dts)} params={n} "
                  f"secs={time.perf_counter() - t0:.1f} {extra}", flush=True)  # fmt: skip
            pool.evict(spec.key())
        except Exception as exc:
            failed += 1
            print(f"PROBE {family} FAIL {type(exc).__name__}: {str(exc)[:400]} "
                  f"secs={time.perf_counter() - t0:.1f}", flush=True)  # fmt: skip
            traceback.print_exc(limit=6, file=sys.stdout)
    if torch.cuda.is_available():
        print(f"PROBE cuda peak_allocated={torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
    print(f"PROBE done: {len(FAMILIES) - failed} ok, {failed} failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
