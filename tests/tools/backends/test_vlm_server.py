"""OpenAIVisionBackend against a real vLLM server (CPU build) serving a tiny random-weight
LLaVA, plus its error paths (no server, a server that never answers, a wrong model name, a
request the server rejects). No mocks: every request goes over HTTP to a real server.

The vLLM venv (.venv-vllm, from scripts/install_vllm_cpu.sh) is required; without it these
tests fail rather than skip. One server per module (start-up takes 30-80 s here).
"""

from __future__ import annotations

import http.server
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.backends import CPU, noise_image
from tests.support.tiny_vlm import SERVED_NAME, VLLM_ARGS, build_tiny_llava
from tests.support.vllm_server import VllmServer, free_port, vllm_python, vllm_server
from tools.backends import backend_class
from tools.backends.vlm import LlavaBackend
from tools.backends.vlm_server import OpenAIVisionBackend, server_url
from tools.errors import ModelError
from tools.pool import ModelPool
from tools.settings import ModelSettings, ModelSpec

IMAGES = [noise_image(k) for k in range(6)]
QUESTIONS = ["What is it?", "How many?", "Is it red?", "Where?", "Who?", "Why?"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return build_tiny_llava(tmp_path_factory.mktemp("tiny-llava") / "model")


@pytest.fixture(scope="module")
def vllm_llava(model_dir: Any) -> Iterator[VllmServer]:
    if vllm_python() is None:
        pytest.fail("vLLM is not installed in .venv-vllm: run scripts/install_vllm_cpu.sh")
    with vllm_server(
        model_dir, served_model_name=SERVED_NAME, extra_args=VLLM_ARGS, timeout=300
    ) as running:
        yield running


def _spec(url: str, **options: Any) -> ModelSpec:
    return ModelSpec(family="openai_vlm", model=SERVED_NAME, options={"base_url": url, **options})


@pytest.fixture(scope="module")
def vlm(vllm_llava: VllmServer, settings: ModelSettings) -> Iterator[OpenAIVisionBackend]:
    backend = OpenAIVisionBackend.load(_spec(vllm_llava.base_url), CPU, settings)
    yield backend
    backend.unload()


# --- configuration (no server needed) --------------------------------------------------------


def test_registry_resolves_the_family() -> None:
    assert backend_class("openai_vlm") is OpenAIVisionBackend
    assert OpenAIVisionBackend.supports_pointing is False


def test_server_url_normalisation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VISCHAIN_VLM_URL", raising=False)
    assert server_url(ModelSpec(family="openai_vlm")) is None
    assert server_url(_spec("http://gpu:8000")) == "http://gpu:8000/v1"
    assert server_url(_spec("http://gpu:8000/v1/")) == "http://gpu:8000/v1"
    assert server_url(_spec("https://host/api/openai/v1")) == "https://host/api/openai/v1"
    monkeypatch.setenv("VISCHAIN_VLM_URL", "http://127.0.0.1:9/")
    assert server_url(ModelSpec(family="openai_vlm")) == "http://127.0.0.1:9/v1"
    assert server_url(_spec("http://other:1")) == "http://other:1/v1"  # options win


def test_locate_needs_a_url_and_never_connects(
    settings: ModelSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VISCHAIN_VLM_URL", raising=False)
    missing = OpenAIVisionBackend.locate(ModelSpec(family="openai_vlm", model="m"), settings)
    assert not missing.present and "VISCHAIN_VLM_URL" in missing.hint
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    located = OpenAIVisionBackend.locate(_spec(url), settings)
    assert located.present and located.where == url + "/v1"
    assert OpenAIVisionBackend.estimate_bytes(_spec(url), settings) == 0


def test_load_fails_clearly_when_no_server_runs(settings: ModelSettings) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ModelError, match=r"did not answer GET /models"):
        OpenAIVisionBackend.load(_spec(url, timeout=5), CPU, settings)


class _Silent(http.server.BaseHTTPRequestHandler):
    """Accepts the connection, then says nothing for longer than the client waits."""

    def do_GET(self) -> None:
        time.sleep(3)

    def log_message(self, *args: Any) -> None:
        pass


def test_load_gives_up_after_the_timeout(settings: ModelSettings) -> None:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Silent)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        with pytest.raises(ModelError, match=r"within 1 s"):  # it gave up, named the limit
            OpenAIVisionBackend.load(_spec(url, timeout=1), CPU, settings)
    finally:
        httpd.shutdown()
        httpd.server_close()


# --- against the tiny LLaVA on vLLM ----------------------------------------------------------


def test_load_checks_the_served_model(vllm_llava: VllmServer, settings: ModelSettings) -> None:
    with pytest.raises(ModelError, match=rf"does not serve|serves: {SERVED_NAME}"):
        OpenAIVisionBackend.load(
            ModelSpec(
                family="openai_vlm",
                model="no-such-model",
                options={"base_url": vllm_llava.base_url},
            ),
            CPU,
            settings,
        )
    # without a model name the only served model is used
    anonymous = ModelSpec(family="openai_vlm", options={"base_url": vllm_llava.base_url})
    backend = OpenAIVisionBackend.load(anonymous, CPU, settings)
    try:
        assert backend.model == SERVED_NAME
        assert backend.describe()["device"] == vllm_llava.base_url
    finally:
        backend.unload()


def test_answer_and_caption_return_strings(vlm: OpenAIVisionBackend) -> None:
    requests = list(zip(IMAGES[:3], QUESTIONS[:3], strict=True))
    answers = vlm.answer(requests, max_new_tokens=6)
    assert len(answers) == 3 and all(isinstance(a, str) for a in answers)
    assert all(a == a.strip() for a in answers) and any(answers)
    assert vlm.answer(requests, max_new_tokens=6) == answers  # temperature 0
    captions = vlm.caption(IMAGES[:2], max_new_tokens=6)
    assert len(captions) == 2 and all(isinstance(c, str) for c in captions)
    assert vlm.answer([], max_new_tokens=4) == []


def test_counts_are_answered_under_the_number_grammar(vlm: OpenAIVisionBackend) -> None:
    """Random weights write noise; a pair flagged as a number is answered under the grammar
    of its form (vLLM's structured outputs): a count is digits, any number perhaps has a
    decimal part; the others are as unflagged."""
    requests = list(zip(IMAGES[:3], QUESTIONS[:3], strict=True))
    free = vlm.answer(requests, max_new_tokens=6)
    assert not any(re.fullmatch(r"\d+(\.\d+)?", a) for a in free)
    answers = vlm.answer(requests, max_new_tokens=6, numbers=[None, "whole", True])
    assert answers[0] == free[0]
    assert answers[1].isdigit() and re.fullmatch(r"\d+(\.\d*)?", answers[2]), answers


def test_the_image_reaches_the_model_as_its_image_tokens(
    vlm: OpenAIVisionBackend, model_dir: Any, settings: ModelSettings
) -> None:
    """The server counts exactly the prompt tokens transformers builds for the same chat:
    the template's text plus the 16 image tokens the CLIP tower yields for the picture."""
    local = LlavaBackend.load(ModelSpec(family="llava", model=str(model_dir)), CPU, settings)
    question = "What color is the car?"
    prompt = local.chat_prompt(local.question_prompt(question))
    expected = local.processor(images=[IMAGES[0].pil], text=[prompt], return_tensors="pt")
    image_tokens = int((expected["input_ids"] == local.model.config.image_token_id).sum())
    assert image_tokens == 16
    before = vlm.stats["prompt_tokens"]
    vlm.answer([(IMAGES[0], question)], max_new_tokens=2)
    assert vlm.stats["prompt_tokens"] - before == expected["input_ids"].shape[1]


def test_requests_run_concurrently_and_bounded(
    vllm_llava: VllmServer, vlm: OpenAIVisionBackend, settings: ModelSettings
) -> None:
    """Requests of a batch are in flight together, never more than max_concurrency. Wall time is
    not asserted: a tiny model answers in ~40 ms, mostly HTTP and the server's per-request
    image processing, so concurrency gains nothing measurable here (it does on a GPU)."""
    requests = list(zip(IMAGES, QUESTIONS, strict=True))
    vlm.stats["max_in_flight"] = 0
    answers = vlm.answer(requests, max_new_tokens=8)
    assert len(answers) == len(requests)
    # more than one request was in flight at once (how many overlap depends on the machine's
    # load: a quick answer can come back before the last request is sent)
    assert 1 < vlm.stats["max_in_flight"] <= len(requests)
    assert answers[:2] == vlm.answer(requests[:2], max_new_tokens=8)  # order kept

    narrow = OpenAIVisionBackend.load(_spec(vllm_llava.base_url, max_concurrency=2), CPU, settings)
    try:
        assert narrow.answer(requests, max_new_tokens=4) == vlm.answer(requests, max_new_tokens=4)
        assert narrow.stats["max_in_flight"] <= 2  # the bound holds
    finally:
        narrow.unload()


def test_token_limit(vlm: OpenAIVisionBackend) -> None:
    requests = list(zip(IMAGES[:4], QUESTIONS[:4], strict=True))
    for limit in (1, 5):
        before = vlm.stats["generated_tokens"]
        vlm.answer(requests, max_new_tokens=limit)
        generated = vlm.stats["generated_tokens"] - before
        assert len(requests) <= generated <= len(requests) * limit
    with pytest.raises(ValueError):
        vlm.answer(requests, max_new_tokens=0)


def test_each_image_is_encoded_once(vllm_llava: VllmServer, tmp_path: Any) -> None:
    spec = _spec(vllm_llava.base_url)
    pool = ModelPool(ModelSettings(cache_dir=tmp_path, roles={"vlm": [spec]}))
    backend = pool.get("vlm")
    try:
        assert isinstance(backend, OpenAIVisionBackend)
        backend.answer([(IMAGES[0], "a?"), (IMAGES[0], "b?"), (IMAGES[1], "c?")], max_new_tokens=2)
        backend.caption([IMAGES[1]], max_new_tokens=2)
        assert backend.stats["image_encoder"] == 2
    finally:
        pool.clear()


def test_a_request_the_server_rejects_is_a_model_error(vlm: OpenAIVisionBackend) -> None:
    # far more tokens than the served context (1024) allows
    with pytest.raises(ModelError, match=SERVED_NAME):
        vlm.answer([(IMAGES[0], "What?")], max_new_tokens=5000)
    # the backend still works afterwards
    assert len(vlm.answer([(IMAGES[0], "What?")], max_new_tokens=2)) == 1
