#!/usr/bin/env bash
# Builds berth in release mode, makes sure the base image exists, and serves.
set -euo pipefail
cargo build --release --quiet
bash scripts/agent.sh >/dev/null
bash scripts/base-image.sh target/release/berth
exec target/release/berth serve "$@"
