#!/usr/bin/env bash
# The offline trust workflow end to end: create a network, bless a chain of
# Cals, verify it, revoke a subtree, and audit the ledger.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-calnet-demo}
if [ -e "$work" ]; then echo "$work exists; pass another directory or remove it" >&2; exit 1; fi
mkdir -p "$work"
go build -o "$work/calnet" ./cmd/calnet
cd "$work"
c=./calnet
set -x
$c init --dir net
$c keygen --dir net --out alpha
$c bless --dir net --parent net/master --child alpha --perm spawn,revoke,read,talk --max-depth 5 --cpu 1 --memory 1Gi
$c keygen --dir net --out beta
$c bless --dir net --parent alpha --child beta --perm spawn,read --cpu 500m --memory 256Mi
$c keygen --dir net --out gamma
$c bless --dir net --parent beta --child gamma --perm read
$c verify --dir net gamma
$c ledger proof --dir net 3 > proof.json
$c ledger checkpoint --dir net > checkpoint.txt
$c ledger verify --dir net --proof proof.json --checkpoint checkpoint.txt
$c revoke --dir net --as alpha --reason "demo" "$(sed -n 's/.*"id": "\(.*\)".*/\1/p' beta/identity.pub)"
$c verify --dir net gamma || echo "gamma no longer verifies: its ancestor beta is revoked"
$c ledger log --dir net
$c ledger verify --dir net
