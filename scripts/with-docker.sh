#!/usr/bin/env bash
# Runs a command with a Docker engine available: installs docker.io and debootstrap when missing (Debian),
# starts dockerd when no engine answers, and stops the dockerd it started once the command ends.
set -euo pipefail

need_install=()
command -v dockerd >/dev/null 2>&1 || need_install+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need_install+=(debootstrap)
command -v git >/dev/null 2>&1 || need_install+=(git)
if [ ${#need_install[@]} -gt 0 ]; then
  echo "with-docker: installing ${need_install[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_install[@]}" >/dev/null
fi

engine_answers() {
  if [ -n "${DOCKER_HOST:-}" ]; then
    DOCKER_API_VERSION=1.41 /usr/bin/docker version >/dev/null 2>&1
  else
    curl -sf --max-time 5 --unix-socket /var/run/docker.sock http://localhost/_ping >/dev/null 2>&1
  fi
}

started=""
if ! engine_answers; then
  echo "with-docker: starting dockerd"
  log=$(mktemp /tmp/berth-dockerd.XXXXXX.log)
  dockerd >"$log" 2>&1 &
  started=$!
  for _ in $(seq 1 60); do
    engine_answers && break
    if ! kill -0 "$started" 2>/dev/null; then
      echo "with-docker: dockerd exited; its log:" >&2
      cat "$log" >&2
      exit 1
    fi
    sleep 1
  done
  engine_answers || { echo "with-docker: dockerd did not answer within 60s" >&2; cat "$log" >&2; exit 1; }
fi

stop_started() {
  if [ -n "$started" ]; then
    echo "with-docker: stopping the dockerd it started"
    kill "$started" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$started" 2>/dev/null || break; sleep 1; done
  fi
}
trap stop_started EXIT

# The engine here may be older than the newest client: let clients negotiate down.
export DOCKER_API_VERSION="${DOCKER_API_VERSION:-1.41}"
"$@"
