#!/usr/bin/env bash
# Rebuild the web dashboard (web/) into internal/dashboard/dist, which the
# binary embeds. The built files are committed, so `go build` needs no npm;
# run this after changing web/.
set -euo pipefail
cd "$(dirname "$0")/../web"
npm ci --no-audit --no-fund --loglevel=error
npm run build
