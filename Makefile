# Onceflow developer entry points. `make test` is the README's test command and what CI runs:
# it installs everything it needs (Python deps into .venv, kubectl and nats-server from PyPI,
# kube-apiserver + etcd, helm, the Prometheus Operator CRDs and Flux's source and kustomize
# controllers built once into ~/.cache/onceflow,
# checkov in its own venv there, Debian's prometheus package when prometheus/promtool are
# missing), then runs ruff, the import-linter layer contracts, mypy and pytest.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: docs argocd test demo setup control-plane test-tools lint typecheck unit crds clean

test: setup control-plane test-tools lint typecheck
	KUBEBUILDER_ASSETS="$$(hack/build-control-plane.sh | tail -n 1)" \
	ONCEFLOW_HELM="$$(hack/build-helm.sh | tail -n 1)" \
	ONCEFLOW_PROMETHEUS="$$(hack/install-prometheus.sh | tail -n 1)" \
	ONCEFLOW_MONITORING_CRDS="$$(hack/build-monitoring-crds.sh | tail -n 1)" \
	ONCEFLOW_CHECKOV="$$(hack/install-checkov.sh | tail -n 1)" \
	ONCEFLOW_CHROMIUM="$$(hack/install-chromium.sh | tail -n 1)" \
	ONCEFLOW_FLUX="$$(hack/build-flux.sh | tail -n 1)" \
	$(BIN)/pytest

# The embedded demo: real control plane, nats-server, operator, local executor, sandboxes;
# plays the three scenarios and prints what arrived where. It needs the venv (kubectl and
# nats-server come from PyPI) and the control plane, nothing else: no root, no apt.
demo: setup control-plane
	KUBEBUILDER_ASSETS="$$(hack/build-control-plane.sh | tail -n 1)" $(BIN)/onceflow dev demo --examples examples

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

control-plane:
	hack/build-control-plane.sh >/dev/null

# What only the tests use: helm, Prometheus (apt), the Prometheus Operator CRDs, checkov, Chromium (apt),
# Flux's source-controller and kustomize-controller (the GitOps test).
test-tools:
	hack/build-helm.sh >/dev/null
	hack/install-prometheus.sh >/dev/null
	hack/build-monitoring-crds.sh >/dev/null
	hack/install-checkov.sh >/dev/null
	hack/install-chromium.sh >/dev/null
	hack/build-flux.sh >/dev/null

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: setup
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest tests/unit

crds: setup
	$(BIN)/onceflow crds -o crds -o helm/onceflow/crds

docs: setup
	$(BIN)/python -m onceflow_operator.gen.apidoc docs/api-reference.md

argocd: setup
	$(BIN)/python -m onceflow_operator.gen.argocd manifests/argocd

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
