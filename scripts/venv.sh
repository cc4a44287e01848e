#!/usr/bin/env bash
# Installs one pinned PyPI package in its own virtualenv under target/ (`target/PACKAGE-VERSION`), for the
# compatibility tests that run real clients against berth. Idempotent, and safe when several tests call
# it at once (a lock); prints the virtualenv's directory.
set -euo pipefail
cd "$(dirname "$0")/.."
package=$1
version=$2
venv=target/$package-$version
mkdir -p target
exec 9>"target/$package.lock"
flock 9
# A marker written last: an install cut off halfway is started over.
if [ ! -f "$venv/.complete" ]; then
  if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    echo "$package: installing python3-venv" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq python3 python3-venv >/dev/null
  fi
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$package==$version" >&2
  touch "$venv/.complete"
fi
echo "$PWD/$venv"
