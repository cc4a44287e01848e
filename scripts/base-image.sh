#!/usr/bin/env bash
# Makes sure the debian-bookworm base image exists, building it with berth's own bootstrap command
# (idempotent: it does nothing when the image is present). $1 is the berth binary.
set -euo pipefail
berth="$1"
mkdir -p target/bootstrap
"$berth" images bootstrap debian-bookworm --data-dir target/bootstrap
