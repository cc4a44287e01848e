#!/usr/bin/env bash
# Benchmarks (not tests): berth's exec and build against the Docker Engine's own, in one run; a flood of
# failed logins against berth's idle memory and health latency.
set -euo pipefail
cargo build --release --quiet
bash scripts/agent.sh >/dev/null
bash scripts/e2b.sh >/dev/null
bash scripts/base-image.sh target/release/berth
cargo bench --bench exec
cargo bench --bench logins
