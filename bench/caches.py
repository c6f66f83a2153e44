"""3. Caches: repeated Loc, Seg and Select on one image — the first call against later calls,
with the per-image feature caches alone (memo off) and with memoised tool calls (memo on)."""

from __future__ import annotations

import time

from common import orchestrator, realistic_clip, report

CALLS = {
    "Loc (tiny OWL-ViT)": "BOX0=Loc(image=IMAGE, object='{q}')\nRESULT=BOX0",
    "Seg from boxes (tiny SAM)": "BOX0=Loc(image=IMAGE, object='{q}')\nOBJ0=Seg(image=IMAGE, object=BOX0)\nRESULT=OBJ0",
    "Select (CLIP ViT-B-32)": "BOX0=Loc(image=IMAGE, object='TOP')\nBOX1=Loc(image=IMAGE, object='BOTTOM')\nOBJ0=Seg(image=IMAGE)\nOBJ1=Select(image=IMAGE, object=OBJ0, query='{q}')\nRESULT=OBJ1",
}
QUERIES = ["cup", "saucer", "spoon", "table", "coffee"]


def timed(orch, program: str, step: str) -> float:
    result = orch.execute(program, image="sample:coffee")
    assert result.ok, result.error
    return result.trace.step(step).duration or 0.0


def main() -> None:
    rows = []
    for memo in (False, True):
        orch = orchestrator("tiny", memo=memo, roles={"clip": [realistic_clip()]})
        orch.execute(
            "A=Loc(image=IMAGE, object='x')\nB=Seg(image=IMAGE, object=A)\nC=Select(image=IMAGE, object=B, query='x')",
            image="sample:astronaut",
        )  # load models
        for name, template in CALLS.items():
            step = template.split("\nRESULT=")[1]
            orch.pool.features.clear()
            if orch.executor.memo is not None:
                orch.executor.memo.clear()
            first = timed(orch, template.format(q=QUERIES[0]), step)
            same = [timed(orch, template.format(q=QUERIES[0]), step) for _ in range(3)]
            other = [timed(orch, template.format(q=q), step) for q in QUERIES[1:]]
            again, new = min(same), sorted(other)[len(other) // 2]
            rows.append({
                "tool": name,
                "memo": memo,
                "first_ms": first * 1e3,
                "same_call_again_ms": again * 1e3,
                "new_query_same_image_ms": new * 1e3,
                "speedup_same": "memo hit" if again == 0 else first / again,
                "speedup_new_query": "memo hit" if new == 0 else first / new,
            })  # fmt: skip
        orch.close()
    report("caches", rows, ["tool", "memo", "first_ms", "same_call_again_ms", "new_query_same_image_ms",
                            "speedup_same", "speedup_new_query"])  # fmt: skip


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"done in {time.perf_counter() - t0:.1f} s")
