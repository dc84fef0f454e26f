#!/usr/bin/env bash
# The README's test command: install the project with its test extras, then run every test.
# torch==2.13.0 is pinned for this machine kind (a local CPU wheel); users with GPUs may use any torch >= 2.4.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q torch==2.13.0 -e ".[test]"
python3 -m pytest -q "$@"
