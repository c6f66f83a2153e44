#!/usr/bin/env bash
# Download, on a machine with PyPI access, the wheels bench/gpu/check.sh installs on a GPU
# machine without network: bash bench/gpu/fetch_wheels.sh [PYTHON_VERSION (default 3.12)]
# Wheels go to bench/gpu/whl/ and bench/gpu/whl/hf/ (git-ignored; carry them with the checkout).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${1:-3.12}
fetch() {  # requirements file, target folder
    grep -v '^#' "$1" | while read -r req; do
        [[ -n $req ]] || continue
        python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PY" \
            --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
            --platform manylinux2014_x86_64 -d "$2" "$req"
    done
}
fetch "$HERE/wheels.txt" "$HERE/whl"
fetch "$HERE/wheels-hf.txt" "$HERE/whl/hf"
ls "$HERE/whl" "$HERE/whl/hf" | grep -c '\.whl$' | xargs echo "wheels:"
