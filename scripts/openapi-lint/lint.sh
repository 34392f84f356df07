#!/usr/bin/env bash
# Lints the served OpenAPI document with Redocly CLI (pinned in
# package-lock.json): an independent, strict parser that refuses what
# kin-openapi lets through (a duplicated key). Errors and warnings fail.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund --loglevel=error
out=$(npx --no-install redocly lint --config redocly.yaml ../../internal/controlplane/openapi.json 2>&1) || { echo "$out"; exit 1; }
echo "$out" | grep -v '║\|╔\|╚' || true
if grep -q "You have [0-9]* warning" <<<"$out"; then
  echo "openapi.json: Redocly warnings (see above)" >&2
  exit 1
fi
