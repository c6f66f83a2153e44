"""2. Batching inside a program: six Vqa calls (NLVR-style), Classify over 20 faces and
Select over 30 masks — VisChain's batched execution against a VisProg-style loop calling
the same tools one at a time, and the ideal (one batched forward of the model).

A lone program asking six questions one after another (each question names the last
answer, so nothing can batch), and one calling a 1 ms batched tool 50 times one after
another: seconds per program, and how often a batch's leader waited for company (none can
come).

NLVR's three figures are measured taking turns (``--repeats`` rounds, default 9), so a
slow moment of the machine falls on all three. ``--only vqa`` runs just the Vqa cases
(seconds, not minutes), with the image preprocessing of six rows over two photos: every
row's picture, against each distinct one once (real checkpoints' processor settings,
LLaVA-1.5 and Molmo2).

Two more measurements on the CLIP model's device: preparing Select's 30 mask regions crop
by crop (PIL) against one tensor op (``tools.backends.regions``), and Select and Classify
called at the same time from two threads (batching by model: their crops share CLIP
forwards) against one after the other."""

from __future__ import annotations

import time

from common import (
    faces_grid,
    interleaved_medians,
    median_time,
    orchestrator,
    realistic_clip,
    report,
    sequential,
)

from tools import Tool
from tools.types import Box, Mask, Object, ObjectList

NLVR = """\
ANSWER0=Vqa(image=LEFT, question='How many people are in the image?')
ANSWER1=Vqa(image=RIGHT, question='How many people are in the image?')
ANSWER2=Vqa(image=LEFT, question='How many boats are in the image?')
ANSWER3=Vqa(image=RIGHT, question='How many boats are in the image?')
ANSWER4=Vqa(image=LEFT, question='Is it daytime?')
ANSWER5=Vqa(image=RIGHT, question='Is it daytime?')
ANSWER6=Eval('{ANSWER0} + {ANSWER1} == 6 and {ANSWER2} + {ANSWER3} == 2')
RESULT=ANSWER6
"""
CHAIN = "ANSWER0=Vqa(image=LEFT, question='How many people are in the image?')\n" + "".join(
    f"ANSWER{i}=Vqa(image={'LEFT' if i % 2 == 0 else 'RIGHT'}, question=ANSWER{i - 1})\n"
    for i in range(1, 6)
)
CATEGORIES = ["astronaut", "pilot", "doctor", "teacher", "engineer"]


def grid_masks(image, n: int = 30) -> ObjectList:
    import numpy as np

    objects = []
    cols = 6
    w, h = image.width // cols, image.height // ((n + cols - 1) // cols)
    for i in range(n):
        x, y = (i % cols) * w, (i // cols) * h
        arr = np.zeros((image.height, image.width), bool)
        arr[y : y + h, x : x + w] = True
        objects.append(Object(Box(x, y, x + w, y + h), mask=Mask(arr)))
    return ObjectList(tuple(objects))


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["vqa"], help="run only the Vqa cases")
    parser.add_argument("--repeats", type=int, default=9,
                        help="NLVR: measured rounds, VisChain, the loop and the ideal taking turns")  # fmt: skip
    args = parser.parse_args()
    rows = []
    counter = _WaitCounter()
    # --- six Vqa calls, tiny LLaVA ------------------------------------------------------
    orch = orchestrator("tiny", memo=False)
    images = {"LEFT": "sample:coffee", "RIGHT": "sample:chelsea"}
    vlm = orch.pool.get("vlm")
    from tools.convert import to_image

    pairs = [
        (to_image(images["LEFT" if i % 2 == 0 else "RIGHT"]), f"question {i}?") for i in range(6)
    ]
    ours, base, ideal = interleaved_medians(
        [
            lambda: orch.execute(NLVR, images=images),
            lambda: sequential(orch, NLVR, images),
            lambda: vlm.answer(pairs, max_new_tokens=24),
        ],
        repeats=args.repeats,
    )
    rows.append({"case": "NLVR: 6 x Vqa (tiny LLaVA)", "visprog_loop_s": base, "vischain_s": ours,
                 "ideal_one_batch_s": ideal, "speedup": base / ours, "vs_ideal": ours / ideal})  # fmt: skip
    lone = lone_sequential(orch, images, counter)
    orch.close()
    pictures = distinct_pictures()
    if args.only == "vqa":
        columns = ["case", "visprog_loop_s", "vischain_s", "ideal_one_batch_s", "speedup"]
        report("batching-vqa", rows, [*columns, "vs_ideal"], lone_sequential_caller=lone,
               distinct_pictures=pictures)  # fmt: skip
        print("lone_sequential_caller", {k: round(v, 4) for k, v in lone.items()})
        print("distinct_pictures", {k: round(v, 4) if isinstance(v, float) else v
                                    for k, v in pictures.items()})  # fmt: skip
        return

    # --- Classify over 20 faces and Select over 30 masks, CLIP ViT-B-32 ---------------------
    orch = orchestrator("tiny", memo=False, roles={"clip": [realistic_clip()]})
    grid = faces_grid(20)
    faces = orch.registry.get("FaceDet")(grid, ctx=orch.context())
    assert len(faces) == 20, len(faces)
    classify = orch.registry.get("Classify")
    ctx = orch.context()
    clip = orch.pool.get("clip")
    clip.image_features([grid])  # load and warm up

    def vischain_classify() -> None:
        orch.pool.features.clear()
        classify.run_batch(
            ctx, [{"image": grid, "object": faces, "categories": CATEGORIES, "describe": False}]
        )

    def loop_classify() -> None:
        orch.pool.features.clear()
        for face in faces:  # one face at a time: one CLIP forward each
            classify.run_batch(
                ctx,
                [
                    {
                        "image": grid,
                        "object": ObjectList((face,)),
                        "categories": CATEGORIES,
                        "describe": False,
                    }
                ],
            )

    from tools.builtin.crop import object_crop

    crops = [object_crop(grid, f) for f in faces]

    def ideal_classify() -> None:
        orch.pool.features.clear()
        clip.zero_shot(crops, [*CATEGORIES, "other"])

    ours, base, ideal = (
        median_time(f, repeats=3) for f in (vischain_classify, loop_classify, ideal_classify)
    )
    rows.append({"case": "Classify: 20 faces (CLIP ViT-B-32)", "visprog_loop_s": base, "vischain_s": ours,
                 "ideal_one_batch_s": ideal, "speedup": base / ours, "vs_ideal": ours / ideal})  # fmt: skip

    select = orch.registry.get("Select")
    masks = grid_masks(grid, 30)

    def vischain_select() -> None:
        orch.pool.features.clear()
        select.run_batch(
            ctx, [{"image": grid, "object": masks, "query": "a smiling face", "category": None}]
        )

    def loop_select() -> None:
        orch.pool.features.clear()
        for m in masks:  # VisProg-style: score each mask's crop on its own
            select.run_batch(
                ctx,
                [
                    {
                        "image": grid,
                        "object": ObjectList((m,)),
                        "query": "a smiling face",
                        "category": None,
                    }
                ],
            )

    mask_crops = [object_crop(grid, m) for m in masks]

    def ideal_select() -> None:
        orch.pool.features.clear()
        clip.similarity(mask_crops, ["a photo of a smiling face"])

    ours, base, ideal = (
        median_time(f, repeats=3) for f in (vischain_select, loop_select, ideal_select)
    )
    rows.append({"case": "Select: 30 masks (CLIP ViT-B-32)", "visprog_loop_s": base, "vischain_s": ours,
                 "ideal_one_batch_s": ideal, "speedup": base / ours, "vs_ideal": ours / ideal})  # fmt: skip
    extra = {
        "lone_sequential_caller": lone,
        "distinct_pictures": pictures,
        "region_preparation": regions_vs_crops(clip, grid, masks),
        "select_and_classify_together": together_vs_apart(orch, clip, grid, faces, masks),
        "two_callers_at_an_idle_model": two_callers(orch, clip, grid, faces),
    }
    orch.close()
    report(
        "batching",
        rows,
        ["case", "visprog_loop_s", "vischain_s", "ideal_one_batch_s", "speedup", "vs_ideal"],
        **extra,
    )
    for name, values in extra.items():
        print(name, {k: round(v, 4) if isinstance(v, float) else v for k, v in values.items()})


class Sleepy(Tool):
    """A batched tool whose batch costs 1 ms (the benchmark's fast model step)."""

    name = "Sleepy"
    max_batch = 16

    def run(self, ctx, text: str) -> str:
        """Args:
        text: any text
        """
        return self.one(ctx, text=text)

    def run_batch(self, ctx, calls):
        time.sleep(0.001)
        return [c["text"][:8] for c in calls]


class _WaitCounter:
    """Counts the adaptive wait's decisions to wait (``AdaptiveWait.until`` returning more
    than nothing: each is one wait of a leader for company), in any version of the code."""

    def __init__(self) -> None:
        from tools.waiting import AdaptiveWait

        self.waits = 0
        original = AdaptiveWait.until

        def until(wait, *args, **kwargs):
            left = original(wait, *args, **kwargs)
            self.waits += left > 0
            return left

        AdaptiveWait.until = until


def lone_sequential(orch, images: dict[str, str], counter: _WaitCounter) -> dict:
    """Six Vqa calls one after another in one program (``CHAIN``), then 50 calls one after
    another to a batched tool whose batch costs 1 ms (``Sleepy``: a fast model step, as a
    small model's forward on an accelerator): median seconds per run and waits for company
    per run (nobody else runs: every wait is lost time)."""
    from orchestrator import Orchestrator
    from tools import Registry

    runs = 7
    orch.execute(CHAIN, images=images)  # warm-up
    before = counter.waits
    seconds = median_time(lambda: orch.execute(CHAIN, images=images), repeats=runs, warmup=0)
    out = {"vqa_chain_s": seconds, "vqa_chain_waits_per_run": (counter.waits - before) / runs}
    fast = Orchestrator(orch.config, registry=Registry([Sleepy()]))
    chain = "T0=Sleepy(text='a')\n" + "".join(f"T{i}=Sleepy(text=T{i - 1})\n" for i in range(1, 50))
    assert fast.execute(chain).ok  # warm-up
    before = counter.waits
    seconds = median_time(lambda: fast.execute(chain), repeats=runs, warmup=0)
    fast.close()
    out |= {"fast_chain_50_s": seconds, "fast_chain_waits_per_run": (counter.waits - before) / runs}
    return out


def distinct_pictures() -> dict:
    """Seconds of image preprocessing for six VLM rows over two 640x480 photos (NLVR's
    shape) with two real checkpoints' processor settings, built from their classes'
    defaults (no weights needed): every row's picture preprocessed, as a transformers
    processor does (Molmo2's vision encoder then preprocessed the new pictures again),
    against each distinct picture once (``tools.backends.image_processing``)."""
    import numpy as np
    from PIL import Image as PILImage
    from transformers import CLIPImageProcessor, Molmo2ImageProcessor

    try:
        from tools.backends.image_processing import MOLMO2_CROPS, PER_PICTURE, DistinctPictures
    except ImportError:  # an older revision (bench/compare.py runs this script on it)
        return {"skipped": "no tools.backends.image_processing in this revision"}

    rng = np.random.default_rng(0)
    photos = [PILImage.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
              for _ in range(2)]  # fmt: skip
    rows = [photos[i % 2] for i in range(6)]
    llava = CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    out = {}
    for name, processor, layout, again in (("llava_1_5_336px", llava, PER_PICTURE, False),
                                           ("molmo2_378px_crops", Molmo2ImageProcessor(),
                                            MOLMO2_CROPS, True)):  # fmt: skip
        once = DistinctPictures(processor, layout)

        def every_row(processor=processor, again=again) -> None:
            processor(images=rows, return_tensors="pt")
            if again:
                processor(images=photos, return_tensors="pt")

        out[f"{name}_every_row_s"] = median_time(every_row)
        out[f"{name}_once_s"] = median_time(lambda once=once: once(rows, return_tensors="pt"))
        out[f"{name}_ratio"] = out[f"{name}_every_row_s"] / out[f"{name}_once_s"]
    return out


def regions_vs_crops(clip, image, objects) -> dict:
    """Seconds to prepare CLIP's input for every object: crop by crop (PIL crop, grey,
    resize, then one normalise) against one tensor op on the model's device."""
    import torch

    from tools.backends.regions import region_pixels
    from tools.builtin.crop import object_crop, object_region

    plan = clip.region_plan
    if plan is None:
        return {"skipped": "the model's preprocessing cannot batch regions"}
    regions = [object_region(image, o) for o in objects]
    boxes, masks = [b for b, _ in regions], [m for _, m in regions]

    def sync() -> None:
        if str(clip.device).startswith("cuda"):
            torch.cuda.synchronize()

    def crops() -> None:
        clip.pixels([object_crop(image, o) for o in objects]).to(clip.device)
        sync()

    def tensor_op() -> None:
        region_pixels(image.array, boxes, masks, plan, clip.device)
        sync()

    per_crop, one_op = median_time(crops, repeats=5), median_time(tensor_op, repeats=5)
    return {"device": str(clip.device), "regions": len(boxes), "crop_by_crop_s": per_crop,
            "one_tensor_op_s": one_op, "speedup": per_crop / one_op,
            "used_by_default": bool(clip.batch_regions)}  # fmt: skip


def together_vs_apart(orch, clip, image, faces, masks) -> dict:
    """Select over 30 masks and Classify over 20 faces, as two programs would call them:
    one after the other, then at the same time from two threads (their crops share CLIP
    forwards through the model's image lane)."""
    import threading

    select, classify = orch.registry.get("Select"), orch.registry.get("Classify")
    sel = {"image": image, "object": masks, "query": "a smiling face", "category": None}
    cls = {"image": image, "object": faces, "categories": CATEGORIES, "describe": False}

    def run(tool, call) -> None:
        tool.run_batch(orch.context(), [call])

    def apart() -> None:
        orch.pool.features.clear()
        run(select, sel)
        run(classify, cls)

    def together() -> None:
        orch.pool.features.clear()
        threads = [threading.Thread(target=run, args=a) for a in ((select, sel), (classify, cls))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    lane = clip.lanes.get("image_encoder", clip._encode_pixels)
    seq = median_time(apart, repeats=3)
    before = lane.stats.batches if hasattr(lane, "stats") else 0
    par = median_time(together, repeats=3)
    batches = (lane.stats.batches - before) / 4 if hasattr(lane, "stats") else None
    return {"apart_s": seq, "together_s": par, "speedup": seq / par,
            "encoder_batches_per_together_run": batches}  # fmt: skip


def two_callers(orch, clip, image, faces) -> dict:
    """Two threads ask CLIP's idle image encoder for a new picture each at the same moment
    (two programs reaching an idle model together): seconds per pair, encoder batches per
    pair (1: they shared one)."""
    import threading

    from tools.builtin.crop import object_crop

    crops = [object_crop(image, face) for face in faces[:2]]

    def pair() -> None:
        orch.pool.features.clear()
        start = threading.Barrier(2)

        def call(picture) -> None:
            start.wait()
            clip.image_features([picture])

        threads = [threading.Thread(target=call, args=(c,)) for c in crops]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    lane = clip.lanes.get("image_encoder", clip._encode_pixels)
    before = lane.stats.batches
    seconds = median_time(pair, repeats=9)
    return {"pair_s": seconds, "encoder_batches_per_pair": (lane.stats.batches - before) / 10}


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"done in {time.perf_counter() - t0:.1f} s")
