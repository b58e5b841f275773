#!/usr/bin/env bash
# Make sure a Docker engine answers: install Debian's docker.io when dockerd is
# missing, start dockerd in the background when nothing answers, wait for it.
# Safe to run again: does nothing when `docker info` already works.
set -euo pipefail

log() { printf '[docker] %s\n' "$*"; }

if docker info >/dev/null 2>&1; then
  log "engine already answers"
  exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
  log "installing docker.io from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q docker.io >/dev/null
fi

if ! pgrep -x dockerd >/dev/null 2>&1; then
  log "starting dockerd (log: /var/log/mdus-dockerd.log)"
  nohup dockerd >/var/log/mdus-dockerd.log 2>&1 &
fi

for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    log "engine up: $(docker version --format '{{.Server.Version}}')"
    exit 0
  fi
  sleep 1
done
log "dockerd did not answer within 60 s; see /var/log/mdus-dockerd.log" >&2
exit 1
