"""Several gateway processes per pod: the Connector's setting reaches the plan and the pod, and the
leader's /metrics is the sum over the processes (the backlog gauge the largest)."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from onceflow_operator.api.connector import Connector
from onceflow_operator.build.objects import build_gateway_deployment
from onceflow_operator.compiler.planner import gateway_plan
from onceflow_runner.gateway.processes import merge_metrics

OWNER = {"apiVersion": "onceflow.io/v1alpha1", "kind": "Connector", "metadata": {"name": "crm", "uid": "u1"}}


def _connector(**webhook: Any) -> Connector:
    return Connector.model_validate(
        {
            "apiVersion": "onceflow.io/v1alpha1",
            "kind": "Connector",
            "metadata": {"name": "crm"},
            "spec": {
                "type": "Webhook",
                "webhook": {"signature": {"scheme": "github", "secretRef": {"name": "gh", "key": "s"}}, **webhook},
            },
        }
    )


def test_processes_per_pod_reaches_the_plan_and_sizes_the_pod() -> None:
    assert gateway_plan(_connector(), namespace="sales").processes == 1
    plan = gateway_plan(_connector(processesPerPod=4), namespace="sales")
    assert plan.processes == 4
    deployment = build_gateway_deployment(
        plan, "crm-gateway-plan", OWNER, image="img", nats_url="nats://n:4222", replicas=1, secrets_checksum="x"
    )
    resources = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources == {"requests": {"cpu": "400m", "memory": "512Mi"}, "limits": {"memory": "1280Mi"}}


PROCESS_A = """# HELP onceflow_gateway_requests_total Webhook requests by answer code.
# TYPE onceflow_gateway_requests_total counter
onceflow_gateway_requests_total{code="202",connector="crm"} 10.0
onceflow_gateway_requests_created{code="202",connector="crm"} 1700000005.0
# HELP onceflow_gateway_backlog Consumer lag.
# TYPE onceflow_gateway_backlog gauge
onceflow_gateway_backlog{connector="crm"} 40.0
# HELP onceflow_gateway_accept_seconds Time from request to JetStream PubAck.
# TYPE onceflow_gateway_accept_seconds histogram
onceflow_gateway_accept_seconds_bucket{connector="crm",le="0.01"} 9.0
onceflow_gateway_accept_seconds_bucket{connector="crm",le="+Inf"} 10.0
onceflow_gateway_accept_seconds_count{connector="crm"} 10.0
onceflow_gateway_accept_seconds_sum{connector="crm"} 0.05
"""
PROCESS_B = """# HELP onceflow_gateway_requests_total Webhook requests by answer code.
# TYPE onceflow_gateway_requests_total counter
onceflow_gateway_requests_total{code="202",connector="crm"} 5.0
onceflow_gateway_requests_created{code="202",connector="crm"} 1700000001.0
onceflow_gateway_requests_total{code="429",connector="crm"} 2.0
# HELP onceflow_gateway_backlog Consumer lag.
# TYPE onceflow_gateway_backlog gauge
onceflow_gateway_backlog{connector="crm"} 42.0
# HELP onceflow_gateway_accept_seconds Time from request to JetStream PubAck.
# TYPE onceflow_gateway_accept_seconds histogram
onceflow_gateway_accept_seconds_bucket{connector="crm",le="0.01"} 5.0
onceflow_gateway_accept_seconds_bucket{connector="crm",le="+Inf"} 5.0
onceflow_gateway_accept_seconds_count{connector="crm"} 5.0
onceflow_gateway_accept_seconds_sum{connector="crm"} 0.02
"""


def test_metrics_of_the_processes_add_up_and_the_backlog_is_the_largest() -> None:
    merged = merge_metrics([PROCESS_A, PROCESS_B]).decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(merged)
        for s in family.samples
    }
    crm = (("connector", "crm"),)
    assert samples[("onceflow_gateway_requests_total", (("code", "202"), *crm))] == 15
    assert samples[("onceflow_gateway_requests_total", (("code", "429"), *crm))] == 2
    assert samples[("onceflow_gateway_requests_created", (("code", "202"), *crm))] == 1700000001
    assert samples[("onceflow_gateway_backlog", crm)] == 42
    assert samples[("onceflow_gateway_accept_seconds_bucket", (*crm, ("le", "0.01")))] == 14
    assert samples[("onceflow_gateway_accept_seconds_count", crm)] == 15
    assert abs(samples[("onceflow_gateway_accept_seconds_sum", crm)] - 0.07) < 1e-9
    assert "# TYPE onceflow_gateway_accept_seconds histogram" in merged
