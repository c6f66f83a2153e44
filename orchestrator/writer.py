"""Writing a trace to disk: records streamed to ``trace.jsonl`` as they happen, PNG pictures
of inputs and step values, and the self-contained ``index.html``.

A trace directory::

    trace.jsonl        one JSON record per line (run, input, planning, program, step, result)
    artifacts/*.png    pictures; records name them "artifacts/<name>.png"
    index.html         the page, pictures inlined (see orchestrator.html)

:func:`stream` attaches a sink to a live trace so a crash loses no finished step;
:func:`save` writes everything (``Trace.save`` calls it). A trace read back from disk is
untrusted: an artifact is only ever a plain file name inside ``artifacts/`` — no absolute
path, no ``..``, no symlink, PNG bytes only; anything else is dropped, never read.
File names made from input names are sanitised, so any input name gives a page.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import threading
from pathlib import Path
from typing import IO, Any

from tools.convert import encode_png
from tools.files import write_atomic
from tools.video import FrameResults, Video

from .html import render_html
from .render import STRIP_MAX_WIDTH, picture
from .trace import TRACE_FILE, Trace, use_saver

HTML_FILE = "index.html"
ARTIFACTS = "artifacts"
THUMBNAIL = 640
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_ARTIFACT = re.compile(rf"^{ARTIFACTS}/([A-Za-z0-9_][A-Za-z0-9_.-]{{0,120}}\.png)$")


class JsonlSink:
    """A :class:`~orchestrator.trace.TraceSink` appending each record to a JSONL file."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._file: IO[str] | None = path.open("w", encoding="utf-8")

    def emit(self, record: dict[str, Any]) -> None:
        with self._lock:
            if self._file is not None:
                self._file.write(json.dumps(record, default=_json_default) + "\n")
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def stream(trace: Trace, directory: str | Path) -> Path:
    """Stream ``trace``'s records to ``directory/trace.jsonl`` from now on (what it holds
    already is written first); pictures and the page come with :func:`save`."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    trace.directory = out
    trace.attach(JsonlSink(out / TRACE_FILE))
    return out


def safe_name(text: str, *, limit: int = 60) -> str:
    """``text`` as a file-name part: letters, digits, '_' and '-' only (others become '_')."""
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "_", str(text))[:limit]
    return cleaned or "_"


def artifact_file(directory: Path, artifact: str | None) -> Path | None:
    """The picture file an artifact name refers to, or None when the name is not a plain
    ``artifacts/<name>.png`` inside ``directory``, is a symlink, or is not a PNG file."""
    if not isinstance(artifact, str) or not _ARTIFACT.match(artifact):
        return None
    folder = directory / ARTIFACTS
    path = folder / artifact.split("/", 1)[1]
    try:
        if folder.is_symlink() or path.is_symlink() or not path.is_file():
            return None
        if path.resolve().parent != folder.resolve():
            return None
        with path.open("rb") as f:
            if f.read(len(PNG_MAGIC)) != PNG_MAGIC:
                return None
    except OSError:
        return None
    return path


def save(trace: Trace, directory: str | Path | None = None, *, html: bool = True) -> Path:
    """Write ``trace.jsonl``, the pictures and (with ``html``) ``index.html`` into
    ``directory`` (default: the trace's own); return the directory.

    Pictures are drawn from live values; a trace read back from disk brings its pictures
    along from where it was read (checked with :func:`artifact_file`)."""
    out = Path(directory) if directory is not None else trace.directory
    if out is None:
        raise ValueError("no directory to save the trace to")
    with trace.lock:
        out.mkdir(parents=True, exist_ok=True)
        (out / ARTIFACTS).mkdir(exist_ok=True)
        source = trace.directory
        for i, rec in enumerate(trace.inputs):
            stem = f"input-{i:02d}-{safe_name(rec.name)}"
            rec.artifact = _artifact(rec.value, None, rec.artifact, source, out, stem)
        for srec in trace.steps:
            stem = f"step-{srec.index:04d}"
            srec.artifact = _artifact(srec.value, srec.context, srec.artifact, source, out, stem)
        write_atomic(
            out / TRACE_FILE,
            "".join(json.dumps(r, default=_json_default) + "\n" for r in trace.records()),
        )
        if html:
            write_atomic(out / HTML_FILE, render_html(trace, _pictures(trace, out)))
        trace.directory = out
        return out


def _artifact(
    value: Any, context: Any, known: str | None, source: Path | None, out: Path, stem: str
) -> str | None:
    """The artifact name for one value: drawn from the live value when there is one, else
    the picture the trace already had (copied over when saving somewhere new)."""
    name = f"{stem}.png"
    if value is not None:
        try:
            pic = picture(value, context)
        except Exception:  # a picture is a courtesy; never let it break saving the trace
            return None
        if pic is None:
            return None
        longest = STRIP_MAX_WIDTH if isinstance(value, (Video, FrameResults)) else THUMBNAIL
        (out / ARTIFACTS / name).write_bytes(encode_png(pic, max_side=longest))
        return f"{ARTIFACTS}/{name}"
    if source is None:
        return None
    found = artifact_file(source, known)
    if found is None:
        return None
    target = out / ARTIFACTS / found.name
    if found.resolve() != target.resolve():
        shutil.copyfile(found, target)
    return f"{ARTIFACTS}/{found.name}"


def _pictures(trace: Trace, directory: Path) -> dict[str, str]:
    """Artifact name → base64 PNG for every picture the page shows."""
    out: dict[str, str] = {}
    for artifact in [r.artifact for r in trace.inputs] + [s.artifact for s in trace.steps]:
        path = artifact_file(directory, artifact)
        if path is not None and artifact is not None:
            out[artifact] = base64.b64encode(path.read_bytes()).decode("ascii")
    return out


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


use_saver(save)
