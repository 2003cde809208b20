"""The Helm chart: lint, render in both RBAC modes, and apply to the real API server in a
restricted namespace. helm itself is built once from the Go module proxy (hack/build-helm.sh)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, Kubectl

pytestmark = pytest.mark.controlplane
CHART = ROOT / "helm" / "onceflow"


@pytest.fixture(scope="module")
def helm() -> str:
    path = (
        os.environ.get("ONCEFLOW_HELM")
        or subprocess.run(
            [str(ROOT / "hack" / "build-helm.sh")], capture_output=True, text=True, check=True, timeout=1200
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    assert Path(path).is_file()
    return path


def render(helm: str, *values: str, extra: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The chart rendered with `--set` values (and other helm arguments, e.g. `-f FILE`)."""
    args = [helm, "template", "of", str(CHART), "--namespace", "onceflow-helm", *extra]
    for value in values:
        args += ["--set", value]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=60).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_chart_lints_clean(helm: str) -> None:
    proc = subprocess.run(
        [helm, "lint", "--strict", str(CHART)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_cluster_wide_rbac_matches_the_kustomize_base(helm: str, admin_kubectl: Kubectl) -> None:
    chart_role = next(d for d in render(helm) if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "of-operator")
    base = yaml.safe_load_all(admin_kubectl.run("kustomize", str(ROOT / "manifests" / "base")).stdout)
    base_role = next(d for d in base if d["kind"] == "ClusterRole")
    discovery = [
        r
        for r in base_role["rules"]
        if r["apiGroups"] in (["apiextensions.k8s.io"], [""])
        and r["resources"] in (["customresourcedefinitions"], ["namespaces"])
    ]
    assert [r for r in base_role["rules"] if r not in discovery] == chart_role["rules"]


def test_namespaced_mode_reads_secrets_only_in_watched_namespaces(helm: str) -> None:
    docs = render(helm, "watch.allNamespaces=false", "watch.namespaces={sales,finance}")
    roles = [d for d in docs if d["kind"] == "Role" and not d["metadata"]["name"].endswith("-election")]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["finance", "sales"]
    # Leader election (two replicas by default): one Lease in the release's own namespace, nothing more.
    (election,) = [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"].endswith("-election")]
    assert election["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}
    ]
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert "--leader-elect" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    cluster_rules = [r for d in docs if d["kind"] == "ClusterRole" for r in d["rules"]]
    assert all("secrets" not in r["resources"] for r in cluster_rules)
    args = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=sales" in args
    assert "--all-namespaces" not in args


def test_values_schema_refuses_a_bad_nats_url(helm: str) -> None:
    proc = subprocess.run(
        [helm, "template", "of", str(CHART), "--set", "nats.url=http://nats:4222"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0
    assert "nats" in proc.stderr


def test_rendered_chart_applies_in_a_restricted_namespace(
    helm: str, admin_kubectl: Kubectl, crds_installed: None
) -> None:
    admin_kubectl.run("create", "namespace", "onceflow-helm", check=False)
    admin_kubectl.run(
        "label",
        "--overwrite",
        "namespace",
        "onceflow-helm",
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/warn=restricted",
    )
    k = Kubectl(admin_kubectl.kubeconfig, "onceflow-helm")
    result = k.run("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(render(helm)))
    assert "would violate PodSecurity" not in result.stderr, result.stderr
    assert (
        k.run(
            "auth",
            "can-i",
            "patch",
            "integrations.onceflow.io/status",
            "--as=system:serviceaccount:onceflow-helm:of-operator",
            "--all-namespaces",
        ).stdout.strip()
        == "yes"
    )


def test_data_plane_network_policies_in_each_namespace_match_the_kustomize_ones(
    helm: str, admin_kubectl: Kubectl
) -> None:
    docs = render(
        helm, "watch.allNamespaces=false", "watch.namespaces={sales}", "networkPolicy.dataPlaneNamespaces={ops}"
    )
    policies = {
        (d["metadata"]["namespace"], d["metadata"]["name"]): d["spec"]
        for d in docs
        if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] != "of-operator"
    }
    names = ["onceflow-drift-checks", "onceflow-edi", "onceflow-gateways", "onceflow-runners"]
    assert sorted(policies) == [(ns, n) for ns in ("ops", "sales") for n in names]
    gateway = policies[("sales", "onceflow-gateways")]
    assert [r["ports"] for r in gateway["ingress"]] == [
        [{"protocol": "TCP", "port": 8080}],
        [{"protocol": "TCP", "port": 9090}],
    ]
    assert [p["port"] for r in gateway["egress"] for p in r["ports"]] == [53, 53, 4222]
    runner = policies[("sales", "onceflow-runners")]
    assert [r["ports"] for r in runner["ingress"]] == [[{"protocol": "TCP", "port": 9090}]]
    edi = policies[("sales", "onceflow-edi")]
    assert [r["ports"] for r in edi["ingress"]] == [[{"protocol": "TCP", "port": 9090}]]
    assert [p["port"] for r in edi["egress"] for p in r["ports"]] == [53, 53, 4222, 22]
    base = yaml.safe_load_all(admin_kubectl.run("kustomize", str(ROOT / "manifests" / "data-plane")).stdout)
    assert {d["metadata"]["name"]: d["spec"] for d in base} == {n: policies[("sales", n)] for n in names}


def test_pod_monitor_scrapes_gateways_on_their_metrics_port_not_the_webhook_port(helm: str) -> None:
    monitor = next(d for d in render(helm, "serviceMonitor.enabled=true") if d["kind"] == "PodMonitor")
    assert monitor["spec"]["podMetricsEndpoints"] == [{"port": "metrics", "interval": "30s"}]


CONSOLE_VALUES = ROOT / "helm" / "examples" / "console-oauth2-proxy.yaml"


def render_failure(helm: str, *values: str) -> str:
    args = [helm, "template", "of", str(CHART)]
    for value in values:
        args += ["--set", value]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode != 0, "the chart rendered"
    return proc.stderr


def test_console_behind_the_documented_oauth2_proxy_applies_under_the_restricted_profile(
    helm: str, admin_kubectl: Kubectl
) -> None:
    namespace = "onceflow-console-chart"
    admin_kubectl.run("create", "namespace", namespace, check=False)
    admin_kubectl.run(
        "label",
        "--overwrite",
        "namespace",
        namespace,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/warn=restricted",
    )
    args = [helm, "template", "oc", str(CHART), "--namespace", namespace, "-f", str(CONSOLE_VALUES)]
    rendered = subprocess.run(args, capture_output=True, text=True, check=True, timeout=60).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d and d["metadata"]["name"] == "oc-console"]
    assert sorted(d["kind"] for d in docs) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Ingress",
        "NetworkPolicy",
        "Service",
        "ServiceAccount",
    ]
    k = Kubectl(admin_kubectl.kubeconfig, namespace)
    dry = k.run("apply", "--server-side", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump_all(docs))
    assert "would violate PodSecurity" not in dry.stderr, dry.stderr
    k.run("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(docs))
    pod = yaml.safe_load(k.run("get", "deployment", "oc-console", "-o", "yaml").stdout)["spec"]["template"]["spec"]
    console, proxy = pod["containers"]
    assert console["args"] == ["console", "--auth=proxy", "--host=0.0.0.0", "--port=8088", f"--namespace={namespace}"]
    env = {e["name"]: e for e in console["env"]}
    assert "ONCEFLOW_CONSOLE_TRUSTED_PROXIES" not in env  # loopback only: the sidecar
    assert env["ONCEFLOW_CONSOLE_CSRF_KEY_FILE"]["value"] == "/etc/onceflow/console/csrf-key"
    assert proxy["name"] == "oauth2-proxy"
    service = yaml.safe_load(k.run("get", "service", "oc-console", "-o", "yaml").stdout)
    assert service["spec"]["ports"][0]["targetPort"] == "oauth2"
    policy = yaml.safe_load(k.run("get", "networkpolicy", "oc-console", "-o", "yaml").stdout)
    assert [p["port"] for p in policy["spec"]["ingress"][0]["ports"]] == [4180]  # not the console's own port
    account = f"--as=system:serviceaccount:{namespace}:oc-console"
    for resource in ("tokenreviews.authentication.k8s.io", "subjectaccessreviews.authorization.k8s.io"):
        assert k.run("auth", "can-i", "create", resource, account).stdout.strip() == "yes"
    assert k.run("auth", "can-i", "get", "secrets", account, check=False).stdout.strip() == "no"


def test_console_in_token_mode_names_its_audiences_and_opens_its_own_port(helm: str) -> None:
    docs = render(helm, "console.enabled=true", "console.auth=token", "console.defaultNamespace=sales")
    deployment = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "of-console")
    (console,) = deployment["spec"]["template"]["spec"]["containers"]
    assert "--namespace=sales" in console["args"]
    assert {e["name"]: e.get("value") for e in console["env"]}["ONCEFLOW_CONSOLE_AUDIENCES"] == "onceflow-console"
    policy = next(d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "of-console")
    assert [p["port"] for p in policy["spec"]["ingress"][0]["ports"]] == [8088]
    operator_policy = next(d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "of-operator")
    assert operator_policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "onceflow-operator"
    assert deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == "onceflow-console"


def test_console_values_that_cannot_work_are_refused_when_rendering(helm: str) -> None:
    assert "csrfKeySecret" in render_failure(helm, "console.enabled=true", "console.auth=token", "console.replicas=2")
    assert "needs its proxy" in render_failure(helm, "console.enabled=true", "console.auth=proxy")
    assert "ingress.host" in render_failure(
        helm, "console.enabled=true", "console.auth=token", "console.ingress.enabled=true"
    )
    assert "console" in render_failure(helm, "console.enabled=true", "console.auth=oidc")


def test_tracing_endpoint_reaches_the_operator_and_opens_the_collector_port_to_the_data_plane(helm: str) -> None:
    docs = render(
        helm,
        "tracing.otlpEndpoint=http://collector.obs.svc:4318",
        "tracing.hashBusinessKeys=true",
        "watch.allNamespaces=false",
        "watch.namespaces={sales}",
    )
    operator = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "of-operator")
    env = {e["name"]: e.get("value") for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector.obs.svc:4318"
    assert env["ONCEFLOW_TRACE_HASH_KEYS"] == "true"
    policies = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "NetworkPolicy"}
    for name in ("onceflow-gateways", "onceflow-runners"):
        assert 4318 in [p["port"] for r in policies[name]["egress"] for p in r["ports"]]
    assert 4318 not in [p["port"] for r in policies["onceflow-edi"]["egress"] for p in r["ports"]]
    untraced = render(helm)
    operator = next(d for d in untraced if d["kind"] == "Deployment" and d["metadata"]["name"] == "of-operator")
    assert not [
        e for e in operator["spec"]["template"]["spec"]["containers"][0]["env"] if e["name"].startswith("OTEL_")
    ]
    assert "does not match" in render_failure(helm, "tracing.otlpEndpoint=collector:4318")


def test_a_hash_key_secret_reaches_the_operator_and_lets_it_write_each_namespaces_key(helm: str) -> None:
    def secret_verbs(docs: list[dict[str, Any]]) -> list[str]:
        role = next(d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "of-operator")
        return next(r["verbs"] for r in role["rules"] if r["resources"] == ["secrets"])

    traced = ("tracing.otlpEndpoint=http://collector.obs.svc:4318", "tracing.hashBusinessKeys=true")
    docs = render(helm, *traced, "tracing.hashKeySecret=onceflow-trace-master")
    assert _operator_env(docs)["ONCEFLOW_TRACE_HASH_MASTER_KEY"] == {
        "secretKeyRef": {"name": "onceflow-trace-master", "key": "key"}
    }
    assert secret_verbs(docs) == ["get", "create", "patch"]
    # Without a key the operator writes no Secret, and may not.
    unkeyed = render(helm, *traced)
    assert "ONCEFLOW_TRACE_HASH_MASTER_KEY" not in _operator_env(unkeyed)
    assert secret_verbs(unkeyed) == ["get"]
    assert "does not match" in render_failure(helm, *traced, "tracing.hashKeySecret=Not_A_Name")


NATS_JWT_VALUES = ROOT / "helm" / "examples" / "onceflow-values-nats-jwt.yaml"
NATS_CHART_VALUES = ROOT / "helm" / "examples" / "nats-values.yaml"


def _operator_env(docs: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "of-operator")
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in env}


def test_the_documented_jwt_values_configure_the_operator_to_issue_namespace_identities(helm: str) -> None:
    docs = render(helm, extra=["-f", str(NATS_JWT_VALUES)])
    env = _operator_env(docs)
    assert env["ONCEFLOW_NATS_CREDS"] == {"secretKeyRef": {"name": "onceflow-nats-jwt", "key": "operator.creds"}}
    assert env["ONCEFLOW_NATS_ACCOUNT_SIGNING_KEY"]["secretKeyRef"]["key"] == "account-signing-key"
    assert env["ONCEFLOW_NATS_ACCOUNT"].startswith("A")
    assert env["ONCEFLOW_STREAM_REPLICAS"] == "3"
    assert env["ONCEFLOW_STREAM_DUPLICATE_WINDOW"] == "10m"
    assert "ONCEFLOW_NATS_AUTH_SECRET" not in env
    role = next(d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "of-operator")
    (secrets,) = [r for r in role["rules"] if "secrets" in r["resources"]]
    assert secrets["verbs"] == ["get", "create", "patch"]  # it writes each namespace's onceflow-nats Secret
    # Without JWT auth, Secrets stay read-only and no stream setting is passed (Onceflow's defaults).
    plain = render(helm)
    (plain_secrets,) = [
        r
        for d in plain
        if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "of-operator"
        for r in d["rules"]
        if "secrets" in r["resources"]
    ]
    assert plain_secrets["verbs"] == ["get"]
    assert not [name for name in _operator_env(plain) if name.startswith("ONCEFLOW_STREAM_")]


def test_jwt_values_without_the_account_or_with_bad_stream_settings_are_refused(helm: str) -> None:
    for values in (["nats.jwt.secret=s"], ["jetstream.storage=disk"], ["jetstream.replicas=0"]):
        args = [helm, "template", "of", str(CHART)] + [a for v in values for a in ("--set", v)]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode != 0, values
    proc = subprocess.run(
        [helm, "template", "of", str(CHART), "--set", "nats.jwt.secret=s"], capture_output=True, text=True, check=False
    )
    assert "nats.jwt.account" in proc.stderr


def test_the_documented_nats_chart_values_run_three_jetstream_servers_with_the_jwt_resolver() -> None:
    values = yaml.safe_load(NATS_CHART_VALUES.read_text())
    assert values["config"]["cluster"] == {"enabled": True, "replicas": 3}
    assert values["config"]["jetstream"]["enabled"] is True
    assert "sync_interval" in values["config"]["jetstream"]["merge"]
    assert values["config"]["merge"]["$include"].endswith("auth.conf")
    jwt = yaml.safe_load(NATS_JWT_VALUES.read_text())
    assert int(jwt["jetstream"]["replicas"]) == values["config"]["cluster"]["replicas"]


def test_account_isolation_values_give_the_operator_the_keys_to_sign_and_push_namespace_accounts(helm: str) -> None:
    docs = render(
        helm,
        extra=[
            "-f",
            str(NATS_JWT_VALUES),
            "--set",
            "nats.isolation=account",
            "--set",
            "nats.accountLimits.maxDisk=10737418240",
            "--set",
            "nats.accountLimits.maxConsumers=4000",
        ],
    )
    env = _operator_env(docs)
    assert env["ONCEFLOW_NATS_ISOLATION"] == "account"
    assert env["ONCEFLOW_NATS_OPERATOR_SIGNING_KEY"]["secretKeyRef"]["key"] == "operator-signing-key"
    assert env["ONCEFLOW_NATS_SYSTEM_CREDS"]["secretKeyRef"]["key"] == "system.creds"
    assert (env["ONCEFLOW_NATS_ACCOUNT_MAX_DISK"], env["ONCEFLOW_NATS_ACCOUNT_MAX_CONSUMERS"]) == (
        "10737418240",
        "4000",
    )
    assert "ONCEFLOW_NATS_ACCOUNT_MAX_STREAMS" not in env  # empty: no limit
    with_console = render(
        helm,
        extra=[
            "-f",
            str(NATS_JWT_VALUES),
            "--set",
            "nats.isolation=account",
            "--set",
            "console.enabled=true",
            "--set",
            "console.auth=token",
        ],
    )
    console = next(d for d in with_console if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("console"))
    console_env = {
        e["name"]: e.get("value", e.get("valueFrom"))
        for e in console["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert console_env["ONCEFLOW_NATS_ISOLATION"] == "account"
    assert console_env["ONCEFLOW_NATS_OPERATOR_SIGNING_KEY"]["secretKeyRef"]["key"] == "operator-signing-key"
    assert "ONCEFLOW_NATS_SYSTEM_CREDS" not in console_env  # it reads accounts, it never pushes them
    assert "ONCEFLOW_NATS_ISOLATION" not in _operator_env(render(helm, extra=["-f", str(NATS_JWT_VALUES)]))
    assert "must be one of" in render_failure(helm, "nats.isolation=tenant")
