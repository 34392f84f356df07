#!/usr/bin/env bash
# The main job: build calnet (static, as shipped) and run `calnet up` on the
# embedded defaults: data in ./calnet-data, API on 127.0.0.1:7070.
# Extra arguments go to `calnet up` (see `calnet up --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bin
CGO_ENABLED=0 go build -o bin/calnet ./cmd/calnet
if [ "$(id -u)" != 0 ]; then
  echo "calnet isolates each Cal in its own namespaces and cgroups, which needs root; re-running with sudo" >&2
  exec sudo bin/calnet up "$@"
fi
# Each Cal's /data lives on a btrfs image with the disk quota of its
# blessing: mkfs.btrfs makes it once (Debian: btrfs-progs).
if ! command -v mkfs.btrfs >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  echo "installing btrfs-progs (mkfs.btrfs) for the Cals' disk quotas" >&2
  apt-get install -y -qq btrfs-progs >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq btrfs-progs >/dev/null 2>&1; } \
    || echo "could not install btrfs-progs: run with --without disk-quota to start without disk quotas" >&2
fi
exec bin/calnet up "$@"
