#!/usr/bin/env bash
# Start a local kube-apiserver + etcd for hands-on work; prints `export KUBECONFIG=...`.
# Ctrl-C stops both processes and removes their data. Builds the binaries first if needed.
set -euo pipefail
cd "$(dirname "$0")/.."
KUBEBUILDER_ASSETS="$(hack/build-control-plane.sh | tail -n 1)"
export KUBEBUILDER_ASSETS
exec .venv/bin/python -m onceflow_operator.dev.controlplane
