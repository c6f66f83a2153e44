"""Seg batches: calls prompting one picture share its embedding and one decoder call."""

from __future__ import annotations

from orchestrator import Orchestrator
from tools import Box, Object, ObjectList, Point, PointList
from tools.convert import to_image


def boxes(*corners: tuple[int, int, int, int]) -> ObjectList:
    return ObjectList(tuple(Object(Box(*c)) for c in corners))


def test_box_and_point_prompts_on_one_picture_share_decoder_calls(tiny: Orchestrator) -> None:
    seg, ctx, sam = tiny.registry.get("Seg"), tiny.context(), tiny.pool.get("sam")
    photo, other = to_image("sample:astronaut"), to_image("sample:coffee")
    calls = [
        {"image": photo, "object": boxes((10, 10, 100, 120))},
        {"image": photo, "object": boxes((200, 40, 300, 200), (50, 300, 150, 400))},
        {"image": photo, "object": PointList((Point(220, 100), Point(60, 350)))},
        {"image": other, "object": boxes((0, 0, 60, 60))},
        {"image": photo, "object": ObjectList()},
    ]
    seg.run_batch(ctx, calls)  # warm the embeddings
    before = sam.stats["mask_decoder"]
    together = seg.run_batch(ctx, calls)
    assert sam.stats["mask_decoder"] - before == 3  # photo's boxes, photo's points, other's boxes
    alone = [seg.run_batch(ctx, [c])[0] for c in calls]
    for got, own in zip(together, alone, strict=True):
        assert [o.box for o in got] == [o.box for o in own]
        assert all((a.mask.array == b.mask.array).all() for a, b in zip(got, own, strict=True))
    assert [len(r) for r in together] == [1, 2, 2, 1, 0]
