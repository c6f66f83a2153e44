"""OpenTelemetry export: one span per run, per planning round, per agent round and per
step."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from orchestrator import Config, Orchestrator
from tests.support.scripted_llm import ScriptedLLM


def test_runs_export_spans_with_the_trace_attributes(tmp_path) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    config = Config(models={"profile": "offline", "cache_dir": tmp_path}, plugins=False)
    orch = Orchestrator(config, tracer=provider.get_tracer("test"))
    orch.pool.provide(
        "llm",
        ScriptedLLM(
            [
                "OBJ0=Nope(image=IMAGE)\nRESULT=OBJ0\n",
                "OBJ0=FaceDet(image=IMAGE)\nN=Count(object=OBJ0)\nRESULT=N\n",
            ]
        ),
    )
    result = orch.run("How many faces?", image="sample:astronaut")
    assert result.ok and result.output == 1
    spans = exporter.get_finished_spans()
    names = [s.name for s in spans]
    assert names.count("vischain.run") == 1
    assert names.count("vischain.plan") == 2  # the first try and one repair
    steps = [s for s in spans if s.name.startswith("vischain.step")]
    assert {s.attributes["vischain.step"] for s in steps} == {"OBJ0", "N", "RESULT"}
    run = next(s for s in spans if s.name == "vischain.run")
    [round_] = [s for s in spans if s.name == "vischain.round"]  # the agent loop's one round
    assert round_.parent.span_id == run.context.span_id
    assert round_.attributes["vischain.round"] == 1 and round_.attributes["vischain.accepted"]
    assert round_.attributes["vischain.decision"] == "ANSWER"
    assert all(s.parent is not None and s.parent.span_id == round_.context.span_id for s in steps)
    face = next(s for s in steps if s.attributes["vischain.step"] == "OBJ0")
    assert face.attributes["vischain.tool"] == "FaceDet" and face.attributes["vischain.line"] == 1
    assert face.attributes["vischain.status"] == "ok" and face.end_time >= face.start_time
    plans = [s for s in spans if s.name == "vischain.plan"]
    assert (
        plans[0].attributes["vischain.errors"] == 1 and plans[1].attributes["vischain.errors"] == 0
    )
    failed = orch.execute("A=Vqa(image=IMAGE, question='?')", image="sample:coffee")
    assert not failed.ok
    spans = exporter.get_finished_spans()
    last_step = [s for s in spans if s.name.startswith("vischain.step")][-1]
    assert last_step.status.status_code.name == "ERROR"
    last_run = [s for s in spans if s.name == "vischain.run"][-1]
    assert last_step.parent.span_id == last_run.context.span_id  # no rounds: under the run
    orch.close()
