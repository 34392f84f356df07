#!/usr/bin/env bash
# The whole test suite: formatting, vet, staticcheck and every Go test with
# the race detector. Installs what it needs when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

STATICCHECK_VERSION=v0.8.2
ERRCHECK_VERSION=v1.30.0
export PATH="$(go env GOPATH)/bin:$PATH"

# dig (Debian's dnsutils) is the real DNS client the discovery tests use.
if ! command -v dig >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing dnsutils for the DNS tests"
  (apt-get install -y -qq dnsutils >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dnsutils >/dev/null 2>&1; }) \
    || echo "could not install dnsutils; the dig tests will be skipped"
fi

# btrfs-progs (mkfs.btrfs) makes the Cal filesystem that holds every Cal's
# /data under its disk quota; without it calnet up refuses to start
# unless disk quotas are lowered explicitly (--without disk-quota).
if ! command -v mkfs.btrfs >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing btrfs-progs for the Cals' disk quotas"
  (apt-get install -y -qq btrfs-progs >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq btrfs-progs >/dev/null 2>&1; }) \
    || echo "could not install btrfs-progs; calnet up will ask for --without disk-quota"
fi

# iproute2 (ip, tc) builds the network labs of internal/netlab (nodes in
# network namespaces on a bridge); nftables drops a share of packets where
# the kernel has no netem. Without them those tests skip.
for tool in ip:iproute2 nft:nftables; do
  if ! command -v "${tool%%:*}" >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${tool#*:} for the network lab tests"
    (apt-get install -y -qq "${tool#*:}" >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq "${tool#*:}" >/dev/null 2>&1; }) \
      || echo "could not install ${tool#*:}; the network lab tests that need it will be skipped"
  fi
done

# SoftHSM2 is the PKCS#11 token the HSM seal is tested against
# (internal/hsm: tokens made in temp dirs, SOFTHSM2_CONF).
if [ ! -e /usr/lib/softhsm/libsofthsm2.so ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing softhsm2 for the HSM tests"
  (apt-get install -y -qq softhsm2 >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq softhsm2 >/dev/null 2>&1; }) \
    || echo "could not install softhsm2; the HSM tests will be skipped"
fi

# Debian's Chromium drives the dashboard's browser tests.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing chromium for the dashboard tests"
  (apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; }) \
    || echo "could not install chromium; the browser tests will be skipped"
fi

echo "== gofmt"
unformatted=$(gofmt -l $(find . -name '*.go' -not -path './node_modules/*'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

echo "== go vet"
go vet ./...

echo "== staticcheck"
if ! command -v staticcheck >/dev/null 2>&1; then
  echo "installing staticcheck $STATICCHECK_VERSION from the Go module proxy"
  go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
fi
staticcheck ./...

echo "== errcheck (no error dropped; .errcheck-excludes lists the calls whose error nothing can act on)"
if ! command -v errcheck >/dev/null 2>&1; then
  echo "installing errcheck $ERRCHECK_VERSION from the Go module proxy"
  go install "github.com/kisielk/errcheck@$ERRCHECK_VERSION"
fi
errcheck -exclude .errcheck-excludes ./...

echo "== OpenAPI document (Redocly CLI lint, pinned in scripts/openapi-lint)"
if command -v npm >/dev/null 2>&1; then
  ./scripts/openapi-lint/lint.sh
else
  echo "npm not found: install Node.js 20.19+ to lint the OpenAPI document" >&2
  exit 1
fi

echo "== go test -race"
go test -race -count=1 -timeout 40m ./...  # test/e2e runs ~100 real networks: over 10 min on a loaded 2-core machine

echo "== the README's main command as a newcomer runs it (./scripts/up.sh on a fresh copy)"
if [ "$(id -u)" = 0 ]; then
  ./scripts/newcomer.sh
else
  echo "skipped: isolated Cals need root" >&2
fi

echo "== the README's and docs/guide.md's walkthroughs as written (scripts/walkthrough.sh, fresh copies, free ports)"
if [ "$(id -u)" = 0 ]; then
  ./scripts/walkthrough.sh
else
  echo "skipped: isolated Cals need root" >&2
fi

echo "== Python SDK (unittest, standard library only)"
python3 -m unittest discover -s sdk/python/tests -v

echo "== dashboard in headless Chromium (node --test)"
(cd web && npm ci --no-audit --no-fund --loglevel=error && npm test)

echo "== TypeScript wire types: sdk/typescript/src/openapi.ts is what the OpenAPI document generates; the SDK and the dashboard type-check against it"
if command -v npm >/dev/null 2>&1; then
  (cd sdk/typescript && npm ci --no-audit --no-fund --loglevel=error && npm run --silent gen:check && npx --no-install tsc --noEmit -p tsconfig.json)
  (cd web && npx --no-install tsc --noEmit)
else
  echo "npm not found: install Node.js 20+ to check the TypeScript wire types" >&2
  exit 1
fi

echo "== TypeScript SDK (node --test)"
if command -v npm >/dev/null 2>&1; then
  (cd sdk/typescript && npm test)
else
  echo "npm not found: install Node.js 20+ to test the TypeScript SDK" >&2
  exit 1
fi
