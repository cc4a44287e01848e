#!/usr/bin/env bash
# base: what every workspace gets: its working directory and git willing to work in the shared volume.
mkdir -p /workspace
if command -v git >/dev/null 2>&1; then
  git config --global --add safe.directory '*'
fi
