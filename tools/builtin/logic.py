"""Tools without models: Count, Eval and Result."""

from __future__ import annotations

from typing import Any

from sandbox import BoundExpression, Budget
from tools.base import ToolContext, tool
from tools.types import EXPOSED, ObjectList, PointList


@tool(
    name="Count",
    arg_aliases={"object": ("box",)},
    inline=True,
    examples=("ANSWER0=Count(object=BOX0)",),
)
def count(object: ObjectList | PointList) -> int:
    """Count the objects (or points) in a list.

    Args:
        object: the objects or points to count
    """
    return len(object)


@tool(
    name="Eval",
    inline=True,
    examples=(
        "ANSWER2=Eval(\"'yes' if {ANSWER0} > {ANSWER1} else 'no'\")",
        "ANSWER4=Eval('{ANSWER0} + {ANSWER1} == 6 and {ANSWER2} == 2')",
    ),
)
def eval_(ctx: ToolContext, expr: BoundExpression) -> Any:
    """Compute a Python-like expression over earlier results: arithmetic, comparisons,
    and/or/not/xor, 'x if c else y', len/min/max/abs/round/int/float/str/bool/sum, an
    object list's .labels (the text Ocr read: ' '.join({TEXT0}.labels)). Write {NAME} (or
    NAME) for a variable; yes/no answers act as booleans and numeric answers as numbers.

    Args:
        expr: the expression, e.g. '{ANSWER0} + {ANSWER1} == 6'
    """
    budget = Budget(ctx.limits, deadline=ctx.deadline, cancel=ctx.cancel)
    return expr.evaluate(budget=budget, answers=True, exposed=EXPOSED)


@tool(
    name="Result",
    inline=True,
    examples=("FINAL_RESULT=Result(var=ANSWER0)",),
)
def result(var: Any) -> Any:
    """Mark a value as the program's answer.

    Args:
        var: the value to return
    """
    return var
