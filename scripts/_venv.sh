# Sourced by scripts/dev and scripts/test: make ./.venv with Python 3.11 or 3.12 and install
# the project into it (with the extras named in $1, if any).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ ! -x .venv/bin/python ]; then
  python=""
  for candidate in "${PYTHON:-}" python3.11 python3.12 python3; do
    if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 12))'; then
      python=$candidate
      break
    fi
  done
  if [ -z "$python" ]; then
    echo "vidclinic needs Python 3.11 or 3.12 (set PYTHON=/path/to/python)" >&2
    exit 1
  fi
  "$python" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
.venv/bin/python -m pip install --quiet --editable ".${1:+[$1]}"
