#!/usr/bin/env bash
# Benchmarks (not tests): berth's exec and build against the Docker Engine's own, in one run.
set -euo pipefail
cargo build --release --quiet
bash scripts/base-image.sh target/release/berth
cargo bench --bench exec
