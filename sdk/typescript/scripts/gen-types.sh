#!/bin/sh
# Generates the SDK's wire types, src/openapi.ts, from the OpenAPI document
# (internal/controlplane/openapi.json) with openapi-typescript. With
# --check it generates them into a temporary file instead and fails if the
# committed src/openapi.ts differs: the document changed without it.
set -eu
cd "$(dirname "$0")/.."
doc=../../internal/controlplane/openapi.json
gen() {
  # --array-length: AuditRecord.dropped is a [first, last] pair.
  # --empty-objects-unknown: a schema without properties (Approval.revocation) is any object.
  ./node_modules/.bin/openapi-typescript "$doc" --array-length --empty-objects-unknown -o "$1" >/dev/null
}
if [ "${1-}" = --check ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  gen "$tmp/openapi.ts"
  if ! cmp -s "$tmp/openapi.ts" src/openapi.ts; then
    diff -u src/openapi.ts "$tmp/openapi.ts" | head -60 >&2 || true
    echo "sdk/typescript/src/openapi.ts is not what internal/controlplane/openapi.json generates:" >&2
    echo "run 'cd sdk/typescript && npm run gen' and commit src/openapi.ts" >&2
    exit 1
  fi
  echo "sdk/typescript/src/openapi.ts matches internal/controlplane/openapi.json"
  exit 0
fi
gen src/openapi.ts
