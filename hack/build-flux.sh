#!/usr/bin/env bash
# Build Flux's source-controller and kustomize-controller once per machine from the Go module
# proxy, with the CRDs their module zips ship (config/crd/bases), for the GitOps test.
# Output: $ONCEFLOW_CACHE/bin/flux-<versions>/{source-controller,kustomize-controller,crds/};
# prints that folder on its last line.
#
# Why Flux and not Argo CD: Argo CD's controllers do not build here (docs/gitops.md says why).
# Why v1.9.x: the v1.10 controllers need Go 1.27; these machines have Go 1.26.
set -euo pipefail
FLUX_SOURCE_VERSION="${FLUX_SOURCE_VERSION:-v1.9.6}"
FLUX_KUSTOMIZE_VERSION="${FLUX_KUSTOMIZE_VERSION:-v1.9.6}"
# source-controller v1.9.6 asks for fluxcd/pkg/artifact v0.18.3, which the module proxy here does
# not serve (nor v0.18.2); v0.18.1 is the nearest it has, a patch release apart, and builds.
# Set FLUX_ARTIFACT_PIN= (empty) where the proxy serves the version asked for.
FLUX_ARTIFACT_PIN="${FLUX_ARTIFACT_PIN-v0.18.1}"
CACHE="${ONCEFLOW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/onceflow}"
OUT="$CACHE/bin/flux-source-$FLUX_SOURCE_VERSION-kustomize-$FLUX_KUSTOMIZE_VERSION"
if [[ -f "$OUT/.complete" ]]; then
  echo "$OUT"
  exit 0
fi
command -v go >/dev/null || { echo "build-flux: Go is required to build the Flux controllers" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "build-flux: building Flux source-controller $FLUX_SOURCE_VERSION and kustomize-controller" \
  "$FLUX_KUSTOMIZE_VERSION into $OUT (one time, several minutes)" >&2
mkdir -p "$work/out/crds"

# build NAME MODULE VERSION: each controller in a throwaway module of its own, so each builds with
# the dependencies it was released with. Their go.mod files have replace directives, so
# `go install pkg@version` refuses them; as a tool of a throwaway module they build. A
# dependency's replaces do not apply, so the ones pointing at other module versions (e.g.
# opencontainers/go-digest at a commit with BLAKE3) are copied into the throwaway module; the
# ones pointing at their own folders (./api) are left out, the released api module serves.
build() {
  local name="$1" module="$2" version="$3" modfile
  mkdir -p "$work/$name"
  cd "$work/$name"
  go mod init "onceflow.local/$name-build" >/dev/null 2>&1
  modfile="$(go mod download -json "$module@$version" | python3 -c 'import json, sys; print(json.load(sys.stdin)["GoMod"])')"
  go mod edit -json "$modfile" | python3 -c '
import json, sys
for r in json.load(sys.stdin).get("Replace") or []:
    if r["New"].get("Version"):
        print("-replace=%s=%s@%s" % (r["Old"]["Path"], r["New"]["Path"], r["New"]["Version"]))
' | xargs -r go mod edit
  if [[ "$name" == source-controller && -n "$FLUX_ARTIFACT_PIN" ]]; then
    go mod edit -replace "github.com/fluxcd/pkg/artifact=github.com/fluxcd/pkg/artifact@$FLUX_ARTIFACT_PIN"
  fi
  go get -tool "$module@$version" >&2
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$work/out/$name" "$module"
  cp "$(go list -m -f '{{.Dir}}' "$module")"/config/crd/bases/*.yaml "$work/out/crds/"
}
build source-controller github.com/fluxcd/source-controller "$FLUX_SOURCE_VERSION"
build kustomize-controller github.com/fluxcd/kustomize-controller "$FLUX_KUSTOMIZE_VERSION"
chmod u+w "$work"/out/crds/*.yaml
rm -rf "$OUT"
mkdir -p "$(dirname "$OUT")"
mv "$work/out" "$OUT"
touch "$OUT/.complete"
echo "$OUT"
