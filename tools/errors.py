"""Errors raised by tools and the model layer."""

from __future__ import annotations

from sandbox import ErrorCode, VisChainError


class ToolError(VisChainError):
    """A tool failed while running (its message says why)."""

    code = ErrorCode.TOOL_ERROR


class ToolInputError(ToolError):
    """A tool received an argument of the wrong type or value at run time."""

    code = ErrorCode.WRONG_TYPE


class ImageLoadError(VisChainError):
    """An input image could not be read (missing, corrupt, unsupported)."""

    code = ErrorCode.BAD_INPUT


class NoBackendError(ToolError):
    """A tool needs a model that is not configured or whose weights are not present."""

    code = ErrorCode.NO_BACKEND


class ModelError(ToolError):
    """A model failed to load or to run."""

    code = ErrorCode.MODEL_ERROR
