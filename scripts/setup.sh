#!/usr/bin/env bash
# Set up ganime on a fresh Linux machine (Python >= 3.10 with pip).
#   bash scripts/setup.sh          # ganime + the CPU build of PyTorch
#   bash scripts/setup.sh --test   # also the test/optional extras, Debian's chromium and fonts (needs root/apt)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
want_test=0
[[ "${1:-}" == "--test" ]] && want_test=1

if [[ $want_test == 1 ]] && command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
  # browser for the end-to-end web tests; fonts for the glyph/emoji builders and their tests; node runs
  # latent.js against NumPy, npm fetches onnxruntime-web for the in-browser page (below)
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    chromium fonts-noto-color-emoji fonts-noto-core fonts-liberation2 fonts-croscore fonts-open-sans \
    nodejs npm >/dev/null
fi

# The CPU build of PyTorch first: a bare "torch" requirement would pull a multi-GB CUDA build.
# Where a GPU build is wanted, install it before running this script; ganime only asks for torch>=2.4.
if ! "$PY" -c "import torch" 2>/dev/null; then
  "$PY" -m pip install -q "torch==2.13.0"
fi
if [[ $want_test == 1 ]]; then
  "$PY" -m pip install -q -e ".[test]"
else
  "$PY" -m pip install -q -e ".[web,fonts,onnx]"
fi
"$PY" -c "import ganime, torch; print('ganime', ganime.__version__, 'torch', torch.__version__)"
if [[ $want_test == 1 ]] && command -v npm >/dev/null; then
  # onnxruntime-web (pinned, SHA-256 checked) into ganime's cache for the in-browser page's tests; tests never
  # download. Needs network once (34.6 MB); keeps 14.9 MB (WASM) + 28.9 MB (WebGPU build) in ~/.cache/ganime.
  "$PY" -c "from ganime.web.site import find_ort; print('onnxruntime-web in', find_ort('wasm'))"
fi
