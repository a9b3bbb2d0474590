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
  echo "Making a virtualenv in .venv and installing vidclinic (the first time takes a minute or two)..."
  "$python" -m venv .venv
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null 2>&1
fi
# pip's own chatter (warnings about ignored locations, build back-ends' banners) goes to a log,
# shown only if the installation fails: a newcomer's screen keeps what vidclinic prints.
echo "Checking vidclinic's packages in .venv..."
if ! .venv/bin/python -m pip install --quiet --disable-pip-version-check \
  --editable ".${1:+[$1]}" >.venv/install.log 2>&1; then
  cat .venv/install.log >&2
  echo "Installing vidclinic failed (the log above is in .venv/install.log)." >&2
  exit 1
fi
