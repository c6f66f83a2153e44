"""The orchestrator: the Python API, planner, executor, tracing, configuration and CLI."""

from __future__ import annotations

from .api import Orchestrator, RunResult, default_orchestrator, execute, run
from .config import Config
from .trace import Trace

__all__ = ["Config", "Orchestrator", "RunResult", "Trace", "default_orchestrator", "execute", "run"]
