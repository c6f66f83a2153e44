"""Any vision-capable chat model behind an OpenAI-compatible server (vLLM in production).

``spec.model`` is the served model name; ``spec.options``:

* ``base_url`` — the server, e.g. ``http://gpu-host:8000/v1`` (a URL without a path gets
  ``/v1``); else ``$VISCHAIN_VLM_URL``.
* ``api_key_env`` — the environment variable holding the key (default
  ``VISCHAIN_VLM_API_KEY``; without it the key is "EMPTY", which vLLM accepts).
* ``timeout`` (seconds, default 60), ``max_concurrency`` (default 8), ``max_retries``
  (default 2), ``max_side`` (downscale images so the longer side is at most this many
  pixels before sending; default: send as is), ``answer_suffix`` / ``caption_prompt``.

Each image travels as a base64 PNG data URL (encoded once per picture through the feature
cache). A batch is sent as concurrent requests from a thread pool bounded by
``max_concurrency``, so the server batches them and a call takes about one request's
latency. Nothing is contacted by :meth:`locate`; :meth:`load` checks that the server
answers ``GET /v1/models`` and serves the model.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

from ..convert import encode_png
from ..errors import ModelError
from ..settings import ModelSettings, ModelSpec
from ..types import Image
from .base import Backend, Located, Placement, is_loopback, token_budgets
from .llm import LLMRequest
from .llm_openai import sampling_body
from .numbers import GRAMMARS, NumberForm, number_form

log = logging.getLogger("vischain.models")

URL_ENV = "VISCHAIN_VLM_URL"
KEY_ENV = "VISCHAIN_VLM_API_KEY"
ANSWER_SUFFIX = "Answer the question using a single word or phrase."
CAPTION_PROMPT = "Provide a one-sentence caption for the provided image."
DEFAULT_TIMEOUT = 60.0
DEFAULT_CONCURRENCY = 8


def server_url(spec: ModelSpec) -> str | None:
    """The configured base URL (options, else the environment), normalized to end in /v1
    when it has no path of its own."""
    raw = spec.options.get("base_url") or os.environ.get(URL_ENV)
    if not raw:
        return None
    parts = urlsplit(str(raw).strip().rstrip("/"))
    path = parts.path if parts.path not in ("", "/") else "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


class OpenAIVisionBackend(Backend):
    """Chat completions with an image part, against an OpenAI-compatible server."""

    family = "openai_vlm"
    supports_pointing: ClassVar[bool] = False
    # answer(..., numbers=...): a count's reply is constrained by a grammar of digits
    answers_numbers: ClassVar[bool] = True
    batch_methods: ClassVar[Mapping[str, int]] = {"answer": 1, "caption": 1}

    def __init__(
        self, spec: ModelSpec, placement: Placement, client: Any, model: str, base_url: str
    ) -> None:
        super().__init__(spec, placement)
        options = spec.options
        self.client = client
        self.model = model
        self.base_url = base_url
        self.max_concurrency = max(1, int(options.get("max_concurrency", DEFAULT_CONCURRENCY)))
        self.max_side = options.get("max_side")
        self.answer_suffix = str(options.get("answer_suffix", ANSWER_SUFFIX))
        self.caption_prompt = str(options.get("caption_prompt", CAPTION_PROMPT))
        self._executor = ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="vlm")
        self._lock = threading.Lock()
        self._in_flight = 0

    # --- finding and loading -----------------------------------------------------------------

    @classmethod
    def locate(cls, spec: ModelSpec, settings: ModelSettings) -> Located:
        url = server_url(spec)
        if url is None:
            return Located(
                False, hint=f"no VLM server configured: set options.base_url or ${URL_ENV}"
            )
        return Located(True, url)

    @classmethod
    def estimate_bytes(cls, spec: ModelSpec, settings: ModelSettings) -> int | None:
        return 0  # the weights live on the server

    @classmethod
    def tiny_spec(cls, directory: Path) -> ModelSpec:
        raise NotImplementedError(
            "openai_vlm serves whatever the server runs; start a server on a tiny model instead"
        )

    @classmethod
    def load(
        cls, spec: ModelSpec, placement: Placement, settings: ModelSettings
    ) -> OpenAIVisionBackend:
        import openai

        url = server_url(spec)
        if url is None:
            raise ModelError(f"no VLM server configured: set options.base_url or ${URL_ENV}")
        timeout = float(spec.options.get("timeout", DEFAULT_TIMEOUT))
        key_env = str(spec.options.get("api_key_env", KEY_ENV))
        client = openai.OpenAI(
            base_url=url,
            api_key=os.environ.get(key_env) or "EMPTY",
            timeout=timeout,
            max_retries=int(spec.options.get("max_retries", 2)),
            # a proxy from the environment must not capture requests to this machine
            http_client=openai.DefaultHttpxClient(trust_env=not is_loopback(url), timeout=timeout),
        )
        try:
            served = [m.id for m in client.with_options(max_retries=0).models.list()]
        except openai.APIError as exc:
            client.close()
            raise ModelError(
                f"VLM server at {url} did not answer GET /models within {timeout:g} s: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        model = spec.model or (served[0] if len(served) == 1 else "")
        if model not in served:
            client.close()
            wanted = f"model '{spec.model}'" if spec.model else "a model name (spec.model)"
            raise ModelError(
                f"VLM server at {url} needs {wanted}; it serves: {', '.join(served) or 'nothing'}"
            )
        log.info("VLM server %s serves %s", url, model)
        return cls(spec, placement, client, model, url)

    def unload(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.client.close()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "device": self.base_url}

    # --- requests ----------------------------------------------------------------------------

    def answer(
        self,
        requests: Sequence[tuple[Image, str]],
        *,
        max_new_tokens: int | Sequence[int] = 32,
        numbers: Sequence[NumberForm | str | bool | None] | None = None,
    ) -> list[str]:
        """Short answers to (image, question) pairs, sent concurrently; a pair whose
        ``numbers`` entry is a :class:`~tools.backends.numbers.NumberForm` (True: any
        number) is answered under that form's grammar (vLLM's ``structured_outputs``)."""
        prompts = [
            f"{q.strip()}\n{self.answer_suffix}" if self.answer_suffix else q.strip()
            for _, q in requests
        ]
        return self.chat(
            [image for image, _ in requests], prompts, max_new_tokens=max_new_tokens,
            grammars=None if numbers is None else [_grammar(number_form(n)) for n in numbers],
        )  # fmt: skip

    def caption(self, images: Sequence[Image], *, max_new_tokens: int = 48) -> list[str]:
        """A one-sentence caption per image, sent concurrently."""
        return self.chat(
            list(images), [self.caption_prompt] * len(images), max_new_tokens=max_new_tokens
        )

    def chat(
        self,
        images: Sequence[Image],
        texts: Sequence[str],
        *,
        max_new_tokens: int | Sequence[int],
        grammars: Sequence[str | None] | None = None,
    ) -> list[str]:
        """The model's reply to each (image, text) user turn, stripped, in order
        (``max_new_tokens``: one budget for all, or one per turn; ``grammars``: per turn,
        GBNF that constrains its reply, or None)."""
        if len(images) != len(texts):
            raise ValueError(f"{len(images)} images but {len(texts)} prompts")
        budgets = token_budgets(max_new_tokens, len(images))
        grammars = [None] * len(images) if grammars is None else list(grammars)
        if len(grammars) != len(images):
            raise ValueError(f"{len(grammars)} grammars for {len(images)} prompts")
        urls = [self._data_url(image) for image in images]
        futures = [  # greedy: answers, not samples
            self._executor.submit(
                self._complete, url, text, LLMRequest(max_tokens=budget, grammar=grammar)
            )
            for url, text, budget, grammar in zip(urls, texts, budgets, grammars, strict=True)
        ]
        return [f.result() for f in futures]

    def _data_url(self, image: Image) -> str:
        def encode() -> str:
            self.stats["image_encoder"] += 1
            png = encode_png(image, max_side=int(self.max_side) if self.max_side else None)
            return "data:image/png;base64," + base64.b64encode(png).decode("ascii")

        return self.cached(("png_data_url", image.hash, self.max_side), encode)[0]

    def _complete(self, image_url: str, text: str, request: LLMRequest) -> str:
        import openai

        messages = [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": image_url}},
                    {"type": "text", "text": text},
                ],
            }
        ]
        with self._lock:
            self._in_flight += 1
            self.stats["max_in_flight"] = max(self.stats["max_in_flight"], self._in_flight)
        body = sampling_body(request)
        extra = {**(self.spec.options.get("extra_body") or {}), **body.pop("extra_body", {})}
        try:
            response = self.client.chat.completions.create(
                model=self.model, messages=messages, extra_body=extra or None, **body
            )
        except openai.APIError as exc:
            raise ModelError(
                f"VLM server {self.base_url} ({self.model}) failed: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            with self._lock:
                self._in_flight -= 1
        with self._lock:
            self.stats["requests"] += 1
            if response.usage is not None:
                self.stats["prompt_tokens"] += response.usage.prompt_tokens or 0
                self.stats["generated_tokens"] += response.usage.completion_tokens or 0
        if not response.choices:
            raise ModelError(f"VLM server {self.base_url} returned no choices")
        return (response.choices[0].message.content or "").strip()


def _grammar(form: NumberForm | None) -> str | None:
    return None if form is None else GRAMMARS[form]


__all__ = ["OpenAIVisionBackend", "server_url"]
