"""Errors raised by tools and the model layer, and the codes this layer owns."""

from __future__ import annotations

from enum import StrEnum

from sandbox import ErrorCode, VisChainError


class ToolErrorCode(StrEnum):
    """The tool layer's stable error codes (never rename one: traces, tests and prompts
    refer to them)."""

    BAD_INPUT = "bad-input"  # an input (image, argument value) that cannot be used
    NO_BACKEND = "no-backend"  # a model role with no model present
    MODEL_ERROR = "model-error"  # a model failed to load or to run
    TOOL_ERROR = "tool-error"  # a tool failed while running
    DEGRADED = "degraded"  # a tool refusing calls while a timed-out call of it still runs


class ToolError(VisChainError):
    """A tool failed while running (its message says why)."""

    code = ToolErrorCode.TOOL_ERROR


class ToolInputError(ToolError):
    """A tool received an argument of the wrong type or value at run time."""

    code = ErrorCode.WRONG_TYPE


class ImageLoadError(VisChainError):
    """An input image could not be read (missing, corrupt, unsupported)."""

    code = ToolErrorCode.BAD_INPUT


class NoBackendError(ToolError):
    """A tool needs a model that is not configured or whose weights are not present."""

    code = ToolErrorCode.NO_BACKEND


class ModelError(ToolError):
    """A model failed to load or to run."""

    code = ToolErrorCode.MODEL_ERROR


class ModelLoadError(ModelError):
    """A model could not be loaded; ``role`` names what it was to serve."""

    def __init__(self, message: str, *, role: str | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.role = role


class ReplicaDiedError(ModelError):
    """The Ray Serve replica holding a model died during a call (it is being restarted)."""


class ToolOutputError(ToolError):
    """A tool returned a value that is not of its declared output type (or cannot be used)."""

    code = ErrorCode.WRONG_TYPE


class ToolDegraded(ToolError):
    """A tool refuses calls while an earlier call of it overran its time limit and has not
    returned yet (``tool`` names it)."""

    code = ToolErrorCode.DEGRADED

    def __init__(self, message: str, *, tool: str, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.tool = tool
