#!/usr/bin/env bash
# The whole suite: lint, build, base image, then unit and integration tests against the real engine.
set -euo pipefail
cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings
cargo build --quiet
bash scripts/base-image.sh target/debug/berth
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast
else
  cargo test --no-fail-fast
fi
