"""4. Throughput: 16 and 64 concurrent programs with cross-program batching (Orchestrator.map)
against running them one at a time, on the same models and inputs.

Each row also says how the batches filled: Loc and Vqa batches run through their queues
(and the largest so far, in callers) and the VLM's generate calls. ``--wait fixed --max-wait-ms 20`` runs the
same with every batched tool's leader always waiting for company (``tools: {Name: {wait,
max_wait_ms}}``), to see whether a longer wait would fill batches on a fast device;
``--workers N`` sets the executor's worker threads.
"""

from __future__ import annotations

import argparse
import time

from common import orchestrator, report

PROGRAM = """\
BOX0=Loc(image=IMAGE, object='{q}')
IMAGE0=Crop(image=IMAGE, box=BOX0)
ANSWER0=Vqa(image=IMAGE0, question='What colour is the {q}?')
ANSWER1=Vqa(image=IMAGE, question='Is there a {q}?')
RESULT=ANSWER1
"""
OBJECTS = ["cup", "cat", "dog", "car", "tree", "chair", "hat", "boat"]
IMAGES = ["sample:coffee", "sample:chelsea", "sample:astronaut", "sample:rocket"]
BATCHED = ("Loc", "Vqa")  # the program's batched tools


def items(n: int) -> tuple[list[str], list[str]]:
    programs = [PROGRAM.format(q=f"{OBJECTS[i % len(OBJECTS)]} {i}") for i in range(n)]
    return programs, [IMAGES[i % len(IMAGES)] for i in range(n)]


def queue_stats(orch) -> dict[str, tuple[int, int]]:
    """Per batched tool: (batches run so far, most calls in one batch)."""
    out = {}
    for name in BATCHED:
        stats = orch.executor.batcher.stats(name)
        out[name] = (stats.batches, stats.largest)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="16,64", help="program counts, e.g. 16,64")
    parser.add_argument("--wait", choices=["adaptive", "fixed"], default="adaptive")
    parser.add_argument("--max-wait-ms", type=float, default=None)
    parser.add_argument("--workers", type=int, default=None, help="executor.workers")
    args = parser.parse_args()
    options = {"wait": args.wait} | (
        {"max_wait_ms": args.max_wait_ms} if args.max_wait_ms is not None else {}
    )
    tools = (
        {name: options for name in BATCHED} if args.wait != "adaptive" or args.max_wait_ms else {}
    )
    rows = []
    executor = {"workers": args.workers} if args.workers else {}
    orch = orchestrator("tiny", memo=False, tools=tools, executor=executor)
    warm, warm_images = items(4)
    orch.map(warm, warm_images, concurrency=4, progress=False)
    for n in (int(s) for s in args.sizes.split(",")):
        programs, images = items(n)
        t0 = time.perf_counter()
        for p, img in zip(programs, images, strict=True):
            assert orch.execute(p, image=img).ok
        one_at_a_time = time.perf_counter() - t0
        vlm = orch.pool.get("vlm")
        before, queues = vlm.stats["generate_calls"], queue_stats(orch)
        t0 = time.perf_counter()
        results = orch.map(programs, images, concurrency=n, progress=False)
        together = time.perf_counter() - t0
        assert all(r.ok for r in results)
        after = queue_stats(orch)
        rows.append({
            "programs": n,
            "one_at_a_time_s": one_at_a_time,
            "concurrent_batched_s": together,
            "speedup": one_at_a_time / together,
            "programs_per_s": n / together,
            "vqa_calls": 2 * n,
            "vlm_generate_batches": vlm.stats["generate_calls"] - before,
            "loc_batches": after["Loc"][0] - queues["Loc"][0],
            "vqa_batches": after["Vqa"][0] - queues["Vqa"][0],
            "largest_vqa_batch": after["Vqa"][1],
        })  # fmt: skip
    orch.close()
    report("throughput", rows, ["programs", "one_at_a_time_s", "concurrent_batched_s", "speedup",
                                "programs_per_s", "vqa_calls", "vlm_generate_batches",
                                "loc_batches", "vqa_batches", "largest_vqa_batch"],
           wait=args.wait, max_wait_ms=args.max_wait_ms, workers=orch.config.executor.workers)  # fmt: skip


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"done in {time.perf_counter() - t0:.1f} s")
