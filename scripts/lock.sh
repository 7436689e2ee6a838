#!/usr/bin/env bash
# Record the versions in .venv as scripts/constraints.txt, which `bash scripts/setup.sh --locked` installs.
# Run it after a passing `bash .ci/run` (which makes .venv the README's way and runs the tests in it).
#   bash scripts/lock.sh           write scripts/constraints.txt
#   bash scripts/lock.sh --diff    only show how .venv differs from it (what .ci/run prints at the end)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=scripts/constraints.txt
[[ -x .venv/bin/python ]] || { echo "error: no .venv; run bash scripts/setup.sh --test first" >&2; exit 1; }

current() {
  echo "# The versions CI last passed with, for: bash scripts/setup.sh --locked (the default is a fresh resolve)."
  echo "# Regenerate after a passing CI run: bash scripts/lock.sh"
  echo "# Python $(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])') on $(uname -sm)"
  # the local label of torch's CPU wheel (2.13.0+cpu) is dropped: the pin must also match the build on PyPI
  .venv/bin/python -m pip freeze --exclude-editable --disable-pip-version-check |
    grep -v -e '^ganime==' -e ' @ ' -e '^-e ' | sed -E 's/^([^=]+==[^+]+)\+.*/\1/' | LC_ALL=C sort -f
}

if [[ ${1:-} == --diff ]]; then
  if diff <(grep -v '^#' "$OUT" 2>/dev/null) <(current | grep -v '^#') >/tmp/lock-diff.$$; then
    echo "lock: the installed versions are the ones in $OUT"
  else
    echo "lock: installed versions that differ from $OUT (< recorded, > installed now; bash scripts/lock.sh records them):"
    grep '^[<>]' /tmp/lock-diff.$$ || true
  fi
  rm -f /tmp/lock-diff.$$
  exit 0
fi
current >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "lock: wrote $OUT ($(grep -vc '^#' "$OUT") packages)"
