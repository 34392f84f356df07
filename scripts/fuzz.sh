#!/usr/bin/env bash
# The fuzzing campaign: every native Go fuzz target (func FuzzX in a
# _test.go file) runs for FUZZTIME (default 10m), JOBS at a time (default
# 2, each with GOMAXPROCS workers), and a Markdown row per target is written to
# fuzz-results.md: package, target, time, executions, corpus size (the
# seeds in testdata/fuzz plus what the fuzzer kept in the cache), and the
# result. A crash fails the script; its input is in testdata/fuzz/<target>
# (go test writes it there) for the regression test it becomes.
#
#   scripts/fuzz.sh                 # every target, 10 minutes each
#   FUZZTIME=30s scripts/fuzz.sh ./trust ./ledger
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-10m}
JOBS=${JOBS:-2}
out=${OUT:-fuzz-results.md}
pkgs=("$@")
[ ${#pkgs[@]} -gt 0 ] || pkgs=(./...)

targets=$(grep -rl --include='*_test.go' '^func Fuzz' $(go list -f '{{.Dir}}' "${pkgs[@]}") |
  while read -r f; do
    dir=$(dirname "$f")
    grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed "s|^func ||; s|^|./${dir#$PWD/} |"
  done | sort -u)
cache=$(go env GOCACHE)/fuzz
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
run() {
  # Two statements: one `local` expands all its words before assigning any.
  local pkg=$1 name=$2
  local log="$tmp/$(echo "$pkg $name" | tr '/ .' '___').log"
  local start=$SECONDS status=ok
  # -timeout 0: go test's default 10-minute timeout would end a 10-minute campaign
  go test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -timeout 0 "$pkg" >"$log" 2>&1 || status=FAILED
  local last execs seeds kept
  last=$(grep -aE '^fuzz: elapsed' "$log" | tail -1)
  execs=$(sed -n 's/.*execs: \([0-9]*\).*/\1/p' <<<"$last")
  seeds=$(ls "$pkg/testdata/fuzz/$name" 2>/dev/null | wc -l)
  kept=$(ls "$cache/$(go list "$pkg")/$name" 2>/dev/null | wc -l)
  printf '| %s | %s | %ss | %s | %s + %s | %s |\n' "${pkg#./}" "$name" "$((SECONDS - start))" "${execs:-?}" "$seeds" "$kept" "$status" >>"$tmp/rows"
  if [ "$status" != ok ]; then echo "== $pkg $name FAILED"; tail -30 "$log"; fi
}
export -f run
export FUZZTIME tmp cache
echo "fuzzing $(wc -l <<<"$targets") targets for $FUZZTIME each, $JOBS at a time"
printf '%s\n' "$targets" | xargs -P "$JOBS" -L 1 bash -c 'run "$0" "$1"'
{
  echo "Fuzzing campaign: $(date -u +%Y-%m-%d), $(nproc) cores, FUZZTIME=$FUZZTIME, $JOBS targets at a time (\`scripts/fuzz.sh\`)."
  echo
  echo "| package | target | time | executions | corpus (testdata files + kept by the fuzzer; f.Add seeds not counted) | result |"
  echo "|---|---|---|---|---|---|"
  sort "$tmp/rows"
} >"$out"
cat "$out"
! grep -q FAILED "$out"
