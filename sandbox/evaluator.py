"""A safe evaluator for expressions written by an LLM.

The tree (already validated) is walked node by node; Python's ``eval``/``exec``/``compile``
never see program text. Only whitelisted functions and methods exist
(:mod:`sandbox.safe_builtins`); attributes are readable only where a host type declares them
(:class:`~sandbox.safe_builtins.Exposed`); dunder names never resolve. Every node costs work
from a :class:`~sandbox.limits.Budget`, and sizes are checked *before* a value is built.

``answers=True`` gives VisProg's Eval semantics over free-text answers: ``"yes"``/``"no"``
act as booleans, numeric text acts as a number (``"2" + "4" == 6``), and ``xor`` is an
operator. :class:`~sandbox.python.PythonInterpreter` subclasses the evaluator to add
statements.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from typing import ClassVar

from . import guarded
from .answers import as_bool, as_number, normalize_answer, to_text
from .errors import ErrorCode, EvalError, ForbiddenError, LimitExceeded, VisChainError
from .limits import Budget
from .safe_builtins import (
    BASIC_TYPES,
    BUILTIN_METHODS,
    SAFE_FUNCTIONS,
    XOR_FUNCTION,
    Exposed,
    check_renderable,
    is_dunder,
)
from .validation import describe_node

CAUGHT = (TypeError, ValueError, ZeroDivisionError, OverflowError, IndexError, KeyError,
          AttributeError, RecursionError, MemoryError)  # fmt: skip
_FORMAT_NUMBER = re.compile(r"(\.?)(\d+)")  # a width, or a precision after "."


class Evaluator:
    """Walks expression nodes under a budget. Subclasses add statements (the Python form).

    ``NODE_METHODS`` names the method that evaluates each node type; a subclass extends it,
    and its dispatch table is built once, when the class is made (not per evaluation)."""

    NODE_METHODS: ClassVar[Mapping[type[ast.AST], str]] = {
        ast.Constant: "_constant", ast.Name: "_name", ast.BinOp: "_binop",
        ast.UnaryOp: "_unaryop", ast.BoolOp: "_boolop", ast.Compare: "_compare",
        ast.IfExp: "_ifexp", ast.Call: "_call", ast.Attribute: "_attribute",
        ast.Subscript: "_subscript", ast.List: "_list", ast.Tuple: "_tuple", ast.Set: "_set",
        ast.Dict: "_dict", ast.JoinedStr: "_joinedstr", ast.FormattedValue: "_formatted",
        ast.ListComp: "_listcomp", ast.SetComp: "_setcomp", ast.GeneratorExp: "_listcomp",
        ast.DictComp: "_dictcomp",
    }  # fmt: skip
    _dispatch: ClassVar[dict[type[ast.AST], Callable[..., object]]] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        _build_dispatch(cls)

    def __init__(
        self,
        budget: Budget,
        *,
        answers: bool = False,
        functions: Mapping[str, Callable[..., object]] = SAFE_FUNCTIONS,
        exposed: Mapping[type, Exposed] | None = None,
        aliases: Mapping[str, str] | None = None,
    ) -> None:
        """``aliases``: the real names of a shared template's stand-ins, for messages."""
        self.budget = budget
        self.answers = answers
        self.functions = functions
        self.exposed: Mapping[type, Exposed] = exposed if exposed is not None else {}
        self.aliases = aliases or {}

    # entry point ---------------------------------------------------------------------------

    def eval(self, node: ast.AST, env: Mapping[str, object]) -> object:
        budget = self.budget
        budget.tick()
        handler = self._dispatch.get(type(node))
        if handler is None:
            raise ForbiddenError(f"{describe_node(node)} is not allowed", line=_line(node))
        budget.enter()
        try:
            return handler(self, node, env)
        except VisChainError as exc:
            if exc.line is None:
                exc.line = _line(node)
            raise
        except CAUGHT as exc:
            raise EvalError(error_message(exc), line=_line(node), col=_col(node)) from exc
        finally:
            budget.depth -= 1  # budget.leave(), without a call per node

    # semantics hooks -------------------------------------------------------------------------

    def operand(self, node: ast.AST, env: Mapping[str, object]) -> object:
        """A subexpression's value where an operation needs it (the Python form forces lazy
        values here)."""
        return self.eval(node, env)

    def hashable(self, value: object) -> object:
        """A value about to be hashed (a set element, a dict key): the Python form forces
        lazy values inside it here."""
        return value

    def truth(self, value: object) -> bool:
        if self.answers and isinstance(value, str):
            b = as_bool(value)
            if b is not None:
                return b
        if value is None or isinstance(value, (*BASIC_TYPES, list, tuple, dict, set)):
            return bool(value)
        exposure = self.exposure(value)
        if exposure is None:
            raise EvalError(f"a {type(value).__name__} has no truth value here")
        return bool(value)

    def exposure(self, value: object) -> Exposed | None:
        for cls in type(value).__mro__:
            found = self.exposed.get(cls)
            if found is not None:
                return found
        return None

    def lookup(self, name: str, env: Mapping[str, object]) -> object:
        if name in env:
            return env[name]
        if name in self.functions:
            raise EvalError(f"'{name}' is a function; call it as {name}(...)")
        raise EvalError(f"name '{self.aliases.get(name, name)}' is not defined")

    def call_function(self, name: str, args: list[object], kwargs: dict[str, object]) -> object:
        fn = self.functions.get(name)
        if fn is None:
            raise ForbiddenError(f"calling '{name}' is not allowed")
        if kwargs:
            raise EvalError(f"{name}() takes no keyword arguments here")
        if name == XOR_FUNCTION:
            return sum(1 for v in args if self.truth(v)) % 2 == 1
        if self.answers and name in ("int", "float", "min", "max", "abs", "round", "sum"):
            args = [self._numeric(a) for a in args]
            if (
                name in ("min", "max", "sum")
                and len(args) == 1
                and isinstance(args[0], (list, tuple))
            ):
                args = [[self._numeric(a) for a in args[0]]]
        if self.answers and name == "bool" and len(args) == 1:
            return self.truth(args[0])
        if self.answers and name == "str" and len(args) == 1:
            check_renderable(args[0], self.budget)
            return to_text(args[0])
        if name == "str" and args:
            check_renderable(args[0], self.budget)
        if name in ("min", "max") and args:
            items = list(args[0]) if len(args) == 1 else args  # type: ignore[call-overload]
            return guarded.extreme(items, self.budget, largest=name == "max")
        return fn(*args)

    # nodes ----------------------------------------------------------------------------------

    def _constant(self, node: ast.Constant, env: Mapping[str, object]) -> object:
        if not isinstance(node.value, BASIC_TYPES):
            raise ForbiddenError(f"{type(node.value).__name__} literals are not allowed")
        return self.budget.check_value(node.value)

    def _name(self, node: ast.Name, env: Mapping[str, object]) -> object:
        if is_dunder(node.id):
            raise ForbiddenError(f"the name '{node.id}' is not allowed")
        return self.lookup(node.id, env)

    def _unaryop(self, node: ast.UnaryOp, env: Mapping[str, object]) -> object:
        value = self.operand(node.operand, env)
        if isinstance(node.op, ast.Not):
            return not self.truth(value)
        value = self._as_number_operand(value)
        if isinstance(node.op, ast.USub):
            return -value  # type: ignore[operator]
        if isinstance(node.op, ast.UAdd):
            return +value  # type: ignore[operator]
        return ~value  # type: ignore[operator]

    def _boolop(self, node: ast.BoolOp, env: Mapping[str, object]) -> object:
        is_and = isinstance(node.op, ast.And)
        value: object = None
        for operand in node.values:
            value = self.eval(operand, env)
            if self.truth(value) != is_and:
                break
        return self.truth(value) if self.answers else value

    def _ifexp(self, node: ast.IfExp, env: Mapping[str, object]) -> object:
        return self.eval(node.body if self.truth(self.eval(node.test, env)) else node.orelse, env)

    def _compare(self, node: ast.Compare, env: Mapping[str, object]) -> object:
        left = self.eval(node.left, env)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = self.eval(right_node, env)
            if not self.compare(op, left, right):
                return False
            left = right
        return True

    def compare(self, op: ast.cmpop, a: object, b: object) -> bool:
        if isinstance(op, (ast.Eq, ast.NotEq)):
            equal = self._equal(a, b)
            return equal if isinstance(op, ast.Eq) else not equal
        if isinstance(op, (ast.In, ast.NotIn)):
            if not isinstance(b, (str, list, tuple, dict, set, frozenset)):
                raise EvalError(f"'in' needs a text or a list on its right, got {type(b).__name__}")
            if self.answers and isinstance(a, str) and isinstance(b, str):
                found = normalize_answer(a) in b.lower()
            else:
                found = guarded.contains(b, a, self.budget)
            return found if isinstance(op, ast.In) else not found
        if isinstance(op, ast.Is):
            return a is b
        if isinstance(op, ast.IsNot):
            return a is not b
        a, b = self._numeric_pair(a, b)
        return guarded.ordered(_ORDERING[type(op)], a, b, self.budget)

    def _equal(self, a: object, b: object) -> bool:
        if not self.answers:
            return guarded.equal(a, b, self.budget)
        if isinstance(a, bool) or isinstance(b, bool):
            ba, bb = as_bool(a), as_bool(b)
            if ba is not None and bb is not None:
                return ba == bb
        na, nb = as_number(a), as_number(b)
        if na is not None and nb is not None:
            return na == nb
        if isinstance(a, str) and isinstance(b, str):
            return normalize_answer(a) == normalize_answer(b)
        ba, bb = as_bool(a), as_bool(b)
        if ba is not None and bb is not None:
            return ba == bb
        return guarded.equal(a, b, self.budget)

    def _numeric_pair(self, a: object, b: object) -> tuple[object, object]:
        if self.answers and (isinstance(a, str) or isinstance(b, str)):
            na, nb = as_number(a), as_number(b)
            if na is not None and nb is not None:
                return na, nb
        return a, b

    def _numeric(self, value: object) -> object:
        """A numeric answer as a number; anything else unchanged."""
        if isinstance(value, str):
            n = as_number(value)
            if n is not None:
                return n
        return value

    def _as_number_operand(self, value: object) -> object:
        if self.answers and isinstance(value, str):
            n = as_number(value)
            if n is not None:
                return n
        if isinstance(value, (int, float)):
            return value
        raise EvalError(f"expected a number, got {type(value).__name__}")

    def _binop(self, node: ast.BinOp, env: Mapping[str, object]) -> object:
        a = self.eval(node.left, env)
        b = self.eval(node.right, env)
        return self.binop(node.op, a, b)

    def binop(self, op: ast.operator, a: object, b: object) -> object:
        a, b = self._numeric_pair(a, b)
        budget = self.budget
        if isinstance(op, ast.Add):
            if isinstance(a, str) and isinstance(b, str):
                budget.check_str_len(len(a) + len(b))
            elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
                budget.check_items(len(a) + len(b))
            result = a + b  # type: ignore[operator]
        elif isinstance(op, ast.Mult):
            result = self._multiply(a, b)
        elif isinstance(op, ast.Pow):
            result = self._power(a, b)
        elif isinstance(op, (ast.LShift, ast.RShift)):
            if not (isinstance(a, int) and isinstance(b, int)):
                raise EvalError("shifts need whole numbers")
            if isinstance(op, ast.LShift):
                if b > budget.limits.max_int_bits:
                    budget.check_int(1 << (budget.limits.max_int_bits + 1))
                result = a << b
            else:
                result = a >> b
        elif isinstance(op, ast.Mod):
            if isinstance(a, str):
                raise ForbiddenError("'%' string formatting is not allowed; use an f-string")
            result = a % b  # type: ignore[operator]
        elif isinstance(op, ast.MatMult):
            raise ForbiddenError("'@' is not allowed")
        else:
            result = _SIMPLE_OPS[type(op)](a, b)
        if isinstance(result, complex):
            raise EvalError("the result is a complex number")
        return budget.check_value(result)

    def _multiply(self, a: object, b: object) -> object:
        seq, n = (a, b) if isinstance(a, (str, list, tuple)) else (b, a)
        if isinstance(seq, (str, list, tuple)) and isinstance(n, int):
            size = len(seq) * max(n, 0)
            if isinstance(seq, str):
                self.budget.check_str_len(size)
            else:
                self.budget.check_items(size)
            return seq * n
        bits = self.budget.limits.max_int_bits
        if isinstance(a, int) and isinstance(b, int) and a.bit_length() + b.bit_length() > bits + 1:
            raise LimitExceeded("number too large", code=ErrorCode.SIZE_LIMIT)
        return a * b  # type: ignore[operator]

    def _power(self, a: object, b: object) -> object:
        big = isinstance(a, int) and isinstance(b, int) and b > 0 and abs(a) > 1
        if big and a.bit_length() * b > self.budget.limits.max_int_bits + a.bit_length():  # type: ignore[union-attr, operator]
            raise LimitExceeded("number too large", code=ErrorCode.SIZE_LIMIT)
        result = a**b  # type: ignore[operator]
        if isinstance(result, float) and not math.isfinite(result):
            raise EvalError("the result is not a finite number")
        return result

    def _call(self, node: ast.Call, env: Mapping[str, object]) -> object:
        if any(isinstance(a, ast.Starred) for a in node.args) or any(
            k.arg is None for k in node.keywords
        ):
            raise ForbiddenError("'*' and '**' arguments are not allowed")
        if isinstance(node.func, ast.Attribute):
            obj = self.eval(node.func.value, env)
            args = [self.eval(a, env) for a in node.args]
            kwargs = {k.arg: self.eval(k.value, env) for k in node.keywords if k.arg}
            return self.call_method(obj, node.func.attr, args, kwargs)
        if not isinstance(node.func, ast.Name):
            raise ForbiddenError("only named functions can be called")
        args = [self.eval(a, env) for a in node.args]
        kwargs = {k.arg: self.eval(k.value, env) for k in node.keywords if k.arg}
        result = self.call_function(node.func.id, args, kwargs)
        return self.budget.check_value(result)

    def call_method(
        self, obj: object, name: str, args: list[object], kwargs: dict[str, object]
    ) -> object:
        if is_dunder(name):
            raise ForbiddenError(f"the name '{name}' is not allowed")
        for cls, methods in BUILTIN_METHODS.items():
            if type(obj) is cls and name in methods:
                if kwargs:
                    raise EvalError(f"{cls.__name__}.{name}() takes no keyword arguments here")
                return self.budget.check_value(methods[name](self.budget, obj, *args))
        exposure = self.exposure(obj)
        if exposure is None or name not in exposure.methods:
            raise ForbiddenError(f"a {type(obj).__name__} has no method '{name}' here")
        return getattr(obj, name)(*args, **kwargs)

    def _attribute(self, node: ast.Attribute, env: Mapping[str, object]) -> object:
        obj = self.operand(node.value, env)
        name = node.attr
        exposure = self.exposure(obj)
        if is_dunder(name) or exposure is None or name not in exposure.attributes:
            if exposure is not None and name in exposure.methods:
                raise EvalError(f"'{name}' is a method; call it as .{name}(...)")
            raise ForbiddenError(f"a {type(obj).__name__} has no attribute '{name}' here")
        return getattr(obj, name)

    def _subscript(self, node: ast.Subscript, env: Mapping[str, object]) -> object:
        obj = self.operand(node.value, env)
        if not isinstance(obj, (list, tuple, str, dict)):
            exposure = self.exposure(obj)
            if exposure is None or not exposure.subscript:
                raise EvalError(f"a {type(obj).__name__} cannot be indexed")
        if isinstance(node.slice, ast.Slice):
            parts = [
                None if p is None else self.operand(p, env)
                for p in (node.slice.lower, node.slice.upper, node.slice.step)
            ]
            key: object = slice(*parts)
        else:
            key = self.operand(node.slice, env)
        return obj[key]  # type: ignore[index]

    def iterate(self, value: object) -> list[object]:
        """The items of an iterable value, as a list (bounded by the budget)."""
        if isinstance(value, (list, tuple, str, set, frozenset)):
            return list(value)
        if isinstance(value, dict):
            return list(value.keys())
        exposure = self.exposure(value)
        if exposure is None or not exposure.iterable:
            raise EvalError(f"a {type(value).__name__} cannot be looped over")
        items = list(value)  # type: ignore[call-overload]
        self.budget.check_items(len(items))
        return items

    def _list(self, node: ast.List, env: Mapping[str, object]) -> object:
        self.budget.check_items(len(node.elts))
        return [self.eval(e, env) for e in node.elts]

    def _tuple(self, node: ast.Tuple, env: Mapping[str, object]) -> object:
        self.budget.check_items(len(node.elts))
        return tuple(self.eval(e, env) for e in node.elts)

    def _set(self, node: ast.Set, env: Mapping[str, object]) -> object:
        self.budget.check_items(len(node.elts))
        return {self.hashable(self.eval(e, env)) for e in node.elts}

    def _dict(self, node: ast.Dict, env: Mapping[str, object]) -> object:
        if any(k is None for k in node.keys):
            raise ForbiddenError("'**' in a dict literal is not allowed")
        self.budget.check_items(len(node.keys))
        pairs = zip(node.keys, node.values, strict=True)
        return {self.hashable(self.eval(k, env)): self.eval(v, env) for k, v in pairs}  # type: ignore[arg-type]

    def _joinedstr(self, node: ast.JoinedStr, env: Mapping[str, object]) -> object:
        parts: list[str] = []
        size = 0
        for v in node.values:
            parts.append(str(self.eval(v, env)))
            size += len(parts[-1])
            if size > self.budget.limits.max_str_len:
                self.budget.check_str_len(size)  # stop before building the next part
        total = sum(len(p) for p in parts)
        self.budget.check_str_len(total)
        return "".join(parts)

    def _formatted(self, node: ast.FormattedValue, env: Mapping[str, object]) -> object:
        value = self.operand(node.value, env)
        size = check_renderable(value, self.budget)
        spec = "" if node.format_spec is None else str(self.eval(node.format_spec, env))
        width = precision = 0
        for number in _FORMAT_NUMBER.finditer(spec):
            digits = number.group(2)
            if len(digits) > 7 or int(digits) > self.budget.limits.max_str_len:
                raise LimitExceeded("format width too large", code=ErrorCode.SIZE_LIMIT)
            if number.group(1):
                precision = max(precision, int(digits))
            else:
                width = max(width, int(digits))
        self.budget.check_str_len(max(size, width) + precision)  # before the text is built
        if node.conversion == ord("r"):
            value = repr(value)
        elif node.conversion == ord("a"):
            value = ascii(value)
        elif node.conversion == ord("s") or (self.answers and not spec):
            value = to_text(value) if self.answers else str(value)
        if not isinstance(value, BASIC_TYPES):
            if spec:
                raise EvalError(f"a {type(value).__name__} cannot be formatted with '{spec}'")
            return str(value)
        return format(value, spec)

    # comprehensions ------------------------------------------------------------------------

    def _comprehension(
        self, generators: list[ast.comprehension], env: Mapping[str, object]
    ) -> Iterable[dict[str, object]]:
        def loop(k: int, scope: dict[str, object]) -> Iterable[dict[str, object]]:
            if k == len(generators):
                yield scope
                return
            gen = generators[k]
            if gen.is_async:
                raise ForbiddenError("async comprehensions are not allowed")
            for n, item in enumerate(self.iterate(self.eval(gen.iter, scope))):
                if n >= self.budget.limits.max_loop_iterations:
                    raise LimitExceeded("loop ran too many times", code=ErrorCode.STEP_LIMIT)
                self.budget.tick()
                inner = ChainEnv(scope)
                self.assign(gen.target, item, inner)
                if all(self.truth(self.eval(cond, inner)) for cond in gen.ifs):
                    yield from loop(k + 1, inner)

        return loop(0, ChainEnv(env))

    def _listcomp(self, node: ast.ListComp | ast.GeneratorExp, env: Mapping[str, object]) -> object:
        out: list[object] = []
        for scope in self._comprehension(node.generators, env):
            self.budget.check_items(1)
            out.append(self.eval(node.elt, scope))
        return out

    def _setcomp(self, node: ast.SetComp, env: Mapping[str, object]) -> object:
        out: set[object] = set()
        for scope in self._comprehension(node.generators, env):
            self.budget.check_items(1)
            out.add(self.hashable(self.eval(node.elt, scope)))
        return out

    def _dictcomp(self, node: ast.DictComp, env: Mapping[str, object]) -> object:
        out: dict[object, object] = {}
        for scope in self._comprehension(node.generators, env):
            self.budget.check_items(1)
            out[self.hashable(self.eval(node.key, scope))] = self.eval(node.value, scope)
        return out

    def assign(self, target: ast.AST, value: object, env: dict[str, object]) -> None:
        """Bind ``value`` to a name or a tuple of names (no attribute or item targets here)."""
        if isinstance(target, ast.Name):
            if is_dunder(target.id):
                raise ForbiddenError(f"the name '{target.id}' is not allowed")
            env[target.id] = value
        elif isinstance(target, (ast.Tuple, ast.List)):
            items = self.iterate(value)
            if len(items) != len(target.elts):
                raise EvalError(f"cannot unpack {len(items)} values into {len(target.elts)} names")
            for t, v in zip(target.elts, items, strict=True):
                self.assign(t, v, env)
        else:
            raise ForbiddenError(f"cannot assign to {describe_node(target)}")


def _build_dispatch(cls: type[Evaluator]) -> None:
    """Node type -> the class's (possibly overridden) method for it."""
    cls._dispatch = {node: getattr(cls, name) for node, name in cls.NODE_METHODS.items()}


_build_dispatch(Evaluator)


class ChainEnv(dict[str, object]):
    """A scope whose missing names are looked up in a parent mapping (comprehension scopes)."""

    def __init__(self, parent: Mapping[str, object]) -> None:
        super().__init__()
        self.parent = parent

    def __missing__(self, key: str) -> object:
        return self.parent[key]

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or key in self.parent


_ORDERING: dict[type, Callable[[object, object], bool]] = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
}  # fmt: skip
_SIMPLE_OPS: dict[type, Callable[[object, object], object]] = {
    ast.Sub: lambda a, b: a - b,  # type: ignore[operator]
    ast.Div: lambda a, b: a / b,  # type: ignore[operator]
    ast.FloorDiv: lambda a, b: a // b,  # type: ignore[operator]
    ast.BitAnd: lambda a, b: a & b,  # type: ignore[operator]
    ast.BitOr: lambda a, b: a | b,  # type: ignore[operator]
    ast.BitXor: lambda a, b: a ^ b,  # type: ignore[operator]
}


def _line(node: ast.AST) -> int | None:
    return getattr(node, "lineno", None)


def _col(node: ast.AST) -> int | None:
    return getattr(node, "col_offset", None)


def error_message(exc: BaseException) -> str:
    """A Python exception raised while evaluating, as a message for a typed error."""
    if isinstance(exc, ZeroDivisionError):
        return "division by zero"
    if isinstance(exc, RecursionError):
        return "nesting too deep"
    if isinstance(exc, MemoryError):
        return "out of memory"
    return f"{type(exc).__name__}: {exc}"
