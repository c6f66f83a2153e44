"""Tools: value types, the tool definition (a function with ``@tool``, a ``Tool`` subclass,
or a ``BatchTool`` that declares its signature once and runs batches), the registry, the
built-in tools, the tool layer's errors and codes, and the model layer (backends, devices,
caches, the shared pool behind the ``ModelProvider`` protocol)."""

from __future__ import annotations

from .base import BatchTool, Tool, ToolContext, ToolSpec, tool
from .errors import ImageLoadError, ModelError, NoBackendError, ToolError, ToolInputError
from .registry import ENTRY_POINT_GROUP, Registry
from .types import Box, Image, Mask, Object, ObjectList, Point, PointList


def default_registry(*, plugins: bool = True) -> Registry:
    """Every built-in tool, plus the plug-ins installed packages advertise."""
    from .builtin import builtin_tools

    registry = Registry(builtin_tools())
    if plugins:
        registry.load_plugins()
    return registry


__all__ = [
    "ENTRY_POINT_GROUP",
    "BatchTool",
    "Box",
    "Image",
    "ImageLoadError",
    "Mask",
    "ModelError",
    "NoBackendError",
    "Object",
    "ObjectList",
    "Point",
    "PointList",
    "Registry",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolInputError",
    "ToolSpec",
    "default_registry",
    "tool",
]
