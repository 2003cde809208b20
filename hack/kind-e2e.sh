#!/usr/bin/env bash
# End to end on a kind cluster: build and load the image, install NATS (official chart) and
# Onceflow (our chart), apply the examples with the sandbox systems, run tests/e2e.
#
# NEEDS Docker, kind, helm and internet access (the NATS chart, base images). The project's own
# machines have none of these, so this script has NEVER been run there; it is here for
# developers' laptops and CI runners that have Docker.
set -euo pipefail
CLUSTER="${CLUSTER:-onceflow-e2e}"
IMAGE="${IMAGE:-onceflow:e2e}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
for tool in docker kind helm kubectl; do
  command -v "$tool" >/dev/null || { echo "kind-e2e: $tool is required (see the header)" >&2; exit 1; }
done

if ! kind get clusters | grep -qx "$CLUSTER"; then
  kind create cluster --name "$CLUSTER" --wait 120s
fi
kubectl config use-context "kind-$CLUSTER"

docker build -t "$IMAGE" "$ROOT"
kind load docker-image "$IMAGE" --name "$CLUSTER"

helm repo add nats https://nats-io.github.io/k8s/helm/charts/ >/dev/null
helm upgrade --install nats nats/nats --namespace nats --create-namespace \
  --set config.jetstream.enabled=true --set config.jetstream.fileStore.pvc.size=1Gi --wait

helm upgrade --install onceflow "$ROOT/helm/onceflow" --namespace onceflow-system --create-namespace \
  --set image.repository="${IMAGE%%:*}" --set image.tag="${IMAGE##*:}" --set image.pullPolicy=Never \
  --set nats.url=nats://nats.nats.svc:4222 --set reconcileSeconds=5 --wait

# The sandbox ERP and receivers run in-cluster from the same image (`onceflow sandbox`).
kubectl create namespace sandbox --dry-run=client -o yaml | kubectl apply -f -
kubectl -n sandbox apply -f - <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: sandbox}
spec:
  selector: {matchLabels: {app: sandbox}}
  template:
    metadata: {labels: {app: sandbox}}
    spec:
      containers:
        - name: sandbox
          image: $IMAGE
          imagePullPolicy: Never
          args: [sandbox, --host, 0.0.0.0]
---
apiVersion: v1
kind: Service
metadata: {name: erp}
spec:
  selector: {app: sandbox}
  ports: [{port: 8000, targetPort: 8100}]
YAML
kubectl -n sandbox rollout status deployment/sandbox --timeout=120s

ONCEFLOW_E2E_CONTEXT="kind-$CLUSTER" "$ROOT/.venv/bin/pytest" -m e2e "$ROOT/tests/e2e" -p no:cacheprovider
