# Onceflow developer entry points. `make test` is the README's test command and what CI runs:
# it installs everything it needs (Python deps into .venv, kubectl and nats-server from PyPI,
# kube-apiserver + etcd, helm and the Prometheus Operator CRDs built once into ~/.cache/onceflow,
# checkov in its own venv there, Debian's prometheus package when prometheus/promtool are
# missing), then runs ruff, the import-linter layer contracts, mypy and pytest.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: docs argocd test demo setup control-plane test-tools lint typecheck unit crds clean chaos ecosystem

test: setup control-plane test-tools lint typecheck
	KUBEBUILDER_ASSETS="$$(hack/build-control-plane.sh | tail -n 1)" \
	ONCEFLOW_HELM="$$(hack/build-helm.sh | tail -n 1)" \
	ONCEFLOW_PROMETHEUS="$$(hack/install-prometheus.sh | tail -n 1)" \
	ONCEFLOW_MONITORING_CRDS="$$(hack/build-monitoring-crds.sh | tail -n 1)" \
	ONCEFLOW_CHECKOV="$$(hack/install-checkov.sh | tail -n 1)" \
	ONCEFLOW_CHROMIUM="$$(hack/install-chromium.sh | tail -n 1)" \
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

# What only the tests use: helm, Prometheus (apt), the Prometheus Operator CRDs, checkov, Chromium (apt).
test-tools:
	hack/build-helm.sh >/dev/null
	hack/install-prometheus.sh >/dev/null
	hack/build-monitoring-crds.sh >/dev/null
	hack/install-checkov.sh >/dev/null
	hack/install-chromium.sh >/dev/null

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: setup
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest tests/unit

# The chaos ledger at full size (issue #12): CHAOS_WEBHOOKS signed webhooks through a gateway and two
# runner processes to the sandbox ERP on a three-node NATS cluster (R3 streams), with ERP storms, a slow
# ERP, kill -9 of each runner, the stream leader killed and restarted, poison and duplicates; prints the
# ledger as JSON (also in CHAOS_SUMMARY). `make test` runs the same test with 600 webhooks.
CHAOS_WEBHOOKS ?= 10000
CHAOS_SUMMARY ?= chaos-summary.json
chaos: setup
	ONCEFLOW_CHAOS_WEBHOOKS=$(CHAOS_WEBHOOKS) ONCEFLOW_CHAOS_SUMMARY=$(CHAOS_SUMMARY) \
	$(BIN)/pytest tests/integration/test_chaos_ledger.py -q -p no:cacheprovider -o timeout=3600
	cat $(CHAOS_SUMMARY)

crds: setup
	$(BIN)/onceflow crds -o crds -o helm/onceflow/crds

docs: setup
	$(BIN)/python -m onceflow_operator.gen.apidoc docs/api-reference.md

argocd: setup
	$(BIN)/python -m onceflow_operator.gen.argocd manifests/argocd

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

# Tests against third-party systems built from source through the Go module proxy whose first
# build takes long (Jaeger for the tracing test, Flux's source and kustomize controllers for the
# GitOps test: about half an hour once on a 2-core machine, cached in ~/.cache/onceflow after).
# `make test` skips these two tests unless ONCEFLOW_JAEGER / ONCEFLOW_FLUX are set, so the fresh
# CI run stays within its time; their last run is recorded in docs/observability.md and docs/gitops.md.
ecosystem: setup control-plane
	KUBEBUILDER_ASSETS="$$(hack/build-control-plane.sh | tail -n 1)" \
	ONCEFLOW_JAEGER="$$(hack/build-jaeger.sh | tail -n 1)" \
	ONCEFLOW_FLUX="$$(hack/build-flux.sh | tail -n 1)" \
	$(BIN)/pytest -p no:randomly tests/integration/test_tracing.py tests/integration/test_gitops_flux.py
