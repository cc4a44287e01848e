#!/usr/bin/env bash
# Installs E2B's Python SDK (PyPI `e2b`, pinned) in a virtualenv under target/, for the compatibility
# tests that run it against berth. Idempotent, and safe when several tests call it at once (a lock);
# prints the path of the virtualenv's python.
set -euo pipefail
cd "$(dirname "$0")/.."
version=2.63.0
venv=target/e2b-$version
mkdir -p target
exec 9>target/e2b.lock
flock 9
# A marker written last: an install cut off halfway is started over.
if [ ! -f "$venv/.complete" ]; then
  if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    echo "e2b: installing python3-venv" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq python3 python3-venv >/dev/null
  fi
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "e2b==$version" >&2
  touch "$venv/.complete"
fi
echo "$PWD/$venv/bin/python"
