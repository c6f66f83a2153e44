"""llama.cpp states of prompt prefixes, kept on disk so a new process skips evaluating them.

A caller declares the prefixes its prompts start with (:meth:`PrefixStates.declare`; the
planner declares its instructions + tool docs, then that plus the examples it chose).
Before a completion, :meth:`PrefixStates.prepare` brings the model's context to the longest
declared prefix of the prompt:

1. the declared prefixes of the prompt, shortest first, form a chain;
2. the deepest one whose state is at hand — already in the context, or in a file — is
   restored (a few milliseconds: the KV cache is copied in);
3. each deeper prefix is evaluated from there and its state written to a file;
4. the context is cut back to the last prefix, and the completion evaluates the rest.

The same decode calls run whether states came from files or not, so a cached state never
changes a result. A prefix's tokens leave out its last one (it may merge with the text that
follows); llama-cpp-python then matches the prompt's tokens against the context itself.

Files: ``<directory>/<key>.state``, key = sha256 of the model file (path, size, mtime), the
llama.cpp parameters that shape the state (context size, batch sizes, KV types, GPU layers,
library version) and the prefix text. Content: a magic line, a JSON header (the token ids)
and llama.cpp's state bytes. Written to a temporary file and renamed, so concurrent
processes share the directory without locks; the oldest files beyond ``max_bytes`` are
removed (a file's time is refreshed when it is used).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import logging
import os
import threading
from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..files import write_atomic

log = logging.getLogger("vischain.models")

MAGIC = b"vischain-llama-state 1\n"
DEFAULT_MAX_BYTES = 2 * 2**30
MAX_DECLARED = 64  # prefixes remembered per model (most recently declared kept)


@dataclass(frozen=True, slots=True)
class SavedState:
    """A context state: the tokens it holds and llama.cpp's bytes for it."""

    tokens: tuple[int, ...]
    data: bytes


class PrefixStates:
    """Declared prompt prefixes of one loaded model and their states on disk (``directory``
    None: nothing is written, but declared prefixes still bound what a completion
    re-evaluates, which keeps results the same with and without files)."""

    def __init__(
        self,
        directory: Path | None,
        identity: Mapping[str, Any],
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        stats: Counter[str] | None = None,
    ) -> None:
        self.directory = directory
        self.identity = dict(identity)
        self.max_bytes = max_bytes
        self.stats: Counter[str] = Counter() if stats is None else stats
        self._declared: OrderedDict[str, None] = OrderedDict()
        self._tokens: dict[str, tuple[int, ...]] = {}
        self._guard = threading.Lock()

    def declare(self, prefix: str) -> None:
        """Prompts will start with ``prefix``; its state is computed once and kept."""
        if not prefix:
            return
        with self._guard:
            self._declared[prefix] = None
            self._declared.move_to_end(prefix)
            while len(self._declared) > MAX_DECLARED:
                dropped, _ = self._declared.popitem(last=False)
                self._tokens.pop(dropped, None)

    def key(self, prefix: str) -> str:
        blob = json.dumps({"model": self.identity, "prefix": prefix}, sort_keys=True)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    # --- bringing a context to a prompt's prefix ----------------------------------------------

    def prepare(self, llm: Any, prompt: str) -> None:
        """Bring ``llm``'s context (a ``llama_cpp.Llama``, used by one thread: the caller
        holds the model's lock) to the longest declared prefix of ``prompt``."""
        with self._guard:
            chain = sorted((p for p in self._declared if prompt.startswith(p)), key=len)
        chain = [p for p in chain if len(self._prefix_tokens(llm, p)) > 0]
        if not chain:
            return
        start = -1  # index in chain of the deepest state at hand
        for i in range(len(chain) - 1, -1, -1):
            tokens = self._prefix_tokens(llm, chain[i])
            if _holds(llm, tokens):
                start = i
                break
            saved = self._read(chain[i])
            if saved is not None and saved.tokens == tokens and _restore(llm, saved):
                self.stats["prefix_restored"] += 1
                self.stats["prefix_restored_tokens"] += len(tokens)
                start = i
                break
        if start < 0:
            llm.n_tokens = 0
        # a held state stays whole: what the context holds beyond the prefix (the rest of
        # the last prompt, its answer) is reused by llama.cpp where the prompt goes on alike
        for prefix in chain[start + 1 :]:
            tokens = self._prefix_tokens(llm, prefix)
            done = _common(llm.input_ids[: llm.n_tokens], tokens)
            llm.n_tokens = done
            llm.eval(list(tokens[done:]))
            self.stats["prefix_evaluated_tokens"] += len(tokens) - done
            self._write(prefix, llm, tokens)

    def _prefix_tokens(self, llm: Any, prefix: str) -> tuple[int, ...]:
        cached = self._tokens.get(prefix)
        if cached is None:
            # as create_completion tokenizes a prompt, less the last token (which may merge
            # with the text after the prefix)
            cached = tuple(llm.tokenize(prefix.encode("utf-8"), add_bos=True, special=True))[:-1]
            self._tokens[prefix] = cached
        return cached

    # --- files ----------------------------------------------------------------------------

    def _path(self, prefix: str) -> Path | None:
        return self.directory / f"{self.key(prefix)}.state" if self.directory else None

    def _read(self, prefix: str) -> SavedState | None:
        path = self._path(prefix)
        if path is None or not path.is_file():
            return None
        try:
            with open(path, "rb") as f:
                if f.readline() != MAGIC:
                    raise ValueError("not a state file")
                header = json.loads(f.readline())
                data = f.read()
            if len(data) != header["size"]:
                raise ValueError("truncated")
            with contextlib.suppress(OSError):
                os.utime(path)  # recently used: trimmed last
            return SavedState(tuple(int(t) for t in header["tokens"]), data)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring llama.cpp state %s: %s", path, exc)
            return None

    def _write(self, prefix: str, llm: Any, tokens: tuple[int, ...]) -> None:
        path = self._path(prefix)
        if path is None:
            return
        import llama_cpp

        size = llama_cpp.llama_state_get_size(llm.ctx)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_get_data(llm.ctx, buffer, size)
        data = bytes(buffer)[:written]
        header = json.dumps({"tokens": list(tokens), "size": len(data)}).encode("utf-8")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, MAGIC + header + b"\n" + data)
        except OSError as exc:  # a read-only cache costs speed, not the result
            log.warning("could not store llama.cpp state in %s: %s", path, exc)
            return
        self.stats["prefix_saved"] += 1
        self._trim()

    def _trim(self) -> None:
        """Remove the least recently used files beyond ``max_bytes``."""
        assert self.directory is not None
        files = []
        for path in self.directory.glob("*.state"):
            with contextlib.suppress(OSError):
                st = path.stat()
                files.append((st.st_mtime_ns, st.st_size, path))
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size


def _common(held: Any, tokens: tuple[int, ...]) -> int:
    n = 0
    for a, b in zip(held, tokens, strict=False):
        if int(a) != b:
            break
        n += 1
    return n


def _holds(llm: Any, tokens: tuple[int, ...]) -> bool:
    return llm.n_tokens >= len(tokens) and _common(llm.input_ids[: len(tokens)], tokens) == len(
        tokens
    )


def _restore(llm: Any, saved: SavedState) -> bool:
    """Load a saved state into the context (False if llama.cpp refuses it)."""
    import llama_cpp

    buffer = (ctypes.c_uint8 * len(saved.data)).from_buffer_copy(saved.data)
    if llama_cpp.llama_state_set_data(llm.ctx, buffer, len(saved.data)) != len(saved.data):
        llm.n_tokens = 0
        return False
    n = len(saved.tokens)
    llm.input_ids[:n] = saved.tokens
    llm.n_tokens = n
    llm._requires_eval = True  # the logits are not from a live decode (see Llama.load_state)
    return True


__all__ = ["DEFAULT_MAX_BYTES", "PrefixStates", "SavedState"]
