#!/usr/bin/env bash
# Build Jaeger (all-in-one: OTLP receiver, in-memory store, query API) once per machine from the
# Go module proxy, for the tracing tests. Output: $ONCEFLOW_CACHE/bin/jaeger-<version>; prints its path.
set -euo pipefail
JAEGER_VERSION="${JAEGER_VERSION:-v1.76.0}"
CACHE="${ONCEFLOW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/onceflow}"
BIN="$CACHE/bin/jaeger-$JAEGER_VERSION"
if [[ -x "$BIN" ]]; then
  echo "$BIN"
  exit 0
fi
command -v go >/dev/null || { echo "build-jaeger: Go is required to build Jaeger" >&2; exit 1; }
mkdir -p "$CACHE/bin"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "build-jaeger: building jaeger $JAEGER_VERSION into $BIN (one time, several minutes)" >&2
# Jaeger's go.mod has replace directives, so `go install pkg@version` refuses it; as a tool of a
# throwaway module it builds (its replaces do not apply to a dependency).
cd "$work"
go mod init onceflow.local/jaeger-build >/dev/null 2>&1
go get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@${JAEGER_VERSION}" >&2
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$work/jaeger" github.com/jaegertracing/jaeger/cmd/jaeger
mv "$work/jaeger" "$BIN"
echo "$BIN"
