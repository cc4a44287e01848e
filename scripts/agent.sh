#!/usr/bin/env bash
# Builds the resident agent (agent/) as one static binary, so the same file runs in every distro's
# container whatever its C library (Ubuntu jammy's glibc is older than this host's): glibc linked
# statically through crt-static. The result: target/release/berth-agent, beside berth's own binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo rustc -p berth-agent --release --quiet --bin berth-agent -- -C target-feature=+crt-static
echo "$PWD/target/release/berth-agent"
