"""The HTTP service on Ray Serve (orchestrator.service), driven with httpx over real HTTP."""

from __future__ import annotations

import base64
import io
import json

import httpx
import pytest

from tests.support.ray_cluster import free_port, local_ray
from tools.backends.clip import OpenClipBackend
from tools.backends.llm_local import LlamaCppBackend

pytestmark = pytest.mark.server

TOKEN = "s3cret-token"
PROGRAM = "ANSWER0=Similarity(image=IMAGE, text='a photo of a cat')"


def png(name: str = "sample:chelsea") -> bytes:
    from tools.convert import to_image

    buffer = io.BytesIO()
    to_image(name).pil.resize((64, 48)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory):
    from orchestrator import Config
    from orchestrator.service import start

    root = tmp_path_factory.mktemp("service")
    port = free_port()
    with local_ray() as address:
        config = Config(
            models={
                "profile": "offline",
                "roles": {
                    "clip": [OpenClipBackend.tiny_spec(root / "clip")],
                    "llm": [LlamaCppBackend.tiny_spec(root / "llm")],
                },
                "cache_dir": root / "cache",
                "serve": {"address": address, "app": "vcservice", "num_cpus": 0.25},
            },
            planner={
                "max_tokens": 48,
                "grammar": False,
                "examples": 0,
                "fallback": "ANSWER0=Similarity(image=IMAGE, text={instruction})",
            },
            serve={
                "port": port,
                "auth_token": TOKEN,
                "max_request_mb": 0.5,
                "roles": ["clip", "llm"],
                "runs_dir": root / "runs",
            },
            plugins=False,
        )
        url = start(config)
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=300, trust_env=False
        ) as client:
            yield client


def test_execute_with_base64_returns_the_answer_and_its_trace(service: httpx.Client) -> None:
    body = {"program": PROGRAM, "images": {"IMAGE": base64.b64encode(png()).decode()}}
    reply = service.post("/execute", json=body)
    assert reply.status_code == 200, reply.text
    data = reply.json()
    assert data["ok"] and isinstance(float(data["answer"]), float), data

    trace = service.get(data["trace"])
    assert trace.status_code == 200
    steps = [r for r in trace.json()["records"] if r["type"] == "step"]
    assert [s["tool"] for s in steps] == ["Similarity"] and steps[0]["status"] == "ok"
    page = service.get(data["page"])
    assert page.status_code == 200 and "Similarity" in page.text
    assert page.headers["content-type"].startswith("text/html")


def test_execute_with_a_multipart_upload(service: httpx.Client) -> None:
    reply = service.post(
        "/execute", data={"program": PROGRAM}, files={"IMAGE": ("cat.png", png(), "image/png")}
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["ok"]


def test_answers_json_has_no_word_for_are_sent_as_text(service: httpx.Client) -> None:
    """An infinite number and a lone surrogate (from an escape in a Python program's
    string) are answers like any other: 200 with the answer, its trace and its page."""
    for program, answer in [
        ("A=Eval('1e308 * 10')", "inf"),
        ("def execute_command():\n    return 'a\\ud800b'\n", "a\ud800b"),
    ]:
        reply = service.post("/execute", json={"program": program})
        assert reply.status_code == 200, reply.text
        data = reply.json()
        assert data["ok"] and data["answer"] == answer, data["error"]
        assert service.get(data["trace"]).status_code == 200
        assert service.get(data["page"]).status_code == 200


def test_a_reply_renders_what_json_cannot_hold() -> None:
    from orchestrator.service import Reply

    content = {"n": [float("inf"), -float("inf"), 2.0], "s": "x\ud800", "d": {"v": float("nan")}}
    assert json.loads(Reply(content).body) == {
        "n": ["inf", "-inf", 2.0],
        "s": "x\ud800",
        "d": {"v": "nan"},
    }


def test_bad_images_and_programs_are_typed_errors(service: httpx.Client) -> None:
    garbage = {"program": PROGRAM, "images": {"IMAGE": base64.b64encode(b"not an image").decode()}}
    data = service.post("/execute", json=garbage).json()
    assert not data["ok"] and data["error"]["code"] == "bad-input"
    broken = {
        "program": "ANSWER0=Nope(image=IMAGE)",
        "images": {"IMAGE": base64.b64encode(png()).decode()},
    }
    data = service.post("/execute", json=broken).json()
    assert not data["ok"] and data["error"]["code"] == "unknown-tool"
    bad = service.post("/execute", json={"program": PROGRAM, "images": {"IMAGE": "%%%"}})
    assert bad.status_code == 400 and "base64" in bad.json()["detail"]
    deep = service.post(
        "/execute", content=b"[" * 100_000, headers={"content-type": "application/json"}
    )
    assert deep.status_code == 400 and "nested too deeply" in deep.json()["detail"]


def test_run_plans_with_the_served_llm(service: httpx.Client) -> None:
    body = {"instruction": "a cat", "images": {"IMAGE": base64.b64encode(png()).decode()}}
    reply = service.post("/run", json=body, timeout=1200)  # an LLM on a busy shared CPU
    assert reply.status_code == 200, reply.text
    data = reply.json()
    assert data["ok"], data  # the planned program, or the fallback when planning failed
    records = service.get(data["trace"]).json()["records"]
    planning = [r for r in records if r["type"] == "planning"]
    assert planning, "the planner's rounds are in the trace"


def test_tools_lists_what_the_served_roles_allow(service: httpx.Client) -> None:
    tools = {t["name"]: t for t in service.get("/tools").json()}
    assert tools["Similarity"]["available"] is True
    assert tools["Loc"]["available"] is False and "detector" in tools["Loc"]["reason"]


def test_requests_without_the_token_are_refused(service: httpx.Client) -> None:
    url = str(service.base_url)
    with httpx.Client(base_url=url, timeout=60, trust_env=False) as anonymous:
        assert anonymous.get("/tools").status_code == 401
        assert anonymous.post("/execute", json={"program": PROGRAM}).status_code == 401
        wrong = anonymous.get("/tools", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401


def test_oversized_upload_is_refused_with_413(service: httpx.Client) -> None:
    big = b"\0" * (600 * 1024)  # over max_request_mb = 0.5
    reply = service.post("/execute", data={"program": PROGRAM}, files={"IMAGE": ("big.png", big)})
    assert reply.status_code == 413
    assert "too large" in reply.json()["detail"] and "0.5 MB" in reply.json()["detail"]


def test_runs_are_reached_only_by_their_id(service: httpx.Client) -> None:
    assert service.get("/runs/../../etc/passwd").status_code == 404
    assert service.get("/runs/" + "0" * 32).status_code == 404
    data = service.post(
        "/execute", json={"program": PROGRAM, "images": {"IMAGE": base64.b64encode(png()).decode()}}
    ).json()
    assert service.get(f"/runs/{data['run_id']}/..%2F..%2Fsecret").status_code == 404
