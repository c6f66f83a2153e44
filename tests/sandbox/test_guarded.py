"""Element-wise builtins (count, index, in, ==, sort, min/max): Python's answers, and the
clock checked while they loop, so a long scan stops at the time limit."""

from __future__ import annotations

import math
import operator
import threading
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox import Budget, ErrorCode, LimitExceeded, Limits, compile_expression, guarded
from sandbox.python import PythonInterpreter, parse_python

LONG = "a" * 999_999
VALUES: list[object] = [
    [],
    [1, 2, 3],
    [1, 2.0, True],
    (1, 2, 3),
    [[1, [2]], {"k": (3,)}],
    [[1, [2]], {"k": (4,)}],
    {"a": [1], "b": 2},
    {"b": 2, "a": [1]},
    [math.nan],
    ["x" * 300, "y"],
    [LONG + "b", 1],
    [LONG + "c", 1],
    "text",
    3,
]


@pytest.mark.parametrize("a", VALUES)
@pytest.mark.parametrize("b", VALUES)
def test_equal_matches_python(a: object, b: object) -> None:
    assert guarded.equal(a, b, Budget()) == (a == b)


def test_scans_match_python() -> None:
    items: list[object] = [3, "x", [1, [2]], (1,), "x", [1, [2]], math.nan, 3.0]
    budget = Budget()
    for probe in [3, "x", [1, [2]], (1,), "absent", [1, [3]], 3.0, True]:
        assert guarded.count(items, probe, budget) == items.count(probe)
        assert guarded.contains(items, probe, budget) == (probe in items)
        for start, stop in [(0, None), (2, None), (1, 5), (-3, None)]:
            try:
                expected: int | None = items.index(
                    probe, start, len(items) if stop is None else stop
                )
            except ValueError:
                expected = None
            try:
                got: int | None = guarded.index(items, probe, budget, start, stop)
            except ValueError:
                got = None
            assert got == expected, (probe, start, stop)
    removed = list(items)
    guarded.remove(removed, [1, [2]], budget)
    expected_list = list(items)
    expected_list.remove([1, [2]])
    assert removed == expected_list


@pytest.mark.parametrize("a", VALUES[:12])
@pytest.mark.parametrize("b", VALUES[:12])
def test_ordering_matches_python(a: object, b: object) -> None:
    for op in (operator.lt, operator.le, operator.gt, operator.ge):
        try:
            expected: object = op(a, b)
        except TypeError:
            expected = TypeError
        try:
            got: object = guarded.ordered(op, a, b, Budget())
        except TypeError:
            got = TypeError
        assert got == expected, (op, a, b)


@pytest.mark.parametrize("reverse", [False, True])
def test_sort_and_extremes_match_python(reverse: bool) -> None:
    budget = Budget()
    for items, key in [
        ([3, 1, 2, 1.0, True], None),
        (["b" * 300, "a" * 300, "b" * 299, "c"], None),
        ([[2, 1], [1, 5], [1, 2], [2]], None),
        (["bb", "a", "ccc", "dd"], len),
        ([(1, "x" * 400), (0, "y"), (1, "a")], lambda p: [p[0]]),
    ]:
        got = list(items)
        guarded.sort(got, budget, key=key, reverse=reverse)  # type: ignore[arg-type]
        assert got == sorted(items, key=key, reverse=reverse)  # type: ignore[arg-type]
        assert guarded.extreme(items, budget, largest=reverse, key=key) == (  # type: ignore[arg-type]
            max(items, key=key) if reverse else min(items, key=key)  # type: ignore[arg-type, type-var]
        )


@pytest.mark.parametrize(
    "expression",
    [
        # issue 14 item 3: a million 1M-character comparisons ran for minutes under 2 s
        "(['a' * 999999 + 'b'] * 1000000).count('a' * 999999 + 'c')",
        "('a' * 999999 + 'c') in ['a' * 999999 + 'b'] * 1000000",
        "(['a' * 999999 + 'b'] * 1000000).index('a' * 999999 + 'c')",
        "['a' * 999999 + 'b'] * 1000000 == ['a' * 999998 + 'ab'] * 1000000",
        "[['a' * 999999 + 'b'] * 1000000] == [['a' * 999998 + 'ab'] * 1000000]",
        "max(['a' * 999999 + 'b', 'a' * 999999 + 'c'] * 500000)",
        "['a' * 999999 + 'b'] * 1000000 < ['a' * 999998 + 'ab'] * 1000000",
        "[['a' * 999999 + 'b'] * 1000000] >= [['a' * 999998 + 'ab'] * 1000000]",
    ],
)
def test_element_wise_scans_stop_at_the_time_limit(expression: str) -> None:
    with pytest.raises(LimitExceeded) as info:
        compile_expression(expression, visprog=False).evaluate({}, limits=Limits(time_limit=0.3))
    assert info.value.code == ErrorCode.TIME_LIMIT


def test_python_sort_stops_when_cancelled() -> None:
    program = parse_python(
        "def execute_command(image):\n"
        "    xs = ['a' * 999999 + 'b', 'a' * 999999 + 'c'] * 200000\n"
        "    xs.sort()\n"
        "    return sorted(xs)\n"
    )
    cancel = threading.Event()
    budget = Budget(Limits(time_limit=None), cancel=cancel)
    threading.Timer(0.3, cancel.set).start()
    with pytest.raises(LimitExceeded) as info:
        PythonInterpreter(budget).run(program, {"image": None})
    assert info.value.code == ErrorCode.CANCELLED


SCALARS = st.one_of(
    st.integers(-3, 3), st.sampled_from(["", "a", "b", "ab", "x" * 300]), st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True), st.none(),
)  # fmt: skip
NESTED = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(st.sampled_from(["k", "l", "m"]), inner, max_size=3),
    ),
    max_leaves=12,
)
SUITE = settings(max_examples=300, deadline=None, derandomize=True, database=None)


def _python(fn: Callable[[], object]) -> object:
    try:
        return fn()
    except (TypeError, ValueError) as exc:
        return type(exc)


@SUITE
@given(NESTED, NESTED, st.lists(NESTED, max_size=6))
def test_guarded_operations_agree_with_python(a: object, b: object, items: list[object]) -> None:
    budget = Budget()
    assert guarded.equal(a, b, budget) == (a == b)
    for op in (operator.lt, operator.le, operator.gt, operator.ge):
        mine_order = _python(lambda op=op: guarded.ordered(op, a, b, budget))
        assert mine_order == _python(lambda op=op: op(a, b))
    assert guarded.count(items, a, budget) == items.count(a)
    assert guarded.contains(items, a, budget) == (a in items)
    assert _python(lambda: guarded.index(items, a, budget)) == _python(lambda: items.index(a))
    expected = _python(lambda: sorted(items))
    mine = list(items)
    got = _python(lambda: guarded.sort(mine, budget))
    if expected is not TypeError:
        assert got is None and mine == expected
    assert _python(lambda: guarded.extreme(items, budget, largest=True)) == _python(
        lambda: max(items)
    )
