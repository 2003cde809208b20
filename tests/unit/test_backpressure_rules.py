"""Which runners' lag holds a gateway back, and for how long a report counts."""

from __future__ import annotations

from pathlib import Path

import pytest

from onceflow_runner.contract.messages import Heartbeat
from onceflow_runner.contract.plan import PLAN_VERSION, GatewayPlan
from onceflow_runner.gateway.server import BACKLOG_FRESH_SECONDS, Gateway, reads_from

PLAN = GatewayPlan.model_validate(
    {
        "planVersion": PLAN_VERSION,
        "namespace": "ns",
        "connector": "src",
        "signature": {"scheme": "hmac", "header": "X-Signature", "secret": {"name": "sig", "key": "secret"}},
        "max_backlog": 100,
        "subject_prefix": "onceflow.ns.in.src",
    }
)


@pytest.mark.parametrize(
    ("pattern", "reads"),
    [
        ("onceflow.ns.in.src.customer.approved", True),
        ("onceflow.ns.in.src.>", True),
        ("onceflow.ns.in.*.customer.approved", True),
        ("onceflow.ns.>", True),
        ("onceflow.ns.in.src", False),  # the gateway never publishes on the bare prefix
        ("onceflow.ns.in.shop.order.created", False),
        ("onceflow.other.in.src.>", False),
        ("onceflow.ns.events.customer.created", False),
    ],
)
def test_a_runner_counts_for_the_gateway_only_when_its_trigger_can_receive_the_gateways_records(
    pattern: str, reads: bool
) -> None:
    assert reads_from(pattern, "onceflow.ns.in.src") is reads


def test_the_backlog_is_the_slowest_fresh_runners_lag_and_a_silent_runner_stops_counting(tmp_path: Path) -> None:
    (tmp_path / "sig").mkdir()
    (tmp_path / "sig" / "secret").write_text("s" * 32)
    gateway = Gateway(PLAN, nats_url="nats://127.0.0.1:1", secrets_dir=tmp_path)

    def beat(integration: str, subject: str, lag: int) -> Heartbeat:
        return Heartbeat(integration=integration, revision="r1", pod="p", subject=subject, consumer_lag=lag)

    gateway._heard("ns", beat("orders", "onceflow.ns.in.src.>", 40))
    gateway._heard("ns", beat("invoices", "onceflow.ns.in.src.invoice.created", 700))
    gateway._heard("ns", beat("shop", "onceflow.ns.in.shop.>", 9000))  # another Connector's records
    assert gateway.backlog() == 700
    assert gateway.backlog(now=10**9) == 0  # nobody reported within BACKLOG_FRESH_SECONDS
    assert BACKLOG_FRESH_SECONDS >= 3 * 2.0  # three missed heartbeats before a runner stops counting
