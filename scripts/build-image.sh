#!/usr/bin/env bash
# Make sure the lab's Debian 12 systemd image exists.
#   MDUS_LAB_IMAGE   image to use or build (default mdus/debian12-systemd:latest)
#   MDUS_LAB_BASE    local debootstrap base image (default mdus/debian12-minbase:latest)
#   MDUS_DEB_MIRROR  Debian mirror for debootstrap (default http://deb.debian.org/debian)
# An image that is already present (or can be pulled) is used as it is; otherwise a
# minbase rootfs is debootstrapped, imported and topped with files/lab/Dockerfile.
set -euo pipefail

image=${MDUS_LAB_IMAGE:-mdus/debian12-systemd:latest}
base=${MDUS_LAB_BASE:-mdus/debian12-minbase:latest}
mirror=${MDUS_DEB_MIRROR:-http://deb.debian.org/debian}
here=$(cd "$(dirname "$0")/.." && pwd)

log() { printf '[image] %s\n' "$*"; }

# One build at a time: .ci/run starts a build in the background while lint and the unit
# tests run; `make molecule` then waits here for it and finds the image present.
exec 9>/tmp/mdus-build-image.lock
flock 9

if docker image inspect "$image" >/dev/null 2>&1; then
  log "$image present"
  exit 0
fi
if docker pull -q "$image" >/dev/null 2>&1; then
  log "$image pulled"
  exit 0
fi

if ! docker image inspect "$base" >/dev/null 2>&1; then
  if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null \
      || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null; }
  fi
  rootfs=$(mktemp -d /var/tmp/mdus-rootfs.XXXXXX)
  trap 'rm -rf "$rootfs"' EXIT
  log "debootstrap bookworm (minbase + systemd, python3) into $rootfs"
  debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,dbus,python3,python3-apt,ca-certificates,iproute2,procps,less \
    bookworm "$rootfs" "$mirror" >/var/tmp/mdus-debootstrap.log 2>&1 \
    || { tail -n 20 /var/tmp/mdus-debootstrap.log >&2; exit 1; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*_*
  log "importing $base"
  tar -C "$rootfs" -c . | docker import - "$base" >/dev/null
fi

log "building $image from files/lab/Dockerfile"
DOCKER_BUILDKIT=0 docker build -q --build-arg "BASE_IMAGE=$base" -t "$image" \
  "$here/files/lab" >/dev/null
log "$image built"
