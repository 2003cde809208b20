#!/usr/bin/env bash
# Build helm once per machine from the Go module proxy (no other download is possible here).
# Output: $ONCEFLOW_CACHE/bin/helm-<version>; prints the binary's path.
set -euo pipefail
HELM_VERSION="${HELM_VERSION:-v3.19.5}"
CACHE="${ONCEFLOW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/onceflow}"
BIN="$CACHE/bin/helm-$HELM_VERSION"
if [[ -x "$BIN" ]]; then
  echo "$BIN"
  exit 0
fi
command -v go >/dev/null || { echo "build-helm: Go is required to build helm" >&2; exit 1; }
mkdir -p "$CACHE/bin"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "build-helm: building helm $HELM_VERSION into $BIN (one time)" >&2
GOBIN="$work" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
mv "$work/helm" "$BIN"
echo "$BIN"
