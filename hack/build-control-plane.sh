#!/usr/bin/env bash
# Build the test control plane (kube-apiserver + etcd) from the Go module proxy, once per machine.
#
# Why: envtest-style tests need real binaries, and the only registries reachable here are package
# registries. kube-apiserver is built from k8s.io/kubernetes in a throwaway module; its go.mod
# points every k8s.io staging module at ./staging/src with v0.0.0, so we replace each one with the
# published v0.<minor>.<patch> version that matches.
#
# Output: $ONCEFLOW_CACHE/control-plane/<k8s-version>-<etcd-version>/{kube-apiserver,etcd}
# Honours KUBEBUILDER_ASSETS: when set and holding both binaries, nothing is built.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
CACHE="${ONCEFLOW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/onceflow}"
DEST="$CACHE/control-plane/${K8S_VERSION}-${ETCD_VERSION}"

if [[ -n "${KUBEBUILDER_ASSETS:-}" && -x "$KUBEBUILDER_ASSETS/kube-apiserver" && -x "$KUBEBUILDER_ASSETS/etcd" ]]; then
  echo "$KUBEBUILDER_ASSETS"
  exit 0
fi
if [[ -x "$DEST/kube-apiserver" && -x "$DEST/etcd" ]]; then
  echo "$DEST"
  exit 0
fi

command -v go >/dev/null || { echo "build-control-plane: Go is required to build kube-apiserver and etcd" >&2; exit 1; }
mkdir -p "$DEST"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export GOFLAGS="-mod=mod" CGO_ENABLED=0

staging_version="v0.${K8S_VERSION#v1.}"

build_apiserver() {
  local dir="$work/apiserver"
  mkdir -p "$dir" && cd "$dir"
  go mod init onceflow.local/apiserver >/dev/null 2>&1
  local gomod
  gomod="$(go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  go mod edit -require="k8s.io/kubernetes@${K8S_VERSION}"
  # Every staging module k8s.io/kubernetes replaces locally gets the published version instead.
  grep -oE 'k8s.io/[a-z0-9-]+ => ./staging/src/k8s.io/[a-z0-9-]+' "$gomod" | awk '{print $1}' | sort -u |
    while read -r mod; do
      go mod edit -replace="${mod}=${mod}@${staging_version}"
    done
  printf 'package main\n\nimport _ "k8s.io/kubernetes/cmd/kube-apiserver/app"\n' > tools.go
  go mod tidy >/dev/null 2>&1 || true
  go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=${K8S_VERSION} -X k8s.io/client-go/pkg/version.gitVersion=${K8S_VERSION}" \
    -o "$DEST/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
}

build_etcd() {
  local dir="$work/etcd"
  mkdir -p "$dir" && cd "$dir"
  go mod init onceflow.local/etcd >/dev/null 2>&1
  go mod edit -require="go.etcd.io/etcd/server/v3@${ETCD_VERSION}"
  printf 'package main\n\nimport _ "go.etcd.io/etcd/server/v3/etcdmain"\n' > tools.go
  go mod tidy >/dev/null 2>&1 || true
  printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' > main.go
  rm -f tools.go
  go mod tidy >/dev/null
  go build -trimpath -ldflags "-s -w" -o "$DEST/etcd" .
}

start=$(date +%s)
echo "build-control-plane: building etcd ${ETCD_VERSION} and kube-apiserver ${K8S_VERSION} into $DEST (one time, several minutes)" >&2
build_etcd
build_apiserver
echo "build-control-plane: done in $(( $(date +%s) - start ))s" >&2
echo "$DEST"
