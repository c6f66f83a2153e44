"""The sandbox: parse untrusted programs, check them, and evaluate expressions safely.

This package imports nothing else from VisChain; the checker receives the tool catalog it
checks against.
"""

from .answers import as_bool, as_number, normalize_for_eval, to_text
from .checker import check, diagnose
from .errors import (
    ErrorCode,
    EvalError,
    ForbiddenError,
    LimitExceeded,
    ProgramError,
    ProgramInvalid,
    VisChainError,
)
from .expressions import BoundExpression, Evaluator, Exposed, Expression, compile_expression
from .ir import Arg, BoundProgram, BoundStep, Const, Expr, ListOf, Program, Ref, Step, Value
from .limits import Budget, Limits
from .parser import detect_form, parse
from .signatures import ANY, EXPRESSION, Catalog, ParamSpec, Signature

__all__ = [
    "ANY",
    "EXPRESSION",
    "Arg",
    "BoundExpression",
    "BoundProgram",
    "BoundStep",
    "Budget",
    "Catalog",
    "Const",
    "ErrorCode",
    "EvalError",
    "Evaluator",
    "Exposed",
    "Expr",
    "Expression",
    "ForbiddenError",
    "LimitExceeded",
    "Limits",
    "ListOf",
    "ParamSpec",
    "Program",
    "ProgramError",
    "ProgramInvalid",
    "Ref",
    "Signature",
    "Step",
    "Value",
    "VisChainError",
    "as_bool",
    "as_number",
    "check",
    "compile_expression",
    "detect_form",
    "diagnose",
    "normalize_for_eval",
    "parse",
    "to_text",
]
