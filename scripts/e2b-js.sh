#!/usr/bin/env bash
# Installs E2B's JavaScript SDK (npm `e2b`, pinned) under target/, for the compatibility test that runs
# it against berth, and Node.js itself when the machine has none. Idempotent and safe when several tests
# call it at once (a lock); prints the directory holding node_modules.
set -euo pipefail
cd "$(dirname "$0")/.."
version=2.51.0
dir=target/e2b-js-$version
mkdir -p target
exec 9>target/e2b-js.lock
flock 9
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "e2b-js: installing nodejs and npm" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq nodejs npm >/dev/null
fi
# A marker written last: an install cut off halfway is started over.
if [ ! -f "$dir/.complete" ]; then
  rm -rf "$dir"
  mkdir -p "$dir"
  printf '{"name":"berth-e2b-js","private":true,"type":"module"}\n' > "$dir/package.json"
  (cd "$dir" && npm install --silent --no-audit --no-fund "e2b@$version" >&2)
  touch "$dir/.complete"
fi
echo "$PWD/$dir"
