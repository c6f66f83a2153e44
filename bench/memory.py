"""5. Memory: peak resident memory with every tool in use, and each model loaded exactly
once however many tools and programs share it."""

from __future__ import annotations

import resource
import time

from common import orchestrator, report

PROGRAMS = [
    "OBJ0=FaceDet(image=IMAGE)\nOBJ1=Classify(image=IMAGE, object=OBJ0, categories=['astronaut', 'pilot'])\nIMAGE0=Tag(image=IMAGE, object=OBJ1)\nRESULT=IMAGE0",
    "OBJ0=Seg(image=IMAGE)\nOBJ1=Select(image=IMAGE, object=OBJ0, query='rocket')\nIMAGE0=Replace(image=IMAGE, object=OBJ1, prompt='a tree')\nRESULT=IMAGE0",
    "BOX0=Loc(image=IMAGE, object='flag')\nIMAGE0=Crop(image=IMAGE, box=BOX0)\nANSWER0=Vqa(image=IMAGE0, question='What colour?')\nRESULT=ANSWER0",
    "POINTS0=Point(image=IMAGE, object='face')\nOBJ0=Seg(image=IMAGE, object=POINTS0)\nIMAGE0=ColorPop(image=IMAGE, object=OBJ0)\nRESULT=IMAGE0",
    "TEXT0=Ocr(image=IMAGE)\nOBJ0=FaceDet(image=IMAGE)\nIMAGE0=Emoji(image=IMAGE, object=OBJ0, emoji='grinning_face')\nIMAGE1=BgBlur(image=IMAGE0, object=OBJ0)\nRESULT=IMAGE1",
    "A=Match(image=IMAGE, options=['a cat', 'a dog'])\nB=Similarity(image=IMAGE, text='a cat')\nRESULT=A",
]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    start = rss_mb()
    orch = orchestrator("tiny", memo=True)
    for _ in range(3):  # the same tools again and again: models must not load again
        for p in PROGRAMS:
            result = orch.execute(p, image="sample:astronaut")
            assert result.ok, (p, result.error)
    rows = [
        {"model": m["model"], "roles": ",".join(m["roles"]), "device": m["device"],
         "memory_mb": m["memory_mb"], "loads": orch.pool.load_counts[m["key"]]}
        for m in orch.pool.loaded()
    ]  # fmt: skip
    assert all(r["loads"] == 1 for r in rows), rows
    peak = rss_mb()
    rows.append({"model": "(process peak RSS)", "memory_mb": round(peak, 1), "loads": ""})
    rows.append(
        {"model": "(RSS at start, before imports)", "memory_mb": round(start, 1), "loads": ""}
    )
    orch.close()
    report("memory", rows, ["model", "roles", "device", "memory_mb", "loads"], peak_rss_mb=peak)


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"done in {time.perf_counter() - t0:.1f} s")
