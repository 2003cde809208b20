"""The chart's monitoring: alert rules (promtool check + unit tests), the PrometheusRule and
dashboard rendered from the same files, every metric they use really exported, and checkov's
Kubernetes checks over the rendered chart."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY as OPERATOR_REGISTRY
from prometheus_client import CollectorRegistry

import onceflow_operator.controller.metrics  # noqa: F401  (registers the operator's metrics)
from onceflow_runner.metrics import GatewayMetrics, RunnerMetrics
from tests.conftest import ROOT, Kubectl
from tests.integration.test_helm_chart import CHART, helm, render  # noqa: F401  (the helm fixture)
from tests.prometheus import prometheus_binary

pytestmark = pytest.mark.controlplane

ALERTS = CHART / "files" / "alerts.yaml"
DASHBOARD = CHART / "files" / "dashboard.json"
ALL_ON = ("serviceMonitor.enabled=true", "prometheusRule.enabled=true", "grafanaDashboard.enabled=true")


def promtool() -> str:
    found = shutil.which("promtool") or str(Path(prometheus_binary()).with_name("promtool"))
    assert Path(found).exists(), "promtool missing: run hack/install-prometheus.sh"
    return found


def test_alert_rules_pass_promtool_check_and_their_unit_tests() -> None:
    check = subprocess.run([promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    rules = [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]
    assert f"SUCCESS: {len(rules)} rules found" in check.stdout
    tests = ROOT / "tests" / "alerts" / "alerts_test.yaml"
    run = subprocess.run([promtool(), "test", "rules", str(tests)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr


def test_prometheus_rule_and_dashboard_are_rendered_from_the_chart_files(helm: str) -> None:  # noqa: F811
    docs = {d["kind"]: d for d in render(helm, *ALL_ON)}
    assert docs["PrometheusRule"]["spec"] == yaml.safe_load(ALERTS.read_text())
    assert json.loads(docs["ConfigMap"]["data"]["onceflow.json"]) == json.loads(DASHBOARD.read_text())
    assert docs["ConfigMap"]["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert docs["PodMonitor"]["spec"]["namespaceSelector"] == {"any": True}
    assert docs["ServiceMonitor"]["spec"]["endpoints"][0]["port"] == "metrics"
    assert {"PrometheusRule", "PodMonitor", "ServiceMonitor"}.isdisjoint(d["kind"] for d in render(helm))


def exported_names() -> set[str]:
    """Every series name Onceflow's operator, runners and gateways can expose."""
    names: set[str] = set()
    registries: list[CollectorRegistry] = [OPERATOR_REGISTRY, RunnerMetrics().registry, GatewayMetrics().registry]
    for registry in registries:
        for family in registry.collect():
            suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(family.type, [""])
            names.update(family.name + s for s in suffixes)
    return {n for n in names if n.startswith("onceflow_")}


def test_alerts_and_dashboard_use_only_metrics_that_are_exported() -> None:
    text = ALERTS.read_text() + DASHBOARD.read_text()
    used = set(re.findall(r"\b(onceflow_[a-z_]+)\b", text))
    assert used, "no Onceflow metric found in the rules or the dashboard"
    assert used <= exported_names(), f"not exported: {sorted(used - exported_names())}"
    dashboard = json.loads(DASHBOARD.read_text())
    assert all(p["targets"] for p in dashboard["panels"])


def cached_tool(env: str, script: str) -> str:
    """$ENV (set by `make test`), else run the hack script that builds or installs it once."""
    found = os.environ.get(env)
    if found:
        return found
    out = subprocess.run([str(ROOT / "hack" / script)], capture_output=True, text=True, check=True, timeout=1800)
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def checkov() -> str:
    return cached_tool("ONCEFLOW_CHECKOV", "install-checkov.sh")


def test_monitoring_objects_apply_against_the_prometheus_operator_crds(
    helm: str,  # noqa: F811
    admin_kubectl: Kubectl,
) -> None:
    crds = Path(cached_tool("ONCEFLOW_MONITORING_CRDS", "build-monitoring-crds.sh"))
    admin_kubectl.run("apply", "--server-side", "-f", str(crds))
    for name in ("servicemonitors", "podmonitors", "prometheusrules"):
        admin_kubectl.run("wait", "--for=condition=Established", f"crd/{name}.monitoring.coreos.com", "--timeout=60s")
    admin_kubectl.run("create", "namespace", "onceflow-monitoring", check=False)
    k = Kubectl(admin_kubectl.kubeconfig, "onceflow-monitoring")
    docs = [d for d in render(helm, *ALL_ON) if d["apiVersion"].startswith("monitoring.coreos.com/")]
    for doc in docs:
        doc["metadata"]["namespace"] = "onceflow-monitoring"
    assert sorted(d["kind"] for d in docs) == ["PodMonitor", "PrometheusRule", "ServiceMonitor"]
    k.run("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(docs))
    rule = yaml.safe_load(k.run("get", "prometheusrule", "of-alerts", "-o", "yaml").stdout)
    assert [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]] == [
        "OnceflowExceptionsGrowing",
        "OnceflowExceptionWaitingTooLong",
        "OnceflowDeadLetters",
        "OnceflowConsumerLag",
        "OnceflowPollFailing",
        "OnceflowRolloutAborted",
        "OnceflowConnectorUnreachable",
        "OnceflowConnectorAuthFailed",
        "OnceflowOperatorDown",
    ]


# Checks that do not fit what this chart is, each with the reason.
CHECKOV_SKIPS = {
    "CKV_K8S_11": "no CPU limit on purpose: a throttled operator misses watch deadlines; requests are set",
    "CKV_K8S_43": "the image is a value (image.repository/tag); pin a digest there for production",
    "CKV_K8S_15": "pullPolicy is a value (IfNotPresent suits an immutable release tag)",
    "CKV_K8S_38": "the operator and the console talk to the API server, so their pods need the service account token",
}


def test_checkov_kubernetes_checks_pass_on_the_rendered_chart(helm: str, checkov: str, tmp_path: Path) -> None:  # noqa: F811
    rendered = tmp_path / "chart.yaml"
    # The console as docs/operations.md deploys it: behind an oauth2-proxy sidecar, with an Ingress.
    console = ["-f", str(ROOT / "helm" / "examples" / "console-oauth2-proxy.yaml")]
    rendered.write_text(yaml.safe_dump_all(render(helm, *ALL_ON, extra=console)))
    proc = subprocess.run(
        [
            checkov,
            "--framework",
            "kubernetes",
            "-f",
            str(rendered),
            "--output",
            "json",
            "--quiet",
            "--compact",
            "--skip-check",
            ",".join(CHECKOV_SKIPS),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = json.loads(proc.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [
        f"{c['check_id']} {c['check_name']} ({c['resource']})" for r in reports for c in r["results"]["failed_checks"]
    ]
    passed = sum(int(r["summary"]["passed"]) for r in reports)
    assert not failed, "\n".join(failed)
    assert passed > 50, f"only {passed} checks ran"
