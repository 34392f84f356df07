#!/usr/bin/env bash
# The README's main command as a newcomer runs it: a fresh copy of the
# repository (tracked and new files, nothing ignored or built), then
# `./scripts/up.sh` verbatim (default flags, relative data directory
# ./calnet-data, default ports), then a spawn through it and `calnet down`.
# Fails if the Master Cal does not run, if the spawn does not, or if
# anything is written outside the copy (e.g. /calnet-data).
set -euo pipefail
cd "$(dirname "$0")/.."

for port in 7070 7080; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "newcomer: port $port is in use (is a calnet up running?); stop it and run again" >&2
    exit 1
  fi
done
if [ -e /calnet-data ]; then
  echo "newcomer: /calnet-data exists before the run; remove it (an older calnet wrote it)" >&2
  exit 1
fi

work=$(mktemp -d /tmp/calnet-newcomer-XXXXXX)
up_pid=""
cleanup() {
  if [ -n "$up_pid" ] && kill -0 "$up_pid" 2>/dev/null; then
    (cd "$work/calnet" && CALNET_TOKEN=$(cat calnet-data/admin.token 2>/dev/null) timeout 20 bin/calnet down >/dev/null 2>&1) || kill "$up_pid" 2>/dev/null || true
    wait "$up_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

mkdir "$work/calnet"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  [ -e "$f" ] && { mkdir -p "$work/calnet/$(dirname "$f")"; cp -p "$f" "$work/calnet/$f"; }
done
cd "$work/calnet"

./scripts/up.sh >up.log 2>&1 &
up_pid=$!

cli() { CALNET_TOKEN=$(cat calnet-data/admin.token) bin/calnet "$@"; }
state_of() { cli show "$1" -o json 2>/dev/null | sed -n 's/^  "state": "\(.*\)",$/\1/p'; }

deadline=$((SECONDS + 120))
until [ -s calnet-data/admin.token ] && [ "$(state_of master)" = running ]; do
  if ! kill -0 "$up_pid" 2>/dev/null || [ $SECONDS -gt $deadline ]; then
    echo "newcomer: the Master Cal never ran under ./scripts/up.sh" >&2
    tail -20 up.log >&2; tail -5 calnet-data/logs/*.log >&2 2>/dev/null || true
    exit 1
  fi
  sleep 0.5
done
cli spawn --name worker --perm spawn,read --wait >/dev/null 2>spawn.err || { cat spawn.err >&2; exit 1; }
deadline=$((SECONDS + 60))
until [ "$(state_of worker)" = running ]; do
  if [ $SECONDS -gt $deadline ]; then echo "newcomer: worker never ran" >&2; cli show worker >&2 || true; exit 1; fi
  sleep 0.5
done
if [ -e /calnet-data ]; then
  echo "newcomer: calnet wrote /calnet-data outside its data directory" >&2
  exit 1
fi
cli down >/dev/null
wait "$up_pid"; up_pid=""
echo "newcomer: ./scripts/up.sh ran the Master Cal, a spawned worker ran, calnet down stopped it"
