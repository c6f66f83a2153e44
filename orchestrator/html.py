"""The trace page: one self-contained HTML file (inline CSS, SVG and images; no network).

It shows the instruction, the planning rounds (collapsed), the program with line numbers,
the DAG as an inline SVG, and one card per step in DAG order with its arguments (linked to
the steps that produced them), its output drawn for its type, timings, batch size, cache
hits, device, and errors in red. A failed run still renders everything that finished.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import networkx as nx

if TYPE_CHECKING:
    from .trace import StepRecord, Trace

STATUS_COLOURS = {
    "ok": "#2e7d32",
    "error": "#c62828",
    "skipped": "#9e9e9e",
    "running": "#f9a825",
    "pending": "#bdbdbd",
    "cached": "#1565c0",
}

CSS = (Path(__file__).parent / "trace.css").read_text(encoding="utf-8")


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _image_tag(trace_dir: Path, trace: Trace, artifact: str | None, alt: str) -> str:
    if not artifact:
        return ""
    for base in (trace_dir, trace.directory):
        if base is not None and (Path(base) / artifact).is_file():
            data = base64.b64encode((Path(base) / artifact).read_bytes()).decode("ascii")
            return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'
    return ""


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
            if d in names:
                graph.add_edge(d, s.step)
    return graph


def dag_svg(steps: list[StepRecord]) -> str:
    """The data-flow graph as an inline SVG: one column per dependency depth."""
    if not steps:
        return ""
    graph = _graph(steps)
    by_name = {s.step: s for s in steps}
    layers = [
        sorted(layer, key=lambda n: by_name[n].index) for layer in nx.topological_generations(graph)
    ]
    node_w, node_h, gap_x, gap_y = 150, 34, 60, 14
    pos: dict[str, tuple[float, float]] = {}
    for i, layer in enumerate(layers):
        for j, name in enumerate(layer):
            pos[name] = (10 + i * (node_w + gap_x), 10 + j * (node_h + gap_y))
    width = 20 + len(layers) * (node_w + gap_x) - gap_x
    height = 20 + max(len(layer) for layer in layers) * (node_h + gap_y) - gap_y
    parts = [
        f'<svg class="dag" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="program graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" '
        'markerHeight="6" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
        'fill="#888"/></marker></defs>',
    ]
    for a, b in graph.edges:
        x0, y0 = pos[a]
        x1, y1 = pos[b]
        parts.append(
            f'<line x1="{x0 + node_w}" y1="{y0 + node_h / 2}" x2="{x1}" y2="{y1 + node_h / 2}" '
            'stroke="#888" stroke-width="1.2" marker-end="url(#arrow)"/>'
        )
    for name, (x, y) in pos.items():
        rec = by_name[name]
        colour = STATUS_COLOURS.get(rec.status, "#bdbdbd")
        label = f"{name} = {rec.tool or '·'}"
        if len(label) > 22:
            label = label[:21] + "…"
        parts.append(
            f'<a href="#step-{_e(name)}"><rect x="{x}" y="{y}" width="{node_w}" height="{node_h}" '
            f'rx="6" fill="#fff" stroke="{colour}" stroke-width="2"/>'
            f'<text x="{x + 8}" y="{y + 21}">{_e(label)}</text>'
            f"<title>{_e(rec.text)} [{_e(rec.status)}]</title></a>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _program(trace: Trace) -> str:
    if not trace.program:
        return ""
    by_line: dict[int, StepRecord] = {}
    for s in trace.steps:
        by_line.setdefault(s.line, s)
    bad = {e.get("line") for e in (trace.error or {}).get("errors", [])}
    if trace.error and trace.error.get("line"):
        bad.add(trace.error.get("line"))
    rows = []
    for n, text in enumerate(trace.program.splitlines(), start=1):
        cls = ' class="bad"' if n in bad else ""
        body = _e(text)
        if n in by_line:
            body = f'<a href="#step-{_e(by_line[n].step)}">{body}</a>'
        rows.append(f'<span{cls}><span class="ln">{n}</span>{body}</span>')
    return '<pre class="program">' + "\n".join(rows) + "</pre>"


def _planning(trace: Trace) -> str:
    if not trace.planning:
        return ""
    out = ["<section><h2>Planning</h2>"]
    for i, rec in enumerate(trace.planning):
        kind = rec.get("kind", "round")
        title = f"{kind} {i + 1}"
        facts = [
            f"{k}: {rec[k]}"
            for k in ("model", "prompt_tokens", "completion_tokens", "seconds")
            if rec.get(k) is not None
        ]
        if facts:
            title += " — " + ", ".join(facts)
        body = []
        for key in ("prompt", "output", "errors"):
            if rec.get(key):
                value = rec[key]
                text = value if isinstance(value, str) else json.dumps(value, indent=2)
                body.append(f"<h4>{_e(key)}</h4><pre>{_e(text)}</pre>")
        out.append(f"<details><summary>{_e(title)}</summary>{''.join(body)}</details>")
    out.append("</section>")
    return "".join(out)


def _card(trace_dir: Path, trace: Trace, rec: StepRecord) -> str:
    colour = STATUS_COLOURS.get(rec.status, "#bdbdbd")
    badges = f'<span class="badge" style="background:{colour}">{_e(rec.status)}</span>'
    if rec.meta.get("cache_hit"):
        badges += f'<span class="badge" style="background:{STATUS_COLOURS["cached"]}">cached</span>'
    rows = []
    for a in rec.args:
        src = f' <a href="#step-{_e(a.source)}">← {_e(a.source)}</a>' if a.source else ""
        rows.append(f"<tr><td><code>{_e(a.name)}</code></td><td>{_e(a.summary)}{src}</td></tr>")
    args = f'<table class="args">{"".join(rows)}</table>' if rows else ""
    out = ""
    if rec.output:
        pic = _image_tag(trace_dir, trace, rec.artifact, rec.step)
        out = (
            f'<div class="out">{pic}<div class="text">{_e(rec.output.get("text", ""))}</div></div>'
        )
    err = ""
    if rec.error:
        kind, code = rec.error.get("type", "Error"), rec.error.get("code")
        err = f'<div class="err">{_e(kind)} [{_e(code)}]: {_e(rec.error.get("message"))}</div>'
    facts = []
    if rec.duration is not None:
        facts.append(f"{rec.duration * 1000:.1f} ms")
    if rec.start is not None:
        facts.append(f"started +{(rec.start - trace.created) * 1000:.0f} ms")
    if rec.batch_size > 1:
        facts.append(f"batch of {rec.batch_size}")
    for key in ("device", "model", "backend", "warning", "note"):
        if rec.meta.get(key):
            facts.append(f"{key}: {rec.meta[key]}")
    return (
        f'<div class="card {_e(rec.status)}" id="step-{_e(rec.step)}" data-step="{_e(rec.step)}">'
        f"<h3>{_e(rec.step)} = {_e(rec.tool or 'value')} {badges}</h3>"
        f"<div>line {rec.line}: <code>{_e(rec.text)}</code></div>{args}{out}{err}"
        f'<div class="facts">{" · ".join(_e(f) for f in facts)}</div></div>'
    )


def render_html(trace: Trace, trace_dir: Path) -> str:
    """The whole page for ``trace``; pictures are read from ``trace_dir`` and inlined."""
    status = "failed" if trace.error else "ok" if trace.finished else "running"
    duration = f"{trace.duration:.2f} s" if trace.duration is not None else "—"
    if trace.error:
        answer = f'<div class="answer error">{_e(trace.error.get("message"))}</div>'
    elif trace.result is not None:
        answer = f'<div class="answer">{_e(trace.result.get("text"))}</div>'
    else:
        answer = ""
    inputs = "".join(
        f"<figure>{_image_tag(trace_dir, trace, r.artifact, r.name)}<figcaption>{_e(r.name)}: "
        f"{_e(r.summary.get('text'))}</figcaption></figure>"
        for r in trace.inputs
    )
    cards = "".join(_card(trace_dir, trace, s) for s in dag_order(trace.steps))
    n_steps = len(trace.steps)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>VisChain trace {_e(trace.run_id)}</title>
<style>{CSS}</style></head><body>
<header><h1>{_e(trace.instruction or "Program run")}</h1>
<div class="meta">run {_e(trace.run_id)} · {status} · {duration} · {n_steps} steps</div></header>
<main>
<section><h2>Answer</h2>{answer}</section>
{f'<section><h2>Inputs</h2><div class="inputs">{inputs}</div></section>' if inputs else ""}
{_planning(trace)}
<section><h2>Program</h2>{_program(trace)}</section>
<section><h2>Graph</h2>{dag_svg(trace.steps)}</section>
<section><h2>Steps</h2><div class="cards">{cards}</div></section>
</main></body></html>
"""
