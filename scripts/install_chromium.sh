#!/usr/bin/env bash
# Install Debian's Chromium for the browser test of the trace page (no-op if present).
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || [[ -x /usr/bin/chromium ]]; then
    exit 0
fi
SUDO=""
[[ "$(id -u)" == 0 ]] || SUDO="sudo"
echo "[install_chromium] installing Debian's chromium"
${SUDO} apt-get update -qq
DEBIAN_FRONTEND=noninteractive ${SUDO} apt-get install -y -qq chromium >/dev/null
command -v chromium
