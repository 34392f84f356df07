#!/usr/bin/env bash
# Builds the Kubernetes binaries the kubernetes driver's tests run against,
# from the Go module proxy alone (no Docker, no image registry), and caches
# them outside the repository. A warm cache is reused in well under a second.
#
#   scripts/k8s/build.sh      prints the bin directory on its last line
#
# It builds etcd and kube-apiserver: what the kubernetes driver's tests
# (internal/driver/kubernetes) run against. The real-node binaries (kubelet,
# containerd, runc, CNI) are not built yet.
#
# Environment:
#   CALNET_K8S_CACHE  cache root (default ~/.cache/calnet/k8s); binaries land in
#                     $CALNET_K8S_CACHE/<kubernetes version>/bin
#
# Versions: Kubernetes v1.37.2 with every staging module at v0.37.2 (the
# client-go calnet requires is v0.37.2), etcd v3.7.3 (Debian's 3.4 is too
# old for it). Cold build on a 2-core machine: minutes (kube-apiserver
# dominates, over 1 GB RSS); the Go module and build caches make a rebuild
# seconds, the finished binaries are reused at once.
set -euo pipefail

K8S=v1.37.2
ETCD=v3.7.3

root=${CALNET_K8S_CACHE:-$HOME/.cache/calnet/k8s}/$K8S
bin=$root/bin
src=$root/src
mkdir -p "$bin" "$src"

# One build at a time per cache: a second caller waits for the first.
exec 9>"$root/.lock"
flock 9

export CGO_ENABLED=0 GOFLAGS=-mod=mod
t0=$(date +%s)
lap() { echo "[k8s build] $1 ($(( $(date +%s) - t0 )) s)" >&2; }
have() { for f in "$@"; do [ -x "$bin/$f" ] || return 1; done; }

kv=${K8S#v}
minor=$(echo "$kv" | cut -d. -f2)
ldk="-s -w -X k8s.io/component-base/version.gitVersion=$K8S -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"

# k8s_module writes a throwaway module that requires k8s.io/kubernetes and
# pins every staging module to the matching v0.x (the main module's go.mod
# says v0.0.0 for them, which the proxy cannot serve).
k8s_module() {
  local dir=$src/kubernetes
  mkdir -p "$dir"
  local staging="api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api cri-client cri-streaming csi-translation-lib dynamic-resource-allocation endpointslice externaljwt kms kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics mount-utils pod-security-admission sample-apiserver streaming"
  { printf 'module calnet.local/k8sbuild\n\ngo 1.26.0\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$K8S"
    for m in $staging; do printf '\tk8s.io/%s => k8s.io/%s v0.%s\n' "$m" "$m" "${kv#*.}"; done
    printf ')\n'; } > "$dir/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport (\n\t_ "k8s.io/kubernetes/cmd/kube-apiserver"\n\t_ "k8s.io/kubernetes/cmd/kube-controller-manager"\n\t_ "k8s.io/kubernetes/cmd/kube-scheduler"\n\t_ "k8s.io/kubernetes/cmd/kubelet"\n)\n' > "$dir/tools.go"
  (cd "$dir" && [ -f go.sum ] || go mod tidy)
}

if ! have etcd; then
  mkdir -p "$src/etcd"
  printf 'module calnet.local/etcdbuild\n\ngo 1.26.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD" > "$src/etcd/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' > "$src/etcd/tools.go"
  (cd "$src/etcd" && go mod tidy && go build -ldflags "-s -w" -o "$bin/etcd.tmp" go.etcd.io/etcd/server/v3 && mv "$bin/etcd.tmp" "$bin/etcd")
  lap "etcd $ETCD"
fi

if ! have kube-apiserver; then
  k8s_module
  (cd "$src/kubernetes" && go build -ldflags "$ldk" -o "$bin/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver && mv "$bin/kube-apiserver.tmp" "$bin/kube-apiserver")
  lap "kube-apiserver $K8S"
fi

echo "$bin"

