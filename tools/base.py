"""A tool is one definition: name, aliases, description, typed parameters, output type and
examples. The registry entry, the checker's signature, the pydantic validator, the docs in
the planner's prompt and the decoding grammar are all derived from it.

Write a tool as a decorated function::

    @tool(aliases=("COUNT",), examples=["ANSWER0=Count(object=OBJ0)"])
    def count(object: ObjectList | PointList) -> int:
        '''Count the objects or points in a list.

        Args:
            object: what to count
        '''
        return len(object)

or, when it holds models, as a :class:`Tool` subclass with a ``run`` method. A parameter
named ``ctx`` receives the :class:`ToolContext` and is not part of the signature. A tool
that can process many calls at once overrides ``run_batch`` (or uses ``@fn.batch``); the
executor groups ready calls to such a tool into one batch. A tool that only batches is a
:class:`BatchTool`: a ``signature`` stub declares its parameters once, ``run_batch`` does
the work.
"""

from __future__ import annotations

import inspect
import logging
import re
import threading
import time
import types
import typing
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, InstanceOf, ValidationError, create_model

from sandbox import ANY, ErrorCode, LimitExceeded, Limits, ParamSpec, Signature

from .errors import NoBackendError, ToolInputError, ToolOutputError
from .settings import ModelSpec
from .types import CLASS_NAMES, coerce, type_name, value_type
from .video import FrameResults, per_frame_arguments

log = logging.getLogger("vischain.tools")
_EMPTY = inspect.Parameter.empty


@runtime_checkable
class ModelProvider(Protocol):
    """Resolves a model *role* ("clip", "vlm", "detector"...) to a loaded backend."""

    def get(self, role: str) -> Any:
        """The loaded backend serving ``role`` (loads it on first use)."""

    def resolve(self, role: str) -> tuple[ModelSpec | None, str | None]:
        """The spec that would serve ``role`` without loading it, or None and the reason
        none can."""

    def unavailable(self, role: str) -> str | None:
        """Why the role cannot be served (None when it can)."""


@dataclass
class ToolContext:
    """What a running tool may use: models, its options, limits, and its deadline.

    ``meta`` collects what the tool reports for the trace (device, cache hits, model...).
    """

    models: ModelProvider | None = None
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    deadline: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    meta: dict[str, Any] = field(default_factory=dict)
    services: dict[str, Any] = field(default_factory=dict)

    def model(self, role: str) -> Any:
        """The backend serving ``role``; raises :class:`NoBackendError` if there is none."""
        if self.models is None:
            raise NoBackendError(f"no model backend is configured for '{role}'")
        reason = self.models.unavailable(role)
        if reason:
            raise NoBackendError(f"no '{role}' model available: {reason}")
        return self.models.get(role)

    def option(self, tool: str, key: str, default: Any = None) -> Any:
        return self.options.get(tool, {}).get(key, default)

    def check(self) -> None:
        """Raise if the step was cancelled or ran out of time (call between units of work)."""
        if self.cancel.is_set():
            raise LimitExceeded("step was cancelled", code=ErrorCode.CANCELLED)
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise LimitExceeded("step ran out of time", code=ErrorCode.TIME_LIMIT)

    def note(self, **meta: Any) -> None:
        self.meta.update(meta)

    def derive(self, *, deadline: float | None) -> ToolContext:
        """A context for another call of the same run: the same models, options, limits,
        services and cancellation event; its own deadline and meta (cheaper than a new
        context, which makes an event of its own)."""
        return ToolContext(
            self.models, self.options, self.limits, deadline, self.cancel, {}, self.services
        )


@dataclass(frozen=True)
class Param:
    name: str
    annotation: Any
    type: str
    default: Any = _EMPTY
    description: str = ""
    aliases: tuple[str, ...] = ()

    @property
    def required(self) -> bool:
        return self.default is _EMPTY


@dataclass(frozen=True)
class ToolSpec:
    """Everything derived from one tool definition."""

    name: str
    aliases: tuple[str, ...]
    description: str
    params: tuple[Param, ...]
    output: str
    examples: tuple[str, ...]
    requires: tuple[str, ...]
    input_model: type[BaseModel]
    output_optional: bool = False  # the return annotation allows None

    def signature(self) -> Signature:
        return self._signature

    @cached_property
    def _signature(self) -> Signature:
        return Signature(
            name=self.name,
            params=tuple(
                ParamSpec(
                    p.name,
                    p.type,
                    required=p.required,
                    default=None if p.required else p.default,
                    description=p.description,
                    aliases=p.aliases,
                )
                for p in self.params
            ),
            output=self.output,
            aliases=self.aliases,
        )

    def usage(self) -> str:
        """``Loc(image: Image, object: Text) -> ObjectList``."""
        parts = []
        for p in self.params:
            default = "" if p.required else f"={p.default!r}"
            parts.append(f"{p.name}: {p.type}{default}")
        return f"{self.name}({', '.join(parts)}) -> {self.output}"

    def doc(self, *, examples: int = 1) -> str:
        """The tool's entry in the planner's prompt."""
        lines = [self.usage()]
        if self.aliases:
            lines[0] += f"   (also: {', '.join(self.aliases)})"
        lines.append(f"    {self.description}")
        for p in self.params:
            if p.description:
                also = f" (also: {', '.join(p.aliases)}=)" if p.aliases else ""
                lines.append(f"    {p.name}: {p.description}{also}")
        for ex in self.examples[:examples]:
            lines.append(f"    e.g. {ex}")
        return "\n".join(lines)


class Tool:
    """Base class. Subclasses define ``run(self, [ctx,] **params) -> Output`` with annotations;
    class attributes ``name``, ``aliases``, ``arg_aliases`` (other names of parameters),
    ``examples``, ``requires`` (model roles) and ``max_batch`` (>1 when ``run_batch``
    really batches) complete the definition."""

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    arg_aliases: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    examples: ClassVar[tuple[str, ...]] = ()
    requires: ClassVar[tuple[str, ...]] = ()
    max_batch: ClassVar[int] = 1
    cacheable: ClassVar[bool] = True
    inline: ClassVar[bool] = False  # cheap: the executor runs it in its own thread
    spec: ClassVar[ToolSpec]
    _wants_ctx: ClassVar[bool] = False

    def __init_subclass__(cls, generic: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declared = cls.__dict__.get("run") or cls.__dict__.get("signature")
        if declared is None or generic:
            return
        if "run" in cls.__dict__ and "signature" in cls.__dict__:
            raise TypeError(f"tool {cls.__name__}: define run or signature, not both")
        name = cls.__dict__.get("name") or cls.__name__
        cls.name = name
        cls.spec, wants_ctx = build_spec(
            declared,
            name=name,
            aliases=cls.aliases,
            examples=cls.examples,
            requires=cls.requires,
            doc=cls.__doc__,
            skip_first=True,
            arg_aliases=cls.arg_aliases,
        )
        if declared is cls.__dict__.get("signature"):
            if cls.run_batch is Tool.run_batch:
                raise TypeError(
                    f"tool {cls.__name__}: a tool declared by signature needs run_batch"
                )
            wants_ctx = True  # its run is BatchTool.run(ctx, **call)
        cls._wants_ctx = wants_ctx

    def run(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def run_batch(self, ctx: ToolContext, calls: Sequence[dict[str, Any]]) -> list[Any]:
        """Run many calls; return one result (or exception) per call, in order. The default
        runs them one by one; tools whose models batch override it."""
        results: list[Any] = []
        for call in calls:
            try:
                ctx.check()
                results.append(self.invoke(ctx, call))
            except Exception as exc:  # one bad call must not fail the others
                results.append(exc)
        return results

    def one(self, ctx: ToolContext, **call: Any) -> Any:
        """Run a single call through ``run_batch`` (for tools whose natural form is a batch)."""
        result = self.run_batch(ctx, [call])[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def invoke(self, ctx: ToolContext, args: Mapping[str, Any]) -> Any:
        """Run one prepared call."""
        if self._wants_ctx:
            return self.run(ctx, **args)
        return self.run(**args)

    def unavailable(self, ctx: ToolContext) -> str | None:
        """Why this tool cannot run with the given context (None when it can)."""
        if ctx.models is None:
            return f"needs models ({', '.join(self.requires)})" if self.requires else None
        for role in self.requires:
            reason = ctx.models.unavailable(role)
            if reason:
                return f"'{role}' model unavailable: {reason}"
        return None

    def prepare(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """Coerce and validate arguments; raise :class:`ToolInputError` naming the argument.

        A call that names every parameter in declared order, each with a value of a type
        that conversion and the input model both return as it is (:attr:`_unchanged`),
        comes back as it is without going through them: what they would return. Any other
        call takes their route (:meth:`validated`)."""
        kinds = self._unchanged
        if kinds is not None and len(args) == len(kinds):
            call: dict[str, Any] = {}
            for (name, exact), (key, value) in zip(kinds, args.items(), strict=True):
                if name != key or (exact is not None and type(value) not in exact):
                    return self.validated(args)
                call[name] = value
            return call
        return self.validated(args)

    def validated(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """:meth:`prepare` through conversion (:func:`~tools.types.coerce`) and the input
        model (pydantic), for any call."""
        args = self.canonical_args(args)
        if not self._param_names.issuperset(args):
            unknown = sorted(set(args) - self._param_names)
            raise ToolInputError(f"{self.name}: unknown argument(s) {', '.join(unknown)}")
        converted: dict[str, Any] = {}
        # a video where one picture goes: validated as its first frame, run once per frame
        varying = per_frame_arguments(args, self.image_params) or {}
        for p in self.spec.params:
            if p.name not in args:
                continue
            value = varying[p.name][0] if p.name in varying else args[p.name]
            try:
                converted[p.name] = coerce(value, p.type)
            except (TypeError, ValueError) as exc:
                raise ToolInputError(f"{self.name}: argument '{p.name}' {exc}") from None
            except OverflowError:
                raise ToolInputError(
                    f"{self.name}: argument '{p.name}' holds a number too large to use "
                    "(coordinates must be finite)"
                ) from None
        try:
            model = self.spec.input_model.model_validate(converted)
        except ValidationError as exc:
            problems = "; ".join(
                f"'{'.'.join(str(x) for x in e['loc'])}': {e['msg']}" for e in exc.errors()
            )
            raise ToolInputError(f"{self.name}: {problems}") from None
        call = {p.name: getattr(model, p.name) for p in self.spec.params}
        if varying:
            call.update((name, args[name]) for name in varying)  # see tools.video.expand_frames
        return call

    @cached_property
    def _unchanged(self) -> tuple[tuple[str, frozenset[type] | None], ...] | None:
        """Per parameter in declared order, the exact value types that conversion and the
        input model return as they are (None: any value; see :func:`passed_unchanged`);
        None when some parameter has no such types or the model is not build_spec's."""
        if self.spec.input_model not in _BUILT_MODELS:  # a model of someone else's making
            return None
        kinds = []
        for p in self.spec.params:
            exact = passed_unchanged(p.annotation, p.type)
            if exact is not None and not exact:
                return None
            kinds.append((p.name, exact))
        return tuple(kinds)

    @cached_property
    def _param_names(self) -> frozenset[str]:
        return frozenset(p.name for p in self.spec.params)

    @cached_property
    def _has_arg_aliases(self) -> bool:
        return any(p.aliases for p in self.spec.params)

    @cached_property
    def image_params(self) -> tuple[str, ...]:
        """The parameters that take one picture (a video there means one call per frame)."""
        return tuple(p.name for p in self.spec.params if "Image" in p.type.split("|"))

    def check_output(self, value: Any) -> None:
        """Raise :class:`ToolOutputError` unless ``value`` is of the declared output type
        (None only where the annotation allows it; containers at most
        ``MAX_OUTPUT_DEPTH`` deep)."""
        if _nesting(value, MAX_OUTPUT_DEPTH) > MAX_OUTPUT_DEPTH:
            raise LimitExceeded(
                f"{self.name} returned containers nested more than {MAX_OUTPUT_DEPTH} deep",
                code=ErrorCode.DEPTH_LIMIT,
            )
        for item in value if isinstance(value, FrameResults) else (value,):
            problem = output_problem(item, self.spec.output, self.spec.output_optional)
            if problem:
                raise ToolOutputError(f"{self.name} {problem}")

    def canonical_args(self, args: Mapping[str, Any]) -> Mapping[str, Any]:
        """``args`` with parameter aliases (``box`` for Count's ``object``) renamed."""
        if not self._has_arg_aliases:
            return args
        sig = self.spec.signature()
        renamed: dict[str, Any] = {}
        for key, value in args.items():
            param = sig.param(key)
            name = param.name if param is not None else key
            if name in renamed:
                raise ToolInputError(f"{self.name}: argument '{name}' given twice")
            renamed[name] = value
        return renamed

    def __call__(self, *args: Any, ctx: ToolContext | None = None, **kwargs: Any) -> Any:
        """Call the tool directly from Python (positional arguments in declared order)."""
        for p, value in zip(self.spec.params, args, strict=False):
            kwargs[p.name] = value
        return self.invoke(ctx or ToolContext(), self.prepare(kwargs))

    def __repr__(self) -> str:
        return f"<tool {self.spec.usage()}>"


class BatchTool(Tool, generic=True):
    """A tool whose natural form is a batch. Declare its parameters once, on a
    ``signature`` stub (annotated parameters and return, a docstring with ``Args:``, no
    body), and implement ``run_batch``; a single call runs as a batch of one::

        class Loc(BatchTool):
            max_batch = 16

            def signature(self, image: Image, object: str) -> ObjectList:
                '''Args:
                image: the picture to search
                object: what to find
                '''

            def run_batch(self, ctx, calls): ...
    """

    def run(self, ctx: ToolContext, **call: Any) -> Any:
        return self.one(ctx, **call)


MAX_OUTPUT_DEPTH = 100  # containers nested deeper than this are refused


def output_problem(value: Any, declared: str, optional: bool) -> str | None:
    """Why ``value`` cannot be the result of a tool declared to return ``declared``."""
    if value is None:
        if optional or ANY in declared.split("|"):
            return None
        return f"returned None, but it is declared to return {declared}"
    if ANY in declared.split("|"):
        return None
    if _is_number(value):  # a numpy scalar
        value = value.item()
    try:
        coerce(value, declared)
    except TypeError:
        shown = type(value).__name__
        return f"returned {shown} ({value_type(value)}), but it is declared to return {declared}"
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (np.number, np.bool_)) and np.ndim(value) == 0


def _nesting(value: Any, limit: int) -> int:
    """How deep lists, tuples, sets and dicts nest in ``value`` (stops past ``limit``)."""
    if not isinstance(value, (list, tuple, set, frozenset, dict)):
        return 0
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    seen: set[int] = set()
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, (list, tuple, set, frozenset, dict)) or id(item) in seen:
            continue
        seen.add(id(item))
        depth += 1
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth) for c in children)
    return deepest


class FunctionTool(Tool, generic=True):
    """A tool made from a function by :func:`tool`."""

    def __init__(self, fn: Callable[..., Any], spec: ToolSpec, wants_ctx: bool) -> None:
        self.fn = fn
        self.spec = spec  # type: ignore[misc]
        self.name = spec.name  # type: ignore[misc]
        self.aliases = spec.aliases  # type: ignore[misc]
        self.examples = spec.examples  # type: ignore[misc]
        self.requires = spec.requires  # type: ignore[misc]
        self._wants_ctx = wants_ctx  # type: ignore[misc]
        self._batch: Callable[..., list[Any]] | None = None
        self.__doc__ = fn.__doc__

    def run(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def batch(
        self, fn: Callable[[ToolContext, Sequence[dict[str, Any]]], list[Any]]
    ) -> Callable[..., list[Any]]:
        """Decorator: give this tool a batched implementation ``fn(ctx, calls) -> results``."""
        self._batch = fn
        self.max_batch = 64  # type: ignore[misc]
        return fn

    def run_batch(self, ctx: ToolContext, calls: Sequence[dict[str, Any]]) -> list[Any]:
        if self._batch is None:
            return super().run_batch(ctx, calls)
        return self._batch(ctx, calls)


def tool(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    aliases: Sequence[str] = (),
    arg_aliases: Mapping[str, Sequence[str]] | None = None,
    examples: Sequence[str] = (),
    requires: Sequence[str] = (),
    cacheable: bool = True,
    inline: bool = False,
) -> Any:
    """Make a :class:`Tool` from a typed, documented function (see the module docstring)."""

    def wrap(f: Callable[..., Any]) -> FunctionTool:
        tool_name = name or _camel(f.__name__)
        spec, wants_ctx = build_spec(
            f,
            name=tool_name,
            aliases=tuple(aliases),
            examples=tuple(examples),
            requires=tuple(requires),
            doc=f.__doc__,
            skip_first=False,
            arg_aliases=arg_aliases,
        )
        made = FunctionTool(f, spec, wants_ctx)
        made.cacheable = cacheable  # type: ignore[misc]
        made.inline = inline  # type: ignore[misc]
        return made

    return wrap(fn) if fn is not None else wrap


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.strip("_").split("_"))


def build_spec(
    fn: Callable[..., Any],
    *,
    name: str,
    aliases: tuple[str, ...],
    examples: tuple[str, ...],
    requires: tuple[str, ...],
    doc: str | None,
    skip_first: bool,
    arg_aliases: Mapping[str, Sequence[str]] | None = None,
) -> tuple[ToolSpec, bool]:
    """Derive a :class:`ToolSpec` from a function's signature, annotations and docstring."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
        raise ValueError(f"invalid tool name {name!r}")
    sig = inspect.signature(fn)
    hints = typing.get_type_hints(fn, include_extras=True)
    description, arg_docs = parse_docstring(doc or fn.__doc__ or "")
    if doc and fn.__doc__ and fn.__doc__ != doc:
        arg_docs = {**parse_docstring(fn.__doc__)[1], **arg_docs}
    params: list[Param] = []
    wants_ctx = False
    items = list(sig.parameters.values())
    if skip_first:
        items = items[1:]
    for p in items:
        if p.name == "ctx":
            wants_ctx = True
            continue
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise TypeError(f"tool {name}: *args/**kwargs parameters are not supported")
        if p.name not in hints:
            raise TypeError(f"tool {name}: parameter '{p.name}' needs a type annotation")
        annotation = hints[p.name]
        text = _annotated_doc(annotation) or arg_docs.get(p.name, "")
        others = tuple((arg_aliases or {}).get(p.name, ()))
        params.append(Param(p.name, annotation, type_name(annotation), p.default, text, others))
    unknown = set(arg_aliases or {}) - {p.name for p in params}
    if unknown:
        raise TypeError(f"tool {name}: aliases for unknown parameter(s) {sorted(unknown)}")
    if "return" not in hints:
        raise TypeError(f"tool {name}: the return type must be annotated")
    output = type_name(hints["return"])
    optional = type(None) in typing.get_args(hints["return"]) or hints["return"] is None
    fields: dict[str, Any] = {}
    for p in params:
        fields[p.name] = (_validator_type(p.annotation), ... if p.required else p.default)
    model = create_model(  # type: ignore[call-overload]
        f"{name}Input",
        __config__=ConfigDict(arbitrary_types_allowed=True, extra="forbid"),
        **fields,
    )
    _BUILT_MODELS.add(model)
    spec = ToolSpec(
        name=name,
        aliases=tuple(aliases),
        description=description or f"The {name} tool.",
        params=tuple(params),
        output=output,
        examples=tuple(examples),
        requires=tuple(requires),
        input_model=model,
        output_optional=optional,
    )
    return spec, wants_ctx


def _validator_type(annotation: Any) -> Any:
    """The annotation pydantic validates against: our value classes are checked with
    ``isinstance`` (never rebuilt field by field), unions and lists recursively."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _validator_type(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        members = tuple(_validator_type(a) for a in typing.get_args(annotation))
        return typing.Union[members]  # noqa: UP007
    if isinstance(annotation, type) and annotation in CLASS_NAMES and annotation not in _PLAIN:
        return InstanceOf[annotation]
    return annotation


_PLAIN = (str, int, float, bool)
# input models build_spec made (fields from _validator_type, no validators of their own)
_BUILT_MODELS: weakref.WeakSet[type[BaseModel]] = weakref.WeakSet()


def passed_unchanged(annotation: Any, declared: str) -> frozenset[type] | None:
    """The exact types of the values that a parameter annotated ``annotation`` (checker
    type ``declared``) gets as they are from :func:`~tools.types.coerce` and from the
    validator :func:`_validator_type` builds; None for any value (``Any``). Our value
    classes (pydantic checks them with ``isinstance``), None in an optional, and one plain
    type (``str``, ``int``, ``float`` or ``bool``: pydantic converts any other type to it,
    so a union of two is left out); list and tuple types are left out (``coerce`` looks at
    their items). Empty when nothing is known to pass unchanged."""
    if annotation is typing.Any:
        return None
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return passed_unchanged(typing.get_args(annotation)[0], declared)
    union = origin in (typing.Union, types.UnionType)
    members = typing.get_args(annotation) if union else (annotation,)
    targets = declared.split("|")
    found: set[type] = set()
    for member in members:
        if member is type(None) and union:
            found.add(member)  # coerce returns None as it is; the field is optional
        elif (
            isinstance(member, type)
            and not issubclass(member, (list, tuple))
            and CLASS_NAMES.get(member) in targets
        ):
            found.add(member)
        else:
            return frozenset()
    if len(found & set(_PLAIN)) > 1:
        return frozenset()
    return frozenset(found)


def _annotated_doc(annotation: Any) -> str:
    if typing.get_origin(annotation) is typing.Annotated:
        for meta in typing.get_args(annotation)[1:]:
            if isinstance(meta, str):
                return meta
    return ""


_SECTIONS = {
    "returns:",
    "return:",
    "raises:",
    "yields:",
    "examples:",
    "example:",
    "note:",
    "notes:",
}


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into its first paragraph and its ``Args:`` entries."""
    lines = inspect.cleandoc(doc).splitlines()
    summary: list[str] = []
    args: dict[str, str] = {}
    i = 0
    while i < len(lines) and lines[i].strip() and lines[i].strip() not in ("Args:", "Arguments:"):
        summary.append(lines[i].strip())
        i += 1
    for j, line in enumerate(lines):
        if line.strip() not in ("Args:", "Arguments:", "Parameters:"):
            continue
        indent: int | None = None
        current: str | None = None
        for entry in lines[j + 1 :]:
            stripped = entry.strip()
            if not stripped:
                current = None
                continue
            depth = len(entry) - len(entry.lstrip())
            if stripped.lower() in _SECTIONS or (indent is not None and depth < indent):
                break
            m = re.match(r"^(\w+)\s*(\([^)]*\))?\s*:\s*(.*)$", stripped)
            if m and (indent is None or depth == indent):
                indent = depth
                current = m.group(1)
                args[current] = m.group(3)
            elif current is not None:
                args[current] = f"{args[current]} {stripped}".strip()
        break
    return " ".join(summary), args
