#!/usr/bin/env bash
# The whole suite: lint, build, base image and client packages, then unit and integration tests against
# the real engine.
set -euo pipefail
cargo fmt --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo build --quiet
bash scripts/agent.sh >/dev/null
bash scripts/base-image.sh target/debug/berth
# The real clients the compatibility tests run: CodeTether's stock worker (a cached virtualenv).
bash scripts/codetether.sh >/dev/null
# E2B's SDKs, Python and JavaScript (cached under target/ as well).
bash scripts/e2b.sh >/dev/null
bash scripts/e2b-js.sh >/dev/null
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast
else
  cargo test --no-fail-fast
fi
