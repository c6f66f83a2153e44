"""Optional OpenTelemetry export (``pip install vischain[otel]``): one span per run, one per
planning round and one per step, carrying the same facts as the trace.

Spans are made from the finished trace with its recorded start and end times, so export
adds nothing to the hot path and a run that failed half-way exports what it did.
"""

from __future__ import annotations

import logging
from typing import Any

from .trace import StepStatus, Trace

log = logging.getLogger("vischain.telemetry")
_NS = 1_000_000_000


def _clean(attributes: dict[str, Any]) -> dict[str, Any]:
    """OpenTelemetry takes str/bool/int/float (and lists of them); drop the rest."""
    out: dict[str, Any] = {}
    for key, value in attributes.items():
        if isinstance(value, (str, bool, int, float)):
            out[key] = value
        elif isinstance(value, (list, tuple)) and all(
            isinstance(v, (str, bool, int, float)) for v in value
        ):
            out[key] = list(value)
        elif value is not None:
            out[key] = str(value)[:1000]
    return out


def export_trace(trace: Trace, tracer: Any | None = None) -> None:
    """Emit ``trace`` as spans through ``tracer`` (default: the global tracer provider's)."""
    if tracer is None:
        from opentelemetry import trace as otel

        tracer = otel.get_tracer("vischain")
    from opentelemetry.trace import Status, StatusCode, set_span_in_context

    start = int(trace.created * _NS)
    end = int((trace.finished or trace.created) * _NS)
    run_attrs = _clean({
        "vischain.rounds": len(trace.rounds),
        "vischain.run_id": trace.run_id,
        "vischain.instruction": trace.instruction,
        "vischain.program": trace.program,
        "vischain.form": trace.form,
        "vischain.steps": len(trace.steps),
        "vischain.result": (trace.result or {}).get("text"),
    })  # fmt: skip
    root = tracer.start_span("vischain.run", start_time=start, attributes=run_attrs)
    context = set_span_in_context(root)
    cursor = start
    for i, rec in enumerate(trace.planning):
        seconds = float(rec.get("seconds") or 0.0)
        span_start = int(rec.get("started", cursor / _NS) * _NS) if rec.get("started") else cursor
        attrs = _clean({
            "vischain.kind": rec.get("kind"),
            "vischain.round": i,
            "vischain.model": rec.get("model"),
            "vischain.prompt_tokens": rec.get("prompt_tokens"),
            "vischain.completion_tokens": rec.get("completion_tokens"),
            "vischain.errors": len(rec.get("errors") or []),
            "vischain.program": rec.get("program"),
        })  # fmt: skip
        span = tracer.start_span(
            "vischain.plan", context=context, start_time=span_start, attributes=attrs
        )
        cursor = span_start + int(seconds * _NS)
        span.end(end_time=cursor)
    parents = {}
    for rnd in trace.rounds:
        r_start = int((rnd.get("started") or trace.created) * _NS)
        decision = rnd.get("decision") or {}
        attrs = _clean({
            "vischain.round": rnd.get("index"),
            "vischain.round_kind": rnd.get("kind"),
            "vischain.program": rnd.get("program"),
            "vischain.decision": decision.get("action"),
            "vischain.decided_by": decision.get("by"),
            "vischain.issues": [f"{i.get('check')}: {i.get('message')}" for i in rnd["issues"]],
            "vischain.tool_calls": rnd.get("tool_calls"),
            "vischain.accepted": rnd.get("accepted"),
            "vischain.answer": rnd.get("answer"),
            "vischain.error_code": (rnd.get("error") or {}).get("code"),
        })  # fmt: skip
        span = tracer.start_span("vischain.round", context=context, start_time=r_start,
                                 attributes=attrs)  # fmt: skip
        if rnd.get("error"):
            span.set_status(Status(StatusCode.ERROR, str(rnd["error"].get("message", ""))))
        span.end(end_time=r_start + int(float(rnd.get("seconds") or 0.0) * _NS))
        parents[rnd.get("index")] = set_span_in_context(span)
    for rec in trace.steps:
        s_start = int((rec.start or trace.created) * _NS)
        s_end = int((rec.end or rec.start or trace.created) * _NS)
        attrs = _clean({
            "vischain.step": rec.step,
            "vischain.tool": rec.tool,
            "vischain.line": rec.line,
            "vischain.text": rec.text,
            "vischain.status": rec.status,
            "vischain.batch_size": rec.batch_size,
            "vischain.duration_s": rec.duration,
            "vischain.deps": rec.deps,
            "vischain.output": (rec.output or {}).get("text"),
            "vischain.error_code": (rec.error or {}).get("code"),
            **{f"vischain.meta.{k}": v for k, v in rec.meta.items()},
        })  # fmt: skip
        parent = parents.get(rec.meta.get("round"), context)
        span = tracer.start_span(f"vischain.step {rec.tool or 'value'}", context=parent,
                                 start_time=s_start, attributes=attrs)  # fmt: skip
        if rec.status == StepStatus.ERROR:
            span.set_status(Status(StatusCode.ERROR, (rec.error or {}).get("message", "")))
        span.end(end_time=max(s_end, s_start))
    if trace.error:
        root.set_status(Status(StatusCode.ERROR, str(trace.error.get("message", ""))))
    root.end(end_time=max(end, start))
