#!/usr/bin/env bash
# Creates .venv with fastgru installed (editable) and builds its fused CPU kernel once.
# Usage: bash scripts/setup.sh [extras]   e.g. extras "test" for the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python3 -m venv .venv
# constraints.txt pins the CPU build of torch that this machine has on disk (see README).
.venv/bin/pip install --quiet --disable-pip-version-check -c constraints.txt -e ".${extras:+[$extras]}"
if [[ ",$extras," == *",test,"* ]]; then
  # sktime's wheel carries the UCR/UEA classification sets and labelled anomaly series that the tests
  # read from its data folder; --no-deps because its own pins would downgrade pandas.
  .venv/bin/pip install --quiet --disable-pip-version-check --no-deps "sktime==1.2.0"
fi
.venv/bin/python - <<'PY'
from fastgru.backends import cpu
if cpu.load() is None:
    print(f"warning: fused CPU kernel not built ({cpu.load_error()}); fastgru will use its pure-torch loop")
else:
    print("fastgru: fused CPU kernel ready")
PY
