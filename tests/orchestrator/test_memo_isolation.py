"""Remembered tool results are never shared mutably between runs (issue 14 item 1): for
every output type, whatever one run (its program, or the caller holding its result) does to
a value, the next run's memoised value is the one the tool made."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image as PILImage

from orchestrator import Config, Orchestrator
from tools import default_registry, tool
from tools.types import Box, Image, Mask, Object, ObjectList, Point, PointList

MADE: Counter[str] = Counter()


def _made(name: str) -> None:
    MADE[name] += 1


@tool
def make_texts(n: int) -> list[str]:
    """Some texts.

    Args:
        n: how many
    """
    _made("texts")
    return [f"t{i}" for i in range(n)]


@tool
def make_table(n: int) -> Any:
    """A dict holding a list.

    Args:
        n: how many names
    """
    _made("table")
    return {"names": [f"n{i}" for i in range(n)], "count": n}


@tool
def make_objects(n: int) -> ObjectList:
    """Objects with notes in their extra dict.

    Args:
        n: how many
    """
    _made("objects")
    return ObjectList(
        tuple(Object(Box(i, i, i + 2, i + 2), label="o", extra={"notes": ["x"]}) for i in range(n))
    )


@tool
def make_object(n: int) -> Object:
    """One object.

    Args:
        n: its size
    """
    _made("object")
    return Object(Box(0, 0, n, n), label="o", score=0.5, extra={"notes": ["x"]})


@tool
def make_box(n: int) -> Box:
    """A box.

    Args:
        n: its size
    """
    _made("box")
    return Box(0, 0, n, n)


@tool
def make_points(n: int) -> PointList:
    """Points.

    Args:
        n: how many
    """
    _made("points")
    return PointList(tuple(Point(i, i, label="p") for i in range(n)))


@tool
def make_mask(n: int) -> Mask:
    """A square mask.

    Args:
        n: its side
    """
    _made("mask")
    return Mask(np.ones((n, n), dtype=bool))


@tool
def make_image(n: int) -> Image:
    """A black square.

    Args:
        n: its side
    """
    _made("image")
    return Image(PILImage.new("RGB", (n, n)))


@tool
def make_text(n: int) -> str:
    """A text.

    Args:
        n: its length
    """
    _made("text")
    return "x" * n


@pytest.fixture(scope="module")
def orch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orchestrator]:
    registry = default_registry(plugins=False)
    for made in TOOLS:
        registry.add(made)
    cache: Path = tmp_path_factory.mktemp("memo-cache")
    config = Config(models={"profile": "offline", "cache_dir": cache}, plugins=False)
    o = Orchestrator(config, registry=registry)
    yield o
    o.close()


def _poison_extra(value: Any) -> None:
    for obj in getattr(value, "items", None) or [value]:
        obj.extra["notes"].append("POISON")


def _poison_pixels(value: Image) -> None:
    value.pil.putpixel((0, 0), (255, 0, 0))


def _try_mask(value: Mask) -> None:
    with pytest.raises(ValueError):
        value.array[0, 0] = False  # read-only: immutable, so safely shared


# tool, what a program does to the value, what the caller then does to the result
CASES: list[tuple[str, str, Callable[[Any], None] | None]] = [
    ("MakeTexts", "v.clear()\n    v.append('POISON')", lambda v: v.append("POISON")),
    ("MakeTable", "v['names'].append('POISON')\n    v['count'] = 99", lambda v: v.clear()),
    ("MakeObjects", "", _poison_extra),
    ("MakeObject", "", _poison_extra),
    ("MakeBox", "", None),
    ("MakePoints", "", None),
    ("MakeMask", "", _try_mask),
    ("MakeImage", "", _poison_pixels),
    ("MakeText", "", None),
]


TOOLS = (make_texts, make_table, make_objects, make_object, make_box, make_points,
         make_mask, make_image, make_text)  # fmt: skip


def _pristine(name: str) -> Any:
    """What the tool makes, made afresh outside any run."""
    return next(t for t in TOOLS if t.spec.name == name).fn(n=3)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Image):
        return isinstance(b, Image) and np.array_equal(np.asarray(a.pil), np.asarray(b.pil))
    if isinstance(a, Mask):
        return np.array_equal(a.array, b.array)
    if isinstance(a, (Object, ObjectList)):
        return a == b and repr([o.extra for o in getattr(a, "items", [a])]) == repr(
            [o.extra for o in getattr(b, "items", [b])]
        )
    return bool(a == b)


@pytest.mark.parametrize(("name", "mutation", "caller"), CASES, ids=[c[0] for c in CASES])
def test_a_mutation_in_one_run_is_invisible_to_the_next(
    orch: Orchestrator, name: str, mutation: str, caller: Callable[[Any], None] | None
) -> None:
    body = f"    v = {name}(3)\n" + (f"    {mutation}\n" if mutation else "") + "    return v\n"
    first = orch.execute("def execute_command(image):\n" + body, image="sample:coffee")
    assert first.ok, first.error
    if caller is not None:
        caller(first.output)
        for step in first.trace.steps:  # every tool result the caller was given
            caller(first.values[step.step])
    again = orch.execute(
        f"def execute_command(image):\n    return {name}(3)\n", image="sample:coffee"
    )
    assert again.ok and again.trace.steps[0].meta.get("memoised") is True
    assert _same(_pristine(name), again.output)
    caller_again = orch.execute(f"A={name}(n=3)\nRESULT=A", image="sample:coffee")
    assert _same(_pristine(name), caller_again.output)


def test_a_line_program_eval_cannot_poison_later_runs(orch: Orchestrator) -> None:
    before = MADE["texts"]
    poison = orch.execute("A=MakeTexts(n=4)\nB=Eval(\"A.append('POISON')\")\nRESULT=A")
    assert poison.ok and poison.output == ["t0", "t1", "t2", "t3", "POISON"]  # its own copy
    clean = orch.execute("A=MakeTexts(n=4)\nRESULT=A")
    assert clean.output == ["t0", "t1", "t2", "t3"]
    assert MADE["texts"] == before + 1  # the second run was served from the memo
