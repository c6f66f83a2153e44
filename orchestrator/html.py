"""The trace page: what :mod:`orchestrator.writer` puts in ``index.html``.

One self-contained HTML file (inline CSS, SVG and images; no network) from the template
``templates/trace.html.j2``: the instruction, the answer, the inputs, the planning rounds
(collapsed), the agent loop's rounds (one section each, the returned one open), the
program with line numbers, the DAG as an inline SVG (an agent run's: the returned round's),
and one card per step in DAG order (grouped by round) with its arguments (linked to the
steps that produced them), its output drawn for its type, timings, batch size, cache hits,
device, and errors in red. A failed run still renders everything that finished.

This module turns a :class:`~orchestrator.trace.Trace` into the page's view model
(:class:`TracePage`, plain values; layout computed here) and renders it; it reads no files —
the writer hands it the pictures as base64 PNG data keyed by artifact name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from .templating import render_template
from .trace import InputRecord, StepRecord, StepStatus, Trace

STATUSES = frozenset(str(s) for s in StepStatus)
NODE_W, NODE_H, GAP_X, GAP_Y = 150, 34, 60, 14


def dag_order(steps: list[StepRecord]) -> list[StepRecord]:
    """Steps in a topological order of their data flow (source order breaks ties)."""
    graph = _graph(steps)
    by_name = {s.step: s for s in steps}
    order = nx.lexicographical_topological_sort(graph, key=lambda n: by_name[n].index)
    return [by_name[n] for n in order]


def _graph(steps: list[StepRecord]) -> nx.DiGraph:
    graph = nx.DiGraph()
    names = {s.step for s in steps}
    for s in steps:
        graph.add_node(s.step)
        for d in s.deps:
            if d in names and d != s.step:
                graph.add_edge(d, s.step)
    return graph


def _status(value: Any) -> str:
    """A status as a CSS class: one of :data:`STATUSES` or 'unknown' (traces are untrusted)."""
    text = str(value)
    return text if text in STATUSES else "unknown"


@dataclass(frozen=True)
class Dag:
    """The data-flow graph laid out in columns by dependency depth (pixels)."""

    width: int
    height: int
    nodes: list[dict[str, Any]]
    edges: list[dict[str, float]]
    node_w: int = NODE_W
    node_h: int = NODE_H


def dag_layout(steps: list[StepRecord]) -> Dag | None:
    """Node boxes and edge lines for the DAG (None without steps, or when it has a cycle)."""
    if not steps:
        return None
    graph = _graph(steps)
    if not nx.is_directed_acyclic_graph(graph):  # only a tampered trace has one
        return None
    by_name = {s.step: s for s in steps}
    layers = [
        sorted(layer, key=lambda n: by_name[n].index) for layer in nx.topological_generations(graph)
    ]
    pos: dict[str, tuple[int, int]] = {}
    for i, layer in enumerate(layers):
        for j, name in enumerate(layer):
            pos[name] = (10 + i * (NODE_W + GAP_X), 10 + j * (NODE_H + GAP_Y))
    nodes = []
    for name, (x, y) in pos.items():
        rec = by_name[name]
        label = f"{name} = {rec.tool or '·'}"
        nodes.append({
            "step": name, "x": x, "y": y, "status": _status(rec.status),
            "label": label if len(label) <= 22 else label[:21] + "…",
            "title": f"{rec.text} [{rec.status}]",
        })  # fmt: skip
    edges = [
        {"x1": pos[a][0] + NODE_W, "y1": pos[a][1] + NODE_H / 2,
         "x2": pos[b][0], "y2": pos[b][1] + NODE_H / 2}
        for a, b in graph.edges
    ]  # fmt: skip
    width = 20 + len(layers) * (NODE_W + GAP_X) - GAP_X
    height = 20 + max(len(layer) for layer in layers) * (NODE_H + GAP_Y) - GAP_Y
    return Dag(width, height, nodes, edges)


@dataclass(frozen=True)
class TracePage:
    """Everything the template shows, as plain values."""

    run_id: str
    title: str
    status: str
    duration: str
    answer: str | None
    error: str | None
    inputs: list[dict[str, Any]] = field(default_factory=list)
    planning: list[dict[str, Any]] = field(default_factory=list)
    program: list[dict[str, Any]] = field(default_factory=list)
    dag: Dag | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    rounds: list[dict[str, Any]] = field(default_factory=list)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _program_rows(trace: Trace) -> list[dict[str, Any]]:
    if not trace.program:
        return []
    by_line: dict[int, StepRecord] = {}
    for s in trace.steps:
        by_line.setdefault(s.line, s)
    error = trace.error or {}
    bad = {e.get("line") for e in error.get("errors", []) if isinstance(e, dict)}
    if error.get("line"):
        bad.add(error.get("line"))
    return [
        {"number": n, "text": text, "bad": n in bad,
         "step": by_line[n].step if n in by_line else None}
        for n, text in enumerate(trace.program.splitlines(), start=1)
    ]  # fmt: skip


def _planning_rounds(trace: Trace) -> list[dict[str, Any]]:
    rounds = []
    for i, rec in enumerate(trace.planning):
        title = f"{rec.get('kind', 'round')} {i + 1}"
        facts = [
            f"{k}: {rec[k]}"
            for k in ("model", "prompt_tokens", "completion_tokens", "seconds")
            if rec.get(k) is not None
        ]
        if facts:
            title += " — " + ", ".join(facts)
        parts = []
        for key in ("prompt", "output", "errors"):
            if rec.get(key):
                value = rec[key]
                text = value if isinstance(value, str) else json.dumps(value, indent=2, default=str)
                parts.append((key, text))
        rounds.append({"title": title, "parts": parts})
    return rounds


def _agent_rounds(trace: Trace) -> list[dict[str, Any]]:
    """The agent loop's rounds: title, program, findings, observation, decision, prompt."""
    rounds = []
    for rec in trace.rounds:
        decision = rec.get("decision") if isinstance(rec.get("decision"), dict) else {}
        issues = [i for i in rec.get("issues") or [] if isinstance(i, dict)]
        found = ", ".join(_text(i.get("check")) for i in issues) or "no findings"
        action = decision.get("action") or decision.get("stop") or "—"
        title = (
            f"round {rec.get('index')} · {rec.get('kind')} · {found} → {action}"
            f" · {rec.get('tool_calls', 0)} tool calls · {rec.get('seconds', 0)} s"
        )
        error = rec.get("error") if isinstance(rec.get("error"), dict) else None
        shown = {k: v for k, v in decision.items() if k != "prompt"}
        rounds.append({
            "index": _text(rec.get("index")), "title": title,
            "accepted": rec.get("accepted") is True, "program": _text(rec.get("program")),
            "steps": [_text(n) for n in rec.get("steps") or []],
            "answer": None if rec.get("answer") is None else _text(rec.get("answer")),
            "error": f"[{error.get('code')}] {error.get('message')}" if error else None,
            "issues": [f"{_text(i.get('check'))}: {_text(i.get('message'))}" for i in issues],
            "observation": _text(rec.get("observation")),
            "decision": json.dumps(shown, indent=2, default=str) if shown else "",
            "prompt": _text(rec.get("prompt") or decision.get("prompt")),
        })  # fmt: skip
    return rounds


def _card(trace: Trace, rec: StepRecord, pictures: Mapping[str, str]) -> dict[str, Any]:
    error = None
    if rec.error:
        kind, code = rec.error.get("type", "Error"), rec.error.get("code")
        error = f"{kind} [{code}]: {rec.error.get('message')}"
    facts = []
    if isinstance(rec.duration, (int, float)):
        facts.append(f"{rec.duration * 1000:.1f} ms")
    if isinstance(rec.start, (int, float)):
        facts.append(f"started +{(rec.start - trace.created) * 1000:.0f} ms")
    if isinstance(rec.batch_size, int) and rec.batch_size > 1:
        facts.append(f"batch of {rec.batch_size}")
    for key in ("device", "model", "backend", "warning", "note"):
        if rec.meta.get(key):
            facts.append(f"{key}: {rec.meta[key]}")
    return {
        "step": rec.step, "tool": rec.tool or "value", "status": _status(rec.status),
        "cached": bool(rec.meta.get("cache_hit")), "line": rec.line, "text": rec.text,
        "args": [{"name": a.name, "summary": a.summary, "source": a.source} for a in rec.args],
        "output": _text(rec.output.get("text", "")) if rec.output else None,
        "picture": pictures.get(rec.artifact or ""), "error": error, "facts": facts,
        "round": rec.meta.get("round"),
        "strip": _is_video(rec.output),
    }  # fmt: skip


def trace_page(trace: Trace, pictures: Mapping[str, str] | None = None) -> TracePage:
    """The view model of ``trace``'s page; ``pictures`` maps artifact names to base64 PNG."""
    pictures = pictures or {}
    if trace.error:
        answer, error = None, _text(trace.error.get("message"))
    else:
        answer = _text(trace.result.get("text")) if trace.result is not None else None
        error = None
    return TracePage(
        run_id=trace.run_id,
        title=trace.instruction or "Program run",
        status="failed" if trace.error else "ok" if trace.finished else "running",
        duration=f"{trace.duration:.2f} s" if trace.duration is not None else "—",
        answer=answer,
        error=error,
        inputs=[_input(r, pictures) for r in trace.inputs],
        planning=_planning_rounds(trace),
        program=_program_rows(trace),
        dag=dag_layout(_shown_round(trace)),
        steps=[_card(trace, s, pictures) for s in _by_round(trace.steps)],
        rounds=_agent_rounds(trace),
    )


def _shown_round(trace: Trace) -> list[StepRecord]:
    """The steps the graph shows: all of them, or (agent runs) the returned round's."""
    chosen = next((r.get("index") for r in trace.rounds if r.get("accepted") is True), None)
    if chosen is None:
        return trace.steps
    return [s for s in trace.steps if s.meta.get("round") == chosen]


def _by_round(steps: list[StepRecord]) -> list[StepRecord]:
    """Steps in DAG order within each agent round, rounds in order (one group without)."""
    groups: dict[Any, list[StepRecord]] = {}
    for s in steps:
        groups.setdefault(s.meta.get("round"), []).append(s)
    return [s for key in groups for s in _ordered(groups[key])]


def _input(rec: InputRecord, pictures: Mapping[str, str]) -> dict[str, Any]:
    text = _text(rec.summary.get("text"))
    picture = pictures.get(rec.artifact or "")
    return {"name": rec.name, "text": text, "picture": picture, "strip": _is_video(rec.summary)}


def _is_video(summary: Mapping[str, Any] | None) -> bool:
    """Whether a value's picture is a strip of video frames (see render.frame_strip)."""
    return isinstance(summary, Mapping) and summary.get("type") in ("Video", "FrameResults")


def _ordered(steps: list[StepRecord]) -> list[StepRecord]:
    try:
        return dag_order(steps)
    except nx.NetworkXUnfeasible:  # a cycle: only a tampered trace has one
        return sorted(steps, key=lambda s: s.index)


def render_html(trace: Trace, pictures: Mapping[str, str] | None = None) -> str:
    """The whole page for ``trace``; ``pictures`` (artifact name → base64 PNG) are inlined."""
    return render_template("trace.html.j2", page=trace_page(trace, pictures))
