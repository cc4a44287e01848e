#!/usr/bin/env bash
# Installs CodeTether's stock worker (PyPI `codetether`, pinned) in a virtualenv under target/, for the
# compatibility tests that run it against berth. Idempotent, and safe when several tests call it at
# once (a lock); prints the path of the `codetether-worker` script.
set -euo pipefail
cd "$(dirname "$0")/.."
version=1.4.3
venv=target/codetether-$version
mkdir -p target
exec 9>target/codetether.lock
flock 9
# A marker written last: an install cut off halfway is started over.
if [ ! -f "$venv/.complete" ]; then
  if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    echo "codetether: installing python3-venv" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq python3 python3-venv >/dev/null
  fi
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "codetether==$version" >&2
  touch "$venv/.complete"
fi
echo "$PWD/$venv/bin/codetether-worker"
