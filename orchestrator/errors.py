"""The error codes the orchestrator owns (its runs and its planner).

Codes are stable: traces, tests and prompts refer to them, so never rename one. The
sandbox's codes are ``sandbox.ErrorCode``, the tool layer's ``tools.errors.ToolErrorCode``.
"""

from __future__ import annotations

from enum import StrEnum


class RunErrorCode(StrEnum):
    """Error codes of runs and planning."""

    SKIPPED = "skipped"  # a step did not run because a step it depends on failed
    PLANNING = "planning"  # the planner could not produce a valid program
    CAPABILITY = "capability"  # the instruction needs a tool whose model is not here
    AGENT_LIMIT = "agent-limit"  # the agent loop stopped with the result still in doubt
