#!/usr/bin/env bash
# The Prometheus Operator's ServiceMonitor, PodMonitor and PrometheusRule CRDs, generated once
# from its Go API types with controller-gen (both from the Go module proxy), so tests can apply
# the chart's monitoring objects to a real API server that validates them.
# Output: $ONCEFLOW_CACHE/monitoring-crds-<version>/; prints that folder.
set -euo pipefail
MONITORING_VERSION="${MONITORING_VERSION:-v0.95.2}"
CONTROLLER_TOOLS_VERSION="${CONTROLLER_TOOLS_VERSION:-v0.19.0}"
CACHE="${ONCEFLOW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/onceflow}"
OUT="$CACHE/monitoring-crds-$MONITORING_VERSION"
if [[ -f "$OUT/.complete" ]]; then
  echo "$OUT"
  exit 0
fi
command -v go >/dev/null || { echo "build-monitoring-crds: Go is required" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "build-monitoring-crds: generating Prometheus Operator CRDs $MONITORING_VERSION (one time)" >&2
api=github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring
cd "$work"
printf 'module crdgen\n\ngo 1.24\n' > go.mod
printf 'package crdgen\n\nimport _ "%s/v1"\n' "$api" > tools.go
export GOFLAGS=-mod=mod
go get "$api@$MONITORING_VERSION" "sigs.k8s.io/controller-tools/cmd/controller-gen@$CONTROLLER_TOOLS_VERSION" >&2
go build -o controller-gen sigs.k8s.io/controller-tools/cmd/controller-gen
./controller-gen crd:allowDangerousTypes=true,maxDescLen=0 paths="$api/v1" output:crd:dir="$work/crds"
rm -rf "$OUT"
mkdir -p "$OUT"
for kind in servicemonitors podmonitors prometheusrules; do
  cp "$work/crds/monitoring.coreos.com_$kind.yaml" "$OUT/"
done
touch "$OUT/.complete"
echo "$OUT"
