#!/usr/bin/env bash
# The README's and docs/guide.md's walkthroughs, run as written.
#
# Every ```sh block of the two documents is marked by an HTML comment on the
# line before it: `<!-- walkthrough -->` (run here) or `<!-- not run: WHY -->`
# (shown only: the test command itself, long benchmarks). A ```yaml block
# marked `<!-- file: PATH -->` must equal the shipped file PATH. For each
# document, in a fresh copy of the repository (tracked and new files,
# nothing ignored or built), this script starts `./scripts/up.sh` in the
# background on free ports (CALNET_ADDR for the API; --router and --dns,
# exported to the blocks as CALNET_ROUTER and CALNET_DNS_PORT) and without
# the CPU-pressure refusal (--max-cpu-pressure 101: neighbours on a shared
# machine must not decide the result), waits
# until the Master Cal runs, as a reader waits for "calnet is up", and then
# runs the document's walkthrough blocks verbatim, in order, in one bash
# (set -euo pipefail, stdin from /dev/null). A step that fails fails the
# run, naming the document and line. Blocks may not name the default ports
# (7070, 7080, 8600) except as a ${VAR:-default}.
#
#   scripts/walkthrough.sh               # README.md, then docs/guide.md
#   scripts/walkthrough.sh docs/guide.md # one document
#   CALNET_WALKTHROUGH_KEEP=1 scripts/walkthrough.sh   # keep the copies and logs
#   scripts/walkthrough.sh --check       # only the markers and file blocks (no network)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
check_only=""
if [ "${1:-}" = "--check" ]; then
  check_only=1
  shift
fi
docs=("$@")
[ ${#docs[@]} -gt 0 ] || docs=(README.md docs/guide.md)

if [ -n "$check_only" ]; then :
elif [ "$(id -u)" != 0 ]; then
  echo "walkthrough: isolated Cals need root" >&2
  exit 1
fi
for tool in curl dig timeout python3; do
  [ -n "$check_only" ] || command -v "$tool" >/dev/null || { echo "walkthrough: $tool is missing (the walkthroughs use it)" >&2; exit 1; }
done

# Short paths: a Cal's sockets live in <copy>/calnet-data/cals/<id>/ and a
# unix socket's path holds at most 107 bytes.
work=$(mktemp -d /tmp/cw-XXXXXX)
up_pid=""
copy=""
stop_network() {
  if [ -n "$up_pid" ] && kill -0 "$up_pid" 2>/dev/null; then
    (cd "$copy" && CALNET_TOKEN=$(cat calnet-data/admin.token 2>/dev/null) timeout 60 bin/calnet down >/dev/null 2>&1) || kill "$up_pid" 2>/dev/null || true
  fi
  [ -z "$up_pid" ] || wait "$up_pid" 2>/dev/null || true
  up_pid=""
}
cleanup() {
  stop_network
  if [ "${CALNET_WALKTHROUGH_KEEP:-}" = 1 ]; then
    echo "walkthrough: kept $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# extract DOC SCRIPT MAP: writes DOC's walkthrough blocks to SCRIPT and, per
# line of SCRIPT, the line of DOC it came from to MAP; checks the markers
# and the file blocks.
extract() {
  awk -v doc="$1" -v script="$2" -v map="$3" -v repo="$repo" '
    function fail(msg) { printf "walkthrough: %s:%d: %s\n", doc, NR, msg > "/dev/stderr"; bad = 1 }
    BEGIN { n = 0 }
    /^```/ && !inblock {
      lang = substr($0, 4)
      inblock = 1; run = 0; file = ""
      if (lang == "sh") {
        if (prev == "<!-- walkthrough -->") run = 1
        else if (prev !~ /^<!-- not run: .+ -->$/) fail("a ```sh block needs <!-- walkthrough --> or <!-- not run: WHY --> on the line before it")
      }
      if (prev ~ /^<!-- file: [^ ]+ -->$/) { file = prev; sub(/^<!-- file: /, "", file); sub(/ -->$/, "", file); body = "" }
      if (run) blocks++
      next
    }
    /^```$/ && inblock {
      inblock = 0
      if (file != "") {
        want = ""
        while ((getline line < (repo "/" file)) > 0) want = want line "\n"
        close(repo "/" file)
        if (want == "") fail("the file block names " file ", which does not exist")
        else if (body != want) fail("the block above differs from " file " (the file ships; the block must show it as it is)")
      }
      prev = $0
      next
    }
    inblock && file != "" { body = body $0 "\n" }
    inblock && run {
      check = $0
      gsub(/\$\{[A-Z_]+:-[^}]*\}/, "", check)
      if (check ~ /(:|-p )(7070|7080|8600)([^0-9]|$)/) fail("names a default port; use ${CALNET_ADDR:-...}, ${CALNET_ROUTER:-...} or ${CALNET_DNS_PORT:-...}")
      print $0 > script
      print NR > map
      n++
    }
    { prev = $0 }
    END {
      if (inblock) fail("an unclosed ``` block")
      if (!blocks) fail("no <!-- walkthrough --> block")
      exit bad
    }
  ' "$repo/$1"
}

run_doc() {
  local doc=$1 name
  name=$(basename "$doc" .md | tr 'A-Z' 'a-z')
  local body="$work/$name.body" map="$work/$name.map" script="$work/$name.sh"
  : >"$body"; : >"$map"
  extract "$doc" "$body" "$map"
  local header=4
  {
    echo 'set -eEuo pipefail'
    echo 'trap '"'"'s=$?; echo "walkthrough: step at line $LINENO failed (exit $s): $BASH_COMMAND" >&2; exit $s'"'"' ERR'
    echo 'set -x'
    echo '# --- the blocks, verbatim'
    cat "$body"
  } >"$script"

  copy="$work/$name"
  mkdir "$copy"
  (cd "$repo" && git ls-files -z --cached --others --exclude-standard) | while IFS= read -r -d '' f; do
    [ -e "$repo/$f" ] && { mkdir -p "$copy/$(dirname "$f")"; cp -p "$repo/$f" "$copy/$f"; }
  done

  local api router dns
  api=$(free_port); router=$(free_port); dns=$(free_port)
  echo "== $doc: ./scripts/up.sh on 127.0.0.1:$api (router :$router, DNS :$dns) in a fresh copy"
  # --max-cpu-pressure 101: no refusal because other work on a shared
  # machine keeps the CPU saturated; the walkthrough tests the documents.
  (cd "$copy" && CALNET_ADDR=127.0.0.1:$api exec ./scripts/up.sh --router 127.0.0.1:$router --dns 127.0.0.1:$dns --max-cpu-pressure 101 >up.log 2>&1) &
  up_pid=$!
  local deadline=$((SECONDS + 600))
  until [ -s "$copy/calnet-data/admin.token" ] && [ -x "$copy/bin/calnet" ] &&
    (cd "$copy" && CALNET_ADDR=127.0.0.1:$api CALNET_TOKEN=$(cat calnet-data/admin.token) bin/calnet status -o go-template='{{index .cals "running"}}' 2>/dev/null | grep -qx '[1-9][0-9]*'); do
    if ! kill -0 "$up_pid" 2>/dev/null || [ $SECONDS -gt $deadline ]; then
      echo "walkthrough: $doc: calnet up never served" >&2
      tail -20 "$copy/up.log" >&2
      exit 1
    fi
    sleep 0.5
  done

  local steps
  steps=$(wc -l <"$map")
  echo "== $doc: $steps lines of walkthrough"
  local code=0
  (cd "$copy" && env -u CALNET_TOKEN -u CALNET_DIR CALNET_ADDR=127.0.0.1:$api CALNET_ROUTER=127.0.0.1:$router CALNET_DNS_PORT=$dns \
    timeout 1200 bash "$script" </dev/null >"$work/$name.log" 2>&1) || code=$?
  if [ $code != 0 ]; then
    local at docline
    at=$(sed -n 's/^walkthrough: step at line \([0-9]*\) failed.*/\1/p' "$work/$name.log" | tail -1)
    docline=""
    [ -z "$at" ] || docline=$(sed -n "$((at - header))p" "$map")
    tail -40 "$work/$name.log" >&2
    if [ -n "$docline" ]; then
      echo "walkthrough: $doc:$docline failed (exit $code): $(sed -n "${docline}p" "$repo/$doc")" >&2
    else
      echo "walkthrough: $doc failed (exit $code; 124: over the 20-minute limit)" >&2
    fi
    echo "--- calnet up:" >&2
    tail -15 "$copy/up.log" >&2
    exit 1
  fi
  stop_network
  echo "== $doc: every step succeeded"
}

for doc in "${docs[@]}"; do
  if [ -n "$check_only" ]; then
    name=$(basename "$doc" .md | tr 'A-Z' 'a-z')
    extract "$doc" "$work/$name.body" "$work/$name.map"
    echo "$doc: $(wc -l <"$work/$name.body") lines of walkthrough, markers and file blocks in order"
  else
    run_doc "$doc"
  fi
done
