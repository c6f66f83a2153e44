"""Language models behind an OpenAI-compatible HTTP server; vLLM in production.

``spec.model`` is the served model name (empty: the first model the server lists).
Options (``spec.options``): ``base_url`` (else ``$VISCHAIN_LLM_URL``; ``http://host:port``
gets ``/v1`` appended), ``api_key_env`` (name of the variable holding the key, default
``VISCHAIN_LLM_API_KEY``; "EMPTY" when unset), ``timeout`` (seconds per request, 120),
``max_retries`` (2), ``max_concurrency`` (requests in flight from this backend, 8),
``context_length`` (overrides what the server reports) and ``return_token_ids`` (True: ask
vLLM for each sample's token ids so ``n`` samples get exact token counts; set False for
servers that reject unknown fields).

Grammars go in the request body as ``"structured_outputs": {"grammar": GBNF}``, the field
vLLM 0.32 reads; its older ``guided_grammar`` field is silently ignored there, so it is
never sent.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

from ..errors import ModelError
from ..settings import ModelSettings, ModelSpec
from .base import Located, Placement, is_loopback
from .llm import DEFAULT_REQUEST, Completion, LLMBackend, LLMRequest, single

log = logging.getLogger("vischain.models")

URL_ENV = "VISCHAIN_LLM_URL"
KEY_ENV = "VISCHAIN_LLM_API_KEY"
DEFAULT_TIMEOUT = 120.0
DEFAULT_CONCURRENCY = 8
DEFAULT_CONTEXT = 4096
CHARS_PER_TOKEN_ESTIMATE = 3  # errs high (English ~4, code ~3.5), so prompt budgets hold

T = TypeVar("T")


def base_url_for(spec: ModelSpec) -> str | None:
    """The API base (ending in ``/v1`` unless the URL has another path), or None."""
    url = str(spec.options.get("base_url") or os.environ.get(URL_ENV) or "").strip()
    if not url:
        return None
    url = url.rstrip("/")
    if urlsplit(url).path in ("", "/"):
        url += "/v1"
    return url


def _server_root(base_url: str) -> str:
    """Where vLLM's non-OpenAI endpoints (``/tokenize``) live: the base without ``/v1``."""
    return base_url[: -len("/v1")] if base_url.endswith("/v1") else base_url


class OpenAIBackend(LLMBackend):
    """A model served over HTTP. Thread-safe; at most ``max_concurrency`` requests from this
    backend are in flight at once, and :meth:`complete_many` sends its prompts
    concurrently up to that bound."""

    family: ClassVar[str] = "openai"

    def __init__(
        self,
        spec: ModelSpec,
        placement: Placement,
        client: Any,
        model: str,
        context_length: int,
    ) -> None:
        super().__init__(spec, placement)
        self.client = client
        self.model = model
        self.base_url = str(client.base_url).rstrip("/")
        self._context_length = context_length
        self.max_concurrency = max(1, int(spec.options.get("max_concurrency", DEFAULT_CONCURRENCY)))
        self._slots = threading.BoundedSemaphore(self.max_concurrency)
        self._token_ids = bool(spec.options.get("return_token_ids", True))
        self._tokenize_ok: bool | None = None  # unknown until the first count_tokens
        self._stats_lock = threading.Lock()

    # --- finding and loading ---------------------------------------------------------------

    @classmethod
    def locate(cls, spec: ModelSpec, settings: ModelSettings) -> Located:
        """Present when a server URL is configured; whether it answers is load's business
        (locate never touches the network)."""
        url = base_url_for(spec)
        if url is None:
            return Located(
                False,
                hint=f"set options.base_url or ${URL_ENV} to an OpenAI-compatible server "
                "(e.g. `vllm serve MODEL` at http://host:8000/v1)",
            )
        return Located(True, url)

    @classmethod
    def load(cls, spec: ModelSpec, placement: Placement, settings: ModelSettings) -> OpenAIBackend:
        """Connect, check the server answers ``GET /v1/models`` and resolve the model."""
        url = base_url_for(spec)
        if url is None:
            raise ModelError(cls.locate(spec, settings).hint)
        client = cls._client(spec, url)
        try:
            timeout = min(float(spec.options.get("timeout", DEFAULT_TIMEOUT)), 10.0)
            listed = client.with_options(max_retries=0, timeout=timeout)
            models = list(listed.models.list())
        except Exception as exc:
            client.close()
            raise ModelError(
                f"the LLM server at {url} does not answer GET /models "
                f"({type(exc).__name__}: {_message(exc)}); is it running?"
            ) from exc
        ids = [m.id for m in models]
        if not ids:
            client.close()
            raise ModelError(f"the LLM server at {url} serves no models")
        name = spec.model or ids[0]
        if name not in ids:
            client.close()
            raise ModelError(f"the LLM server at {url} does not serve '{name}' (it serves "
                             f"{', '.join(ids)})")  # fmt: skip
        entry = models[ids.index(name)]
        reported = (entry.model_extra or {}).get("max_model_len")
        context = int(spec.options.get("context_length") or reported or DEFAULT_CONTEXT)
        log.info("LLM server %s serves %s (context %d)", url, name, context)
        return cls(spec, placement, client, name, context)

    @staticmethod
    def _client(spec: ModelSpec, url: str) -> Any:
        import openai

        key_env = str(spec.options.get("api_key_env") or KEY_ENV)
        timeout = float(spec.options.get("timeout", DEFAULT_TIMEOUT))
        kwargs: dict[str, Any] = {}
        if is_loopback(url):  # never send loopback traffic through an HTTP(S)_PROXY
            kwargs["http_client"] = openai.DefaultHttpxClient(trust_env=False, timeout=timeout)
        return openai.OpenAI(
            base_url=url,
            api_key=os.environ.get(key_env) or "EMPTY",
            timeout=timeout,
            max_retries=int(spec.options.get("max_retries", 2)),
            **kwargs,
        )

    @classmethod
    def estimate_bytes(cls, spec: ModelSpec, settings: ModelSettings) -> int | None:
        return 0  # the weights live in the server's memory, not ours

    def memory_bytes(self) -> int:
        return 0

    def unload(self) -> None:
        self.client.close()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "server": self.base_url, "served_model": self.model}

    # --- generation --------------------------------------------------------------------------

    @property
    def context_length(self) -> int:
        return self._context_length

    def complete(self, prompt: str, request: LLMRequest = DEFAULT_REQUEST) -> list[Completion]:
        """``POST /v1/completions``: ``n`` samples from one request."""
        body = self._body(request)
        response, seconds = self._request(
            lambda: self.client.completions.create(prompt=prompt, **body)
        )
        return self._completions(response, seconds, [c.text for c in response.choices], request.n)

    def complete_many(
        self, prompts: Sequence[str], request: LLMRequest = DEFAULT_REQUEST
    ) -> list[Completion]:
        """One request per prompt, up to ``max_concurrency`` at once (the server batches
        concurrent requests itself); results in the order of ``prompts``."""
        single(request)
        if not prompts:
            return []

        def one(prompt: str) -> Completion:
            return self.complete(prompt, request)[0]

        if len(prompts) == 1:
            return [one(prompts[0])]
        workers = min(self.max_concurrency, len(prompts))
        with ThreadPoolExecutor(workers, thread_name_prefix="vischain-llm") as pool:
            return list(pool.map(one, prompts))

    def chat(
        self, messages: list[dict[str, str]], request: LLMRequest = DEFAULT_REQUEST
    ) -> list[Completion]:
        """``POST /v1/chat/completions`` with the server's chat template."""
        body = self._body(request)
        msgs: list[Any] = [dict(m) for m in messages]
        response, seconds = self._request(
            lambda: self.client.chat.completions.create(messages=msgs, **body)
        )
        texts = [c.message.content or "" for c in response.choices]
        return self._completions(response, seconds, texts, request.n)

    def count_tokens(self, text: str) -> int:
        """Exact through vLLM's ``POST /tokenize`` (special tokens not added). Servers
        without it (404/405 once) get a rough estimate from then on: one token per
        :data:`CHARS_PER_TOKEN_ESTIMATE` characters, rounded up."""
        if not text:
            return 0
        if self._tokenize_ok is not False:
            import openai

            try:
                result, _ = self._request(
                    lambda: self.client.post(
                        f"{_server_root(self.base_url)}/tokenize",
                        body={"model": self.model, "prompt": text, "add_special_tokens": False},
                        cast_to=object,
                    ),
                    passthrough=(openai.APIStatusError,),
                )
                self._tokenize_ok = True
                return int(result["count"])
            except openai.APIStatusError as exc:
                if exc.status_code not in (404, 405) or self._tokenize_ok:
                    raise _model_error(self.base_url, exc) from exc
                log.info("%s has no /tokenize; estimating token counts", self.base_url)
                self._tokenize_ok = False
        return math.ceil(len(text) / CHARS_PER_TOKEN_ESTIMATE)

    # --- plumbing ----------------------------------------------------------------------------

    def _body(self, request: LLMRequest) -> dict[str, Any]:
        body = {"model": self.model, **sampling_body(request)}
        if body["n"] > 1 and self._token_ids:
            body.setdefault("extra_body", {})["return_token_ids"] = True
        return body

    def _request(
        self, call: Callable[[], T], passthrough: tuple[type[BaseException], ...] = ()
    ) -> tuple[T, float]:
        """Run one HTTP call within the concurrency bound; errors become ModelError with
        the server's own message (e.g. why a grammar was rejected)."""
        import openai

        with self._slots:
            t0 = time.perf_counter()
            try:
                result = call()
            except passthrough:
                raise
            except openai.OpenAIError as exc:
                raise _model_error(self.base_url, exc) from exc
            seconds = time.perf_counter() - t0
        with self._stats_lock:
            self.stats["requests"] += 1
        return result, seconds

    def _completions(
        self, response: Any, seconds: float, texts: list[str], n: int
    ) -> list[Completion]:
        usage = response.usage
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        total = int(getattr(usage, "completion_tokens", 0) or 0)
        choices = sorted(zip(response.choices, texts, strict=True), key=lambda ct: ct[0].index)
        # usage covers all n samples; split it by each sample's token ids where the server
        # returned them, else evenly (exact for n == 1)
        ids = [(c.model_extra or {}).get("token_ids") for c, _ in choices]
        if all(isinstance(i, list) for i in ids):
            counts = [len(i) for i in ids]
        else:
            share, rest = divmod(total, max(1, len(choices)))
            counts = [share + (k < rest) for k in range(len(choices))]
        with self._stats_lock:
            self.stats["completions"] += len(choices)
            self.stats["completion_tokens"] += total
        out = [
            Completion(
                text=text,
                prompt_tokens=prompt_tokens,
                completion_tokens=count,
                seconds=seconds,
                finish_reason=choice.finish_reason,
            )
            for (choice, text), count in zip(choices, counts, strict=True)
        ]
        if len(out) == 1 < n:  # greedy: every sample would be the same
            out *= n
        if len(out) != n:
            raise ModelError(f"the LLM server at {self.base_url} returned {len(out)} "
                             f"samples, {n} were asked for")  # fmt: skip
        return out


def sampling_body(request: LLMRequest) -> dict[str, Any]:
    """The OpenAI-client keyword arguments for ``request`` (without ``model``): sampling
    fields, plus ``extra_body`` with vLLM's ``structured_outputs`` when there is a grammar.
    Greedy requests ask for one sample (vLLM rejects ``n > 1`` with greedy decoding; the
    caller repeats it)."""
    body: dict[str, Any] = {
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "n": 1 if request.greedy else request.n,
    }
    if request.stop:
        body["stop"] = list(request.stop)
    if request.seed is not None:
        body["seed"] = request.seed
    if request.grammar is not None:
        body["extra_body"] = {"structured_outputs": {"grammar": request.grammar}}
    return body


def _message(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return str(exc) or type(exc).__name__


def _model_error(base_url: str, exc: BaseException) -> ModelError:
    status = getattr(exc, "status_code", None)
    if status is not None:
        return ModelError(f"the LLM server at {base_url} rejected the request "
                          f"(HTTP {status}): {_message(exc)}")  # fmt: skip
    return ModelError(f"the LLM server at {base_url} failed: {type(exc).__name__}: "
                      f"{_message(exc)}")  # fmt: skip


__all__ = ["OpenAIBackend", "base_url_for", "sampling_body"]
