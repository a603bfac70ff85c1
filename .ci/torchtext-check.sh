#!/usr/bin/env bash
# The second environment: the last stack the retired torchtext loads with (torch 2.3.1,
# torchvision 0.18.1, torchtext 0.18.0; requirements-torchtext.txt). Called by .ci/run after the
# main tests, inheriting its environment (LESSONS_DATA_DIR with the real data, LESSONS_OFFLINE=1).
#   1. builds .venv-torchtext from requirements-torchtext.txt (about 3 GB of downloads),
#   2. runs the text tests there; LESSONS_TORCHTEXT_MUST_RUN=1 makes the comparison of
#      lessons/common/text.py with real torchtext fail, not skip, if torchtext does not work,
#   3. executes every lesson as a notebook there (jupytext + nbclient; must not skip),
#   4. plays the whole course --quick on that stack.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv-torchtext
echo "== torchtext stack: install ($venv from requirements-torchtext.txt)"
python3 -m venv --clear "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements-torchtext.txt
"$venv/bin/python" - <<'PY'
import warnings

warnings.simplefilter("ignore")
import torch
import torchtext
import torchvision

print("torch", torch.__version__, "| torchvision", torchvision.__version__,
      "| torchtext", torchtext.__version__)
PY

echo "== torchtext stack: text tests (must compare against real torchtext)"
LESSONS_TORCHTEXT_MUST_RUN=1 "$venv/bin/python" -m pytest -q \
  tests/test_text.py tests/test_10_text_classification.py

echo "== torchtext stack: every lesson as a notebook"
"$venv/bin/python" -m pytest -q tests/test_lessons.py -m notebook

echo "== torchtext stack: the whole course, quick"
MPLBACKEND="${MPLBACKEND:-Agg}" "$venv/bin/python" run_lesson.py --quick \
  --report outputs/ci-torchtext-run-report.md
