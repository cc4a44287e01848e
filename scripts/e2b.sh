#!/usr/bin/env bash
# E2B's Python SDK (PyPI `e2b`, pinned) in a cached virtualenv (scripts/venv.sh); prints the path of the
# virtualenv's python.
set -euo pipefail
venv=$(bash "$(dirname "$0")/venv.sh" e2b 2.63.0)
echo "$venv/bin/python"
