"""Errors survive pickling (they cross process boundaries: model replicas, Ray workers)."""

from __future__ import annotations

import pickle

from sandbox import ErrorCode, ProgramInvalid, VisChainError, parse
from sandbox.errors import ProgramError


def test_every_error_pickles_with_its_code_and_place() -> None:
    plain = VisChainError("boom", code=ErrorCode.TIME_LIMIT, line=3, step="X0")
    back = pickle.loads(pickle.dumps(plain))
    assert type(back) is VisChainError and str(back) == str(plain)
    assert (back.code, back.line, back.step) == (ErrorCode.TIME_LIMIT, 3, "X0")


def test_program_invalid_keeps_every_problem() -> None:
    try:
        parse("X0=Loc(image=IMAGE\nX1=")
    except ProgramInvalid as exc:
        error = exc
    else:
        raise AssertionError("the program should not parse")
    back = pickle.loads(pickle.dumps(error))
    assert isinstance(back, ProgramInvalid)
    assert back.to_dict() == error.to_dict() and len(back.errors) == len(error.errors) >= 1
    assert all(isinstance(e, ProgramError) for e in back.errors)
