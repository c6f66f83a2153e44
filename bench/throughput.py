"""4. Throughput: 16 and 64 concurrent programs with cross-program batching (Orchestrator.map)
against running them one at a time, on the same models and inputs."""

from __future__ import annotations

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


def items(n: int) -> tuple[list[str], list[str]]:
    programs = [PROGRAM.format(q=f"{OBJECTS[i % len(OBJECTS)]} {i}") for i in range(n)]
    return programs, [IMAGES[i % len(IMAGES)] for i in range(n)]


def main() -> None:
    rows = []
    orch = orchestrator("tiny", memo=False)
    warm, warm_images = items(4)
    orch.map(warm, warm_images, concurrency=4, progress=False)
    for n in (16, 64):
        programs, images = items(n)
        t0 = time.perf_counter()
        for p, img in zip(programs, images, strict=True):
            assert orch.execute(p, image=img).ok
        one_at_a_time = time.perf_counter() - t0
        vlm = orch.pool.get("vlm")
        before = vlm.stats["generate_calls"]
        t0 = time.perf_counter()
        results = orch.map(programs, images, concurrency=n, progress=False)
        together = time.perf_counter() - t0
        assert all(r.ok for r in results)
        rows.append({
            "programs": n,
            "one_at_a_time_s": one_at_a_time,
            "concurrent_batched_s": together,
            "speedup": one_at_a_time / together,
            "programs_per_s": n / together,
            "vqa_calls": 2 * n,
            "vlm_generate_batches": vlm.stats["generate_calls"] - before,
        })  # fmt: skip
    orch.close()
    report("throughput", rows, ["programs", "one_at_a_time_s", "concurrent_batched_s", "speedup",
                                "programs_per_s", "vqa_calls", "vlm_generate_batches"])  # fmt: skip


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"done in {time.perf_counter() - t0:.1f} s")
