"""The sandbox: parse untrusted programs, check them, and evaluate expressions safely.

This package imports nothing else from VisChain; the checker receives the tool catalog it
checks against. Layout, one concern per module:

- ``parser`` (form detection) over ``lines`` (VisProg-style) and ``python`` (ViperGPT-style
  parse, static check and interpreter); ``ir`` the parsed and bound programs;
  ``checker`` type-checks line programs; ``hints`` bounds their "did you mean" work.
- ``expressions`` compiled ``Eval`` expressions: ``visprog`` rewrites VisProg text,
  ``validation`` refuses nodes and names, ``evaluator`` walks the tree;
  ``safe_builtins`` is what programs may call; ``guarded`` runs element-wise builtins
  under the clock; ``answers`` VisProg's answer semantics.
- ``limits`` the limits and the per-evaluation budget; ``lazy`` values still computing;
  ``errors`` typed errors and codes; ``signatures`` what the checker knows of a tool.
"""

from . import guarded
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
from .evaluator import Evaluator
from .expressions import BoundExpression, Expression, compile_expression
from .ir import Arg, BoundProgram, BoundStep, Const, Expr, ListOf, Program, Ref, Step, Value
from .lazy import Lazy, force, force_deep
from .limits import Budget, Limits
from .parser import detect_form, parse
from .python import PythonInterpreter, PythonProgram, check_python, parse_python
from .safe_builtins import Exposed
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
    "Lazy",
    "LimitExceeded",
    "Limits",
    "ListOf",
    "ParamSpec",
    "Program",
    "ProgramError",
    "ProgramInvalid",
    "PythonInterpreter",
    "PythonProgram",
    "Ref",
    "Signature",
    "Step",
    "Value",
    "VisChainError",
    "as_bool",
    "as_number",
    "check",
    "check_python",
    "compile_expression",
    "detect_form",
    "diagnose",
    "force",
    "force_deep",
    "guarded",
    "normalize_for_eval",
    "parse",
    "parse_python",
    "to_text",
]
