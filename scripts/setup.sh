#!/usr/bin/env bash
# Set up ganime in a virtual environment: .venv in this checkout, or the one already active.
#   bash scripts/setup.sh            ganime with the web, fonts and onnx extras and the CPU build of PyTorch
#   bash scripts/setup.sh --test     the test extras instead; as root with apt also Chromium and fonts
#   bash scripts/setup.sh --locked   (with either) the versions CI last passed with (scripts/constraints.txt)
# Needs Python 3.10-3.13 with venv (Debian/Ubuntu: apt-get install python3-venv); any Python works: the
# system one, pyenv, conda. PYTHON=/path/to/python3 picks the one .venv is made from (default: python3).
# Then run ganime as .venv/bin/ganime or .venv/bin/python -m ganime (or: source .venv/bin/activate).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TORCH="torch==2.13.0"  # pinned: a bare "torch" requirement would pull a multi-GB CUDA build
CONSTRAINTS=scripts/constraints.txt
MIN=3.10 MAX_TESTED=3.13

die() { echo "error: $*" >&2; exit 1; }
say() { echo "setup: $*"; }

want_test=0 locked=0
for arg in "$@"; do
  case $arg in
    --test) want_test=1 ;;
    --locked) locked=1 ;;
    -h | --help) sed -n '2,8p' "$0" | cut -c3-; exit 0 ;;
    *) echo "error: unknown option $arg (options: --test, --locked)" >&2; exit 2 ;;
  esac
done

# "3.11" for an interpreter, checked against the versions ganime supports
python_version() {
  local v rc=0
  v=$("$1" -c "import sys; print('%d.%d' % sys.version_info[:2])
sys.exit(3 if sys.version_info[:2] < (${MIN/./, }) else 4 if sys.version_info[:2] > (${MAX_TESTED/./, }) else 0)" 2>/dev/null) || rc=$?
  case $rc in
    0) ;;
    3) die "ganime needs Python $MIN or newer, $1 is $v; install one (apt-get install python3, pyenv or conda) and run PYTHON=/path/to/python3 bash scripts/setup.sh" ;;
    4) echo "warning: $1 is Python $v; ganime is tested on $MIN-$MAX_TESTED, and PyTorch or numba may have no build for it yet" >&2 ;;
    *) die "$1 does not run; set PYTHON=/path/to/python3 ($MIN-$MAX_TESTED)" ;;
  esac
  echo "$v"
}

if [[ -n "${VIRTUAL_ENV:-}" ]]; then
  # an active virtual environment (or .venv itself, activated): install there; .venv points at it, so that
  # the README's .venv/bin/... commands work either way
  VENV=$VIRTUAL_ENV
  [[ -x "$VENV/bin/python" ]] || die "the active virtual environment $VENV has no bin/python; deactivate it or repair it"
  if [[ ! -e .venv && ! -L .venv ]]; then
    ln -s "$VENV" .venv
  elif [[ "$(cd .venv 2>/dev/null && pwd -P)" != "$(cd "$VENV" && pwd -P)" ]]; then
    die "a virtual environment is active ($VENV) and .venv is another one; deactivate it (to use .venv) or remove .venv"
  fi
  say "using the active virtual environment $VENV"
else
  VENV=$ROOT/.venv
  if [[ -x .venv/bin/python ]]; then
    say "using the existing .venv ($(.venv/bin/python -c 'import sys; print(sys.version.split()[0])')); remove .venv to make a new one"
  else
    [[ -e .venv || -L .venv ]] && die ".venv exists but is not a virtual environment (no .venv/bin/python); remove it and run again"
    PY=${PYTHON:-python3}
    command -v "$PY" >/dev/null || die "no $PY found; install Python $MIN-$MAX_TESTED or set PYTHON=/path/to/python3"
    v=$(python_version "$PY")
    say "making .venv with $(command -v "$PY") (Python $v)"
    if ! err=$("$PY" -m venv .venv 2>&1); then
      rm -rf .venv
      if [[ $err == *ensurepip* || $err == *venv* ]]; then
        die "$PY cannot make virtual environments; install its venv module (Debian/Ubuntu: sudo apt-get install python3-venv) and run again"
      fi
      die "$PY -m venv .venv failed: $(echo "$err" | tail -1)"
    fi
  fi
fi
VPY=$VENV/bin/python
v=$(python_version "$VPY")

if [[ $want_test == 1 ]] && command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
  # browser for the end-to-end web tests; fonts for the glyph/emoji builders and their tests; node runs
  # latent.js against NumPy, npm fetches onnxruntime-web for the in-browser page (below) and the faces renderer
  say "apt-get: chromium and fonts for the tests"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    chromium fonts-noto-color-emoji fonts-noto-core fonts-liberation2 fonts-croscore fonts-open-sans >/dev/null
  # Debian's nodejs and npm only where there is none: Debian's npm conflicts with NodeSource's nodejs (which
  # brings its own npm), as on these machines
  node_pkgs=()
  command -v node >/dev/null || node_pkgs+=(nodejs)
  command -v npm >/dev/null || node_pkgs+=(npm)
  if ((${#node_pkgs[@]})); then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${node_pkgs[@]}" >/dev/null
  fi
fi

pip_args=(-q)
if [[ $locked == 1 ]]; then
  [[ -f $CONSTRAINTS ]] || die "no $CONSTRAINTS; make it with bash scripts/lock.sh after a passing CI run"
  recorded=$(sed -n 's/^# Python \([0-9]*\.[0-9]*\).*/\1/p' "$CONSTRAINTS" | head -1)
  [[ -z $recorded || $recorded == "$v" ]] ||
    echo "warning: $CONSTRAINTS was recorded with Python $recorded, this is $v; some pins may not install" >&2
  pip_args+=(-c "$CONSTRAINTS")
  say "installing the versions in $CONSTRAINTS (--locked)"
fi

# PyTorch first, so that ganime's "torch>=2.4" is already met. A GPU build installed before running this
# script (into the active environment) is kept.
if ! "$VPY" -c "import torch" 2>/dev/null; then
  say "installing $TORCH (CPU build)"
  "$VPY" -m pip install "${pip_args[@]}" "$TORCH"
fi
if [[ $want_test == 1 ]]; then
  extras=test
else
  extras=web,fonts,onnx
fi
say "installing ganime[$extras] (editable) and its dependencies"
"$VPY" -m pip install "${pip_args[@]}" -e ".[$extras]"

# what was resolved, for bug reports and the CI log
"$VPY" - <<'EOF'
from importlib.metadata import PackageNotFoundError, version
import sys
names = ["ganime", "torch", "numpy", "pytest", "fastapi", "starlette", "httpx", "schemathesis", "onnxruntime"]
found = []
for name in names:
    try:
        found.append(f"{name} {version(name)}")
    except PackageNotFoundError:
        pass
print(f"setup: Python {sys.version.split()[0]} in {sys.prefix}: " + ", ".join(found))
EOF
if [[ $want_test == 1 ]] && command -v npm >/dev/null; then
  # onnxruntime-web (pinned, SHA-256 checked) into ganime's cache for the in-browser page's tests; tests never
  # download. Needs network once (34.6 MB); keeps 14.9 MB (WASM) + 28.9 MB (WebGPU build) in ~/.cache/ganime.
  # (a failure is not fatal: the tests that need these files skip and say what is missing)
  "$VPY" -c "from ganime.web.site import find_ort; print('setup: onnxruntime-web in', find_ort('wasm'))" ||
    echo "warning: onnxruntime-web could not be fetched; the in-browser page tests will skip" >&2
  # the pinned DiceBear renderer, so the test that re-renders shipped faces runs
  (cd scripts/faces && npm ci --silent --no-audit --no-fund) ||
    echo "warning: npm ci in scripts/faces failed; the faces re-render test will skip" >&2
fi
say "done; run ganime as .venv/bin/ganime or .venv/bin/python -m ganime (or: source .venv/bin/activate)"
