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
exec bin/calnet up "$@"
