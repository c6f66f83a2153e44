"""ViperGPT-style programs: a restricted Python subset, interpreted by walking its AST.

A program defines ``def execute_command(image, ...)``; its parameters bind to the named
input images. Inside: assignments, if/for/while (bounded), break/continue/return,
comprehensions, f-strings, arithmetic, comparisons, list/dict/tuple literals, ``lambda``
(as a sort key), calls to the host's API and a short builtin whitelist. Never allowed:
imports, class or nested function definitions, global/nonlocal, try/with/raise, attribute
access outside what host types declare, dunder names. Nothing here calls ``eval``,
``exec`` or ``compile`` on program text; every node runs under a :class:`Budget` (work,
sizes, depth, loop iterations, time), and a violation is a typed error naming the line.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from . import guarded
from .errors import (
    ErrorCode,
    EvalError,
    ForbiddenError,
    LimitExceeded,
    ProgramError,
    ProgramInvalid,
    VisChainError,
)
from .evaluator import CAUGHT, ChainEnv, Evaluator, error_message
from .formatting import safe_format
from .hints import Hints
from .lazy import force, force_deep
from .limits import Budget, Limits, admit_program, parse_bounded, unparsable
from .numeric import EXPOSED_NUMERIC, NAMESPACES
from .safe_builtins import BUILTIN_METHODS, SAFE_FUNCTIONS, Exposed, check_renderable, is_dunder
from .validation import ALLOWED_NODES, describe_node

ENTRY = "execute_command"

_STATEMENTS: tuple[type[ast.AST], ...] = (
    ast.Assign, ast.AugAssign, ast.AnnAssign, ast.If, ast.For, ast.While, ast.Break,
    ast.Continue, ast.Return, ast.Expr, ast.Pass,
)  # fmt: skip
_EXPRESSIONS: tuple[type[ast.AST], ...] = (*ALLOWED_NODES, ast.Lambda, ast.arguments, ast.arg)


@dataclass(frozen=True)
class PythonProgram:
    """A parsed Python-form program."""

    source: str
    tree: ast.Module = field(repr=False, compare=False)
    function: ast.FunctionDef = field(repr=False, compare=False)
    params: tuple[str, ...] = ()
    form: str = "python"


def _error(code: ErrorCode, message: str, node: ast.AST | None) -> ProgramError:
    line = getattr(node, "lineno", 1) or 1
    col = (getattr(node, "col_offset", 0) or 0) + 1
    return ProgramError(code, message, line, col)


def _too_deep_line(text: str) -> int:
    """The first line that is nested too deeply on its own (the parser names no line for
    that), else 1: each line is parsed alone, and one that only fails as part of a block
    (``if x:``) is a syntax error, not this."""
    for number, line in enumerate(text.splitlines(), 1):
        try:
            parse_bounded(line.strip(), "exec")
        except (RecursionError, MemoryError):
            return number
        except (SyntaxError, ValueError):
            continue
    return 1


def parse_python(text: str, *, limits: Limits | None = None) -> PythonProgram:
    """Parse a Python-form program and refuse what the sandbox never runs; raise
    :class:`ProgramInvalid` listing every problem."""
    limits = limits or Limits()
    text = admit_program(text, limits)
    try:
        tree = parse_bounded(text, "exec")
    except SyntaxError as exc:
        raise ProgramInvalid(
            [
                ProgramError(
                    ErrorCode.SYNTAX, f"syntax error: {exc.msg}", exc.lineno or 1, exc.offset or 1
                )
            ]
        ) from None
    except (ValueError, RecursionError, MemoryError) as exc:
        line = 1 if isinstance(exc, ValueError) else _too_deep_line(text)
        message = f"cannot parse the program: {unparsable(exc)}"
        raise ProgramInvalid([ProgramError(ErrorCode.SYNTAX, message, line)]) from None
    errors: list[ProgramError] = []
    functions = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == ENTRY:
            functions.append(node)
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # a docstring or a stray string
        elif _harmless_import(node):
            continue  # `import math` / `import numpy as np`: the program gets safe subsets
        elif isinstance(node, ast.FunctionDef):
            message = f"only {ENTRY} may be defined, not '{node.name}'"
            errors.append(_error(ErrorCode.FORBIDDEN, message, node))
        else:
            errors.append(
                _error(ErrorCode.FORBIDDEN, f"{describe_node(node)} is not allowed", node)
            )
    if not functions:
        errors.append(
            ProgramError(ErrorCode.NOT_A_STEP, f"define the function {ENTRY}(image, ...)", 1, 1)
        )
    elif len(functions) > 1:
        errors.append(
            _error(ErrorCode.REDEFINED, f"{ENTRY} is defined more than once", functions[1])
        )
    if errors:
        raise ProgramInvalid(errors)
    fn = functions[0]
    errors.extend(_validate_function(fn))
    if errors:
        raise ProgramInvalid(errors)
    params = tuple(a.arg for a in fn.args.args)
    return PythonProgram(source=text, tree=tree, function=fn, params=params)


def _harmless_import(node: ast.stmt) -> bool:
    """An import of a module the program gets a safe subset of anyway, under its own name."""
    return isinstance(node, ast.Import) and all(
        a.name in NAMESPACES
        and (a.asname or a.name) in NAMESPACES
        and type(NAMESPACES[a.name]) is type(NAMESPACES[a.asname or a.name])
        for a in node.names
    )


def _validate_function(fn: ast.FunctionDef) -> list[ProgramError]:
    errors: list[ProgramError] = []
    args = fn.args
    if args.vararg or args.kwarg or args.kwonlyargs or args.posonlyargs or args.defaults:
        errors.append(_error(ErrorCode.FORBIDDEN, f"{ENTRY} takes plain parameters only", fn))
    if fn.decorator_list:
        errors.append(_error(ErrorCode.FORBIDDEN, "decorators are not allowed", fn))
    for a in args.args:
        if is_dunder(a.arg):
            errors.append(_error(ErrorCode.FORBIDDEN_NAME, f"the name '{a.arg}' is not allowed", a))
    for stmt in fn.body:
        for node in ast.walk(stmt):
            bad_statement = isinstance(node, ast.stmt) and not isinstance(node, _STATEMENTS)
            bad_expression = isinstance(node, ast.expr) and not isinstance(node, _EXPRESSIONS)
            if bad_statement or bad_expression:
                message = f"{describe_node(node)} is not allowed"
                errors.append(_error(ErrorCode.FORBIDDEN, message, node))
            name = None
            if isinstance(node, ast.Name):
                name = node.id
            elif isinstance(node, ast.Attribute):
                name = node.attr
            elif isinstance(node, (ast.keyword, ast.arg)):
                name = node.arg
            if name is not None and is_dunder(name):
                errors.append(
                    _error(ErrorCode.FORBIDDEN_NAME, f"the name '{name}' is not allowed", node)
                )
            if isinstance(node, ast.Constant) and not isinstance(
                node.value, (str, int, float, bool, type(None))
            ):
                errors.append(
                    _error(
                        ErrorCode.FORBIDDEN,
                        f"{type(node.value).__name__} literals are not allowed",
                        node,
                    )
                )
            targets: list[ast.AST] = []
            if isinstance(node, (ast.Assign,)):
                targets = list(node.targets)
            elif isinstance(node, (ast.AugAssign, ast.AnnAssign, ast.For)):
                targets = [node.target]
            for t in targets:
                for sub in ast.walk(t):
                    if isinstance(sub, ast.Attribute):
                        errors.append(
                            _error(
                                ErrorCode.FORBIDDEN, "assigning to attributes is not allowed", sub
                            )
                        )
    return errors


def check_python(
    program: PythonProgram,
    *,
    functions: Collection[str],
    exposed: Mapping[type, Exposed],
    inputs: Collection[str] | None = None,
) -> list[ProgramError]:
    """Static checks against the host's API: unknown functions, methods and attributes,
    names never assigned, and parameters without an input image."""
    errors: list[ProgramError] = []
    hints = Hints()
    fn = program.function
    assigned = set(program.params) | set(NAMESPACES)
    exposed = {**EXPOSED_NUMERIC, **exposed}
    for node in ast.walk(fn):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            assigned.add(node.id)
        elif isinstance(node, ast.arg):
            assigned.add(node.arg)
    callable_names = set(functions)
    methods = (
        {m for e in exposed.values() for m in e.methods}
        | {m for table in BUILTIN_METHODS.values() for m in table}
        | {"format"}
    )
    attributes = {a for e in exposed.values() for a in e.attributes}
    called: set[int] = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Call):
            called.add(id(node.func))
            if (
                isinstance(node.func, ast.Name)
                and node.func.id not in callable_names
                and node.func.id not in assigned
            ):
                hint = hints.phrase(node.func.id, callable_names, n=2)
                errors.append(
                    _error(ErrorCode.UNKNOWN_TOOL, f"unknown function '{node.func.id}'{hint}", node)
                )
            elif isinstance(node.func, ast.Attribute) and node.func.attr not in methods:
                hint = hints.phrase(node.func.attr, methods, n=2)
                errors.append(
                    _error(ErrorCode.UNKNOWN_TOOL, f"no method '{node.func.attr}'{hint}", node)
                )
    for node in ast.walk(fn):
        if (
            isinstance(node, ast.Attribute)
            and id(node) not in called
            and node.attr not in attributes
        ):
            hint = hints.phrase(node.attr, attributes, n=2)
            errors.append(
                _error(ErrorCode.UNKNOWN_ATTRIBUTE, f"no attribute '{node.attr}'{hint}", node)
            )
        elif (
            isinstance(node, ast.Name)
            and isinstance(node.ctx, ast.Load)
            and node.id not in assigned
            and node.id not in callable_names
            and id(node) not in called  # an unknown function is reported once, above
        ):
            errors.append(_error(ErrorCode.UNDEFINED_NAME, f"'{node.id}' is never assigned", node))
    if inputs is not None:
        lowered = {i.lower() for i in inputs}
        for p in program.params:
            if p not in inputs and p.lower() not in lowered:
                errors.append(
                    _error(
                        ErrorCode.UNDEFINED_NAME,
                        f"parameter '{p}' has no input image (inputs: {', '.join(inputs) or '-'})",
                        fn,
                    )
                )
    return sorted(errors, key=lambda e: (e.line, e.col))


# --- the interpreter ------------------------------------------------------------------------


class _Return(Exception):
    def __init__(self, value: object) -> None:
        self.value = value


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


@dataclass
class Function:
    """A lambda defined by the program: callable only by this interpreter."""

    node: ast.Lambda
    env: Mapping[str, object]

    def __repr__(self) -> str:
        return "<lambda>"


def _range(*args: object) -> range:
    for a in args:
        if isinstance(a, bool) or not isinstance(a, int):
            raise EvalError("range() takes whole numbers")
    return range(*args)  # type: ignore[arg-type]


PY_FUNCTIONS: dict[str, Callable[..., object]] = {
    **{k: v for k, v in SAFE_FUNCTIONS.items()},
    "range": _range,
    "enumerate": lambda xs, start=0: list(enumerate(xs, start)),
    "zip": lambda *xs: list(zip(*xs, strict=False)),
    "reversed": lambda xs: list(reversed(xs)),
    "list": lambda xs=(): list(xs),
    "tuple": lambda xs=(): tuple(xs),
    "set": lambda xs=(): set(xs),
    "dict": lambda xs=(): dict(xs),
    "any": lambda xs: any(xs),
    "all": lambda xs: all(xs),
    "sorted": sorted,
    "print": print,  # replaced by the interpreter's output hook
}


class PythonInterpreter(Evaluator):
    """Runs one :class:`PythonProgram` under a budget. ``functions`` adds the host's API."""

    NODE_METHODS: ClassVar[Mapping[type[ast.AST], str]] = {
        **Evaluator.NODE_METHODS,
        ast.Lambda: "_lambda",
    }

    def __init__(
        self,
        budget: Budget,
        *,
        functions: Mapping[str, Callable[..., object]] | None = None,
        exposed: Mapping[type, Exposed] | None = None,
        output: Callable[[str], None] | None = None,
        max_calls_depth: int = 32,
    ) -> None:
        super().__init__(
            budget,
            answers=False,
            functions={**PY_FUNCTIONS, **(functions or {})},
            exposed={**EXPOSED_NUMERIC, **(exposed or {})},
        )
        self.line = 0
        self.output = output or (lambda text: None)
        self.calls_depth = 0
        self.printed = 0  # characters printed so far
        self.max_calls_depth = max_calls_depth
        self.env: dict[str, object] = {}  # the last run's variables (what a follow-up reads)

    def run(self, program: PythonProgram, args: Mapping[str, object]) -> object:
        fn = program.function
        env: dict[str, object] = dict(NAMESPACES)
        self.env = env
        for p in program.params:
            if p not in args:
                raise EvalError(f"no value for parameter '{p}'", line=fn.lineno)
            env[p] = args[p]
        try:
            self.block(fn.body, env)
        except _Return as ret:
            return force_deep(ret.value)
        except (_Break, _Continue):  # pragma: no cover - the parser only allows them in loops
            raise EvalError("'break'/'continue' outside a loop") from None
        return None

    def _lambda(self, node: ast.Lambda, env: Mapping[str, object]) -> object:
        return Function(node, env)

    # --- statements --------------------------------------------------------------------------

    def block(self, body: list[ast.stmt], env: dict[str, object]) -> None:
        for stmt in body:
            self.statement(stmt, env)

    def statement(self, stmt: ast.stmt, env: dict[str, object]) -> None:
        self.line = stmt.lineno
        self.budget.tick()
        try:
            if isinstance(stmt, ast.Assign):
                value = self.eval(stmt.value, env)
                for target in stmt.targets:
                    self.store(target, value, env)
            elif isinstance(stmt, ast.AnnAssign):
                if stmt.value is not None:
                    self.store(stmt.target, self.eval(stmt.value, env), env)
            elif isinstance(stmt, ast.AugAssign):
                current = self.eval(_as_load(stmt.target), env)
                self.store(
                    stmt.target,
                    self.binop(stmt.op, force(current), force(self.eval(stmt.value, env))),
                    env,
                )
            elif isinstance(stmt, ast.Expr):
                self.eval(stmt.value, env)
            elif isinstance(stmt, ast.If):
                self.block(stmt.body if self.truth(self.eval(stmt.test, env)) else stmt.orelse, env)
            elif isinstance(stmt, ast.For):
                self._for(stmt, env)
            elif isinstance(stmt, ast.While):
                self._while(stmt, env)
            elif isinstance(stmt, ast.Return):
                raise _Return(None if stmt.value is None else self.eval(stmt.value, env))
            elif isinstance(stmt, ast.Break):
                raise _Break
            elif isinstance(stmt, ast.Continue):
                raise _Continue
            elif isinstance(stmt, ast.Pass):
                pass
            else:
                raise ForbiddenError(f"{describe_node(stmt)} is not allowed")
        except VisChainError as exc:
            if exc.line is None:
                exc.line = stmt.lineno
            raise
        except CAUGHT as exc:  # from a statement's own work (item assignment, unpacking...)
            raise EvalError(error_message(exc), line=stmt.lineno) from exc

    def _for(self, stmt: ast.For, env: dict[str, object]) -> None:
        items = self.iterate(self.eval(stmt.iter, env))
        for n, item in enumerate(items):
            self._count_iteration(n, stmt)
            self.store(stmt.target, item, env)
            if not self._loop_body(stmt, env):
                return
        self.block(stmt.orelse, env)

    def _while(self, stmt: ast.While, env: dict[str, object]) -> None:
        n = 0
        while self.truth(self.eval(stmt.test, env)):
            self._count_iteration(n, stmt)
            n += 1
            self.budget.tick()
            if not self._loop_body(stmt, env):
                return
        self.block(stmt.orelse, env)

    def _loop_body(self, stmt: ast.For | ast.While, env: dict[str, object]) -> bool:
        """Run a loop's body once; False when it breaks out of the loop."""
        try:
            self.block(stmt.body, env)
        except _Break:
            return False
        except _Continue:
            pass
        return True

    def _count_iteration(self, n: int, stmt: ast.stmt) -> None:
        limit = self.budget.limits.max_loop_iterations
        if n >= limit:
            raise LimitExceeded(
                f"loop ran more than {limit:,} times", code=ErrorCode.STEP_LIMIT, line=stmt.lineno
            )

    def store(self, target: ast.AST, value: object, env: dict[str, object]) -> None:
        if isinstance(target, ast.Subscript):
            container = force(self.eval(target.value, env))
            key = force_deep(self.eval(target.slice, env))
            if isinstance(container, list):
                container[key] = value  # type: ignore[index]
            elif isinstance(container, dict):
                if key not in container:
                    self.budget.check_items(1)
                container[key] = value
            else:
                raise EvalError(f"a {type(container).__name__} does not support item assignment")
            return
        if isinstance(target, (ast.Tuple, ast.List)):
            value = force(value)
        self.assign(target, value, env)

    # --- forcing lazy values where control flow needs them -------------------------------------

    def truth(self, value: object) -> bool:
        return super().truth(force(value))

    def compare(self, op: ast.cmpop, a: object, b: object) -> bool:
        return super().compare(op, force_deep(a), force_deep(b))

    def hashable(self, value: object) -> object:
        return force_deep(value)

    def binop(self, op: ast.operator, a: object, b: object) -> object:
        return super().binop(op, force(a), force(b))

    def iterate(self, value: object) -> list[object]:
        value = force(value)
        if isinstance(value, range):
            self.budget.check_items(len(value))
            return list(value)
        return super().iterate(value)

    def exposure(self, value: object) -> Exposed | None:
        return super().exposure(force(value))

    def operand(self, node: ast.AST, env: Mapping[str, object]) -> object:
        return force_deep(self.eval(node, env))

    # --- calls ---------------------------------------------------------------------------------

    def _call(self, node: ast.Call, env: Mapping[str, object]) -> object:
        if any(isinstance(a, ast.Starred) for a in node.args) or any(
            k.arg is None for k in node.keywords
        ):
            raise ForbiddenError("'*' and '**' arguments are not allowed")
        args = [self.eval(a, env) for a in node.args]
        kwargs = {k.arg: self.eval(k.value, env) for k in node.keywords if k.arg}
        if isinstance(node.func, ast.Attribute):
            obj = force(self.eval(node.func.value, env))
            return self.call_method(obj, node.func.attr, args, kwargs)
        if not isinstance(node.func, ast.Name):
            raise ForbiddenError("only named functions can be called")
        name = node.func.id
        if name in env and isinstance(env[name], Function):
            return self.call_lambda(env[name], args)  # type: ignore[arg-type]
        return self.call_function(name, args, kwargs)

    def call_lambda(self, fn: Function, args: list[object]) -> object:
        params = [a.arg for a in fn.node.args.args]
        if len(params) != len(args) or fn.node.args.vararg or fn.node.args.kwarg:
            raise EvalError(f"the lambda takes {len(params)} argument(s), got {len(args)}")
        self.calls_depth += 1
        if self.calls_depth > self.max_calls_depth:
            self.calls_depth -= 1
            raise LimitExceeded("calls nested too deeply (recursion?)", code=ErrorCode.DEPTH_LIMIT)
        try:
            scope = ChainEnv(fn.env)
            for p, a in zip(params, args, strict=True):
                scope[p] = a
            return self.eval(fn.node.body, scope)
        finally:
            self.calls_depth -= 1

    def _key(self, key: object) -> Callable[[object], object] | None:
        if key is None:
            return None
        if not isinstance(key, Function):
            raise EvalError("key= must be a lambda")
        return lambda item: force_deep(self.call_lambda(key, [item]))

    def call_function(self, name: str, args: list[object], kwargs: dict[str, object]) -> object:
        host = self.functions.get(name)
        if host is None:
            raise ForbiddenError(f"calling '{name}' is not allowed")
        if name in PY_FUNCTIONS:
            args = [force_deep(a) for a in args]
            kwargs = {k: v if isinstance(v, Function) else force_deep(v) for k, v in kwargs.items()}
            if name in ("sorted", "min", "max"):
                return self._ordered(name, args, kwargs)
            if name == "print":
                self.budget.check_str_len(check_renderable(args, self.budget))
                text = " ".join(str(a) for a in args)
                self.printed += len(text)
                if self.printed > self.budget.limits.max_printed_chars:
                    raise LimitExceeded(
                        f"the program printed more than "
                        f"{self.budget.limits.max_printed_chars:,} characters",
                        code=ErrorCode.SIZE_LIMIT,
                    )
                self.output(text)
                return None
            if name in ("list", "tuple", "set", "dict", "sorted", "reversed", "enumerate", "zip"):
                for a in args:
                    self.budget.check_items(len(self.iterate(a)))
            return self.budget.check_value(super().call_function(name, args, kwargs))
        return host(*args, **kwargs)  # the host's API decides what it forces

    def _ordered(self, name: str, args: list[object], kwargs: dict[str, object]) -> object:
        unknown = set(kwargs) - {"key", "reverse", "default"}
        if unknown:
            raise EvalError(f"{name}() got unexpected keyword(s) {', '.join(sorted(unknown))}")
        key = self._key(kwargs.get("key"))
        if name == "sorted" and len(args) != 1:
            raise EvalError(f"sorted() takes one list, got {len(args)} arguments")
        items = self.iterate(args[0]) if len(args) == 1 else list(args)
        if name == "sorted":
            guarded.sort(items, self.budget, key=key, reverse=bool(kwargs.get("reverse", False)))
            return items
        if not items and "default" in kwargs:
            return kwargs["default"]
        return guarded.extreme(items, self.budget, largest=name == "max", key=key)

    def call_method(
        self, obj: object, name: str, args: list[object], kwargs: dict[str, object]
    ) -> object:
        obj = force(obj)
        if isinstance(obj, (list, tuple)) and name in _LOOKS_INSIDE:
            obj = force_deep(obj)  # a list is settled in place: every alias sees the values
        if isinstance(obj, list) and name == "sort":
            key = self._key(kwargs.pop("key", None))
            reverse = bool(force(kwargs.pop("reverse", False)))
            if kwargs or args:
                raise EvalError("sort() takes only key= and reverse=")
            guarded.sort(obj, self.budget, key=key, reverse=reverse)
            return None
        if isinstance(obj, str) and name == "format":
            return safe_format(self.budget, obj, args, kwargs)
        if type(obj) in BUILTIN_METHODS:
            args = [force_deep(a) for a in args]
            kwargs = {k: force_deep(v) for k, v in kwargs.items()}
        return super().call_method(obj, name, args, kwargs)


_LOOKS_INSIDE = frozenset({"count", "index", "remove", "sort"})  # methods comparing elements


def _as_load(target: ast.expr) -> ast.expr:
    """The load form of an assignment target (for ``x += 1`` and ``d[k] += 1``)."""
    if isinstance(target, ast.Name):
        return ast.copy_location(ast.Name(id=target.id, ctx=ast.Load()), target)
    if isinstance(target, ast.Subscript):
        clone = ast.Subscript(value=target.value, slice=target.slice, ctx=ast.Load())
        return ast.copy_location(clone, target)
    raise ForbiddenError("only names and items can be updated in place")
