"""The orchestrator: the Python API (``api``), program forms (``forms``: parse, check, bind
and run each way of writing programs), the planner, the agent loop behind ``run()``
(``agent``, with ``observation``, ``checks``, ``decisions`` and ``rounds``), the executor (a
DAG of typed tool calls on the bounded pool of ``workers``; ``python_runner`` feeds it a
Python program's calls), the trace record (``trace``, ``StepStatus``) and its ``writer``
(JSONL, pictures, the page from ``templates/``), configuration, its error codes and the
CLI."""

from __future__ import annotations

from .api import Orchestrator, RunResult, default_orchestrator, execute, run
from .config import Config
from .forms import ProgramForm, get_form, register_form
from .trace import StepStatus, Trace

__all__ = [
    "Config",
    "Orchestrator",
    "ProgramForm",
    "RunResult",
    "StepStatus",
    "Trace",
    "default_orchestrator",
    "execute",
    "get_form",
    "register_form",
    "run",
]
