#!/usr/bin/env bash
# CodeTether's stock worker (PyPI `codetether`, pinned) in a cached virtualenv (scripts/venv.sh); prints
# the path of the `codetether-worker` script.
set -euo pipefail
venv=$(bash "$(dirname "$0")/venv.sh" codetether 1.4.3)
echo "$venv/bin/codetether-worker"
