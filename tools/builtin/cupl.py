"""CuPL: visual descriptions of categories written by an LLM, kept on disk across processes.

``Classify(describe=True)`` matches CLIP against short sentences an LLM writes about each
category ("a papillon has large, fringed, butterfly-shaped ears"). Writing them is the slow
part (seconds per category on a CPU), so each is written once per model and prompt, ever:

* key: sha256 of (the model's identity, the full prompt — which holds the label and the
  number of sentences — and the sampling request); one JSON file per key under
  ``<cache_dir>/cupl/``, written to a temporary file and renamed into place, so concurrent
  processes share entries without locks and a crash never leaves half of one;
* a lookup checks the file's label, model and prompt, not only its name;
* the categories not found are written in ONE ``complete_many`` call (a server runs them
  concurrently; llama.cpp reuses the shared prompt prefix between them).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from tools.backends.llm import LanguageModel, LLMRequest
from tools.builtin.text import parse_list
from tools.files import write_atomic

log = logging.getLogger("vischain.tools")

PROMPT = (
    "Write {k} short, different sentences describing what a {name} looks like in a "
    "photo, one per line, focusing on visible features (shape, colour, texture, parts).\n1."
)
REQUEST = LLMRequest(max_tokens=200, stop=("\n\n",))


class Describer:
    """Descriptions of categories by one LLM: in memory, then on disk under ``directory``
    (None: memory only), then written by the LLM in one batched call for all misses."""

    _instances: ClassVar[dict[tuple[str, int, str], Describer]] = {}
    _guard = threading.Lock()

    def __init__(
        self,
        llm: LanguageModel,
        directory: Path | None,
        *,
        k: int = 4,
        prompt: str = PROMPT,
        request: LLMRequest = REQUEST,
    ) -> None:
        self.llm = llm
        self.directory = directory
        self.k = k
        self.prompt = prompt
        self.request = request
        self._lock = threading.Lock()
        self._memory: dict[str, list[str]] = {}

    @classmethod
    def shared(cls, llm: LanguageModel, cache_dir: Path | str | None) -> Describer:
        """The one describer of this loaded model and cache directory in this process."""
        directory = Path(cache_dir).expanduser() / "cupl" if cache_dir is not None else None
        key = (llm.spec.key(), id(llm), str(directory))
        with cls._guard:
            if key not in cls._instances:
                cls._instances[key] = cls(llm, directory)
            return cls._instances[key]

    def prompt_for(self, name: str) -> str:
        return self.prompt.format(k=self.k, name=name)

    def key(self, name: str) -> str:
        """The entry's name: a hash of the model, the prompt and the request."""
        identity = [self.llm.spec.key(), self.prompt_for(name), dataclasses.asdict(self.request)]
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()

    def describe(self, name: str) -> list[str]:
        return self.describe_many([name])[name]

    def describe_many(self, names: Sequence[str]) -> dict[str, list[str]]:
        """Descriptions of every name; the ones neither in memory nor on disk are written by
        the LLM in one ``complete_many`` call and stored."""
        wanted = list(dict.fromkeys(names))
        with self._lock:
            for name in wanted:
                if name not in self._memory:
                    stored = self._load(name)
                    if stored is not None:
                        self._memory[name] = stored
            missing = [n for n in wanted if n not in self._memory]
            if missing:
                prompts = [self.prompt_for(n) for n in missing]
                completions = self.llm.complete_many(prompts, self.request)
                for name, completion in zip(missing, completions, strict=True):
                    lines = parse_list("1." + completion.text, limit=self.k)
                    self._memory[name] = lines
                    self._store(name, lines)
            return {n: self._memory[n] for n in wanted}

    # --- the files ---------------------------------------------------------------------------

    def _path(self, name: str) -> Path | None:
        return self.directory / f"{self.key(name)}.json" if self.directory is not None else None

    def _entry(self, name: str) -> dict[str, str]:
        return {"label": name, "model": self.llm.spec.key(), "prompt": self.prompt_for(name)}

    def _load(self, name: str) -> list[str] | None:
        path = self._path(name)
        if path is None or not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            descriptions = data["descriptions"]
            same = all(data.get(k) == v for k, v in self._entry(name).items())
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("ignoring unreadable CuPL entry %s", path)
            return None
        if not same or not isinstance(descriptions, list):
            return None
        return [str(d) for d in descriptions]

    def _store(self, name: str, descriptions: list[str]) -> None:
        path = self._path(name)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            text = json.dumps({**self._entry(name), "descriptions": descriptions}, indent=1)
            write_atomic(path, text)
        except OSError as exc:  # a read-only cache costs speed, not the result
            log.warning("could not store CuPL descriptions in %s: %s", path, exc)


__all__ = ["PROMPT", "REQUEST", "Describer"]
