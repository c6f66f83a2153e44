"""Count, Eval and Result."""

from __future__ import annotations

import pytest

from sandbox import ErrorCode, LimitExceeded, compile_expression
from tools import Box, Object, ObjectList, Point, PointList, ToolContext
from tools.builtin.logic import count, eval_, result


def test_count_objects_and_points() -> None:
    objs = ObjectList((Object(Box(0, 0, 1, 1)), Object(Box(1, 1, 2, 2))))
    assert count(objs) == 2
    assert count(PointList((Point(1, 1),))) == 1
    assert count(Object(Box(0, 0, 1, 1))) == 1  # a single object counts as a list of one


def test_eval_reads_exposed_values() -> None:
    objs = ObjectList((Object(Box(0, 0, 10, 5), label="dog", score=0.9),))
    expr = compile_expression("len(OBJ) == 1 and OBJ[0].label == 'dog' and OBJ[0].box.width > 9")
    assert eval_(expr.bind({"OBJ": objs})) is True


def test_eval_limits_come_from_the_context() -> None:
    from sandbox import Limits

    expr = compile_expression("[a for a in [1] * 5000 for b in [1] * 5000]").bind({})
    with pytest.raises(LimitExceeded) as info:
        eval_(expr, ctx=ToolContext(limits=Limits(max_ops=50_000)))
    assert info.value.code == ErrorCode.STEP_LIMIT


def test_result_passes_the_value() -> None:
    assert result("yes") == "yes" and result(3) == 3
