"""The pure rules behind "one effect per business key": bounded keys, key-store entries, ackWait."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from onceflow_operator.api import Integration
from onceflow_operator.cli import main
from onceflow_operator.compiler.planner import InvalidSpec, plan_from_integration
from onceflow_runner.adapters.keystore import kv_key
from onceflow_runner.contract.keys import (
    HASH_MARK,
    MAX_KEY_CHARS,
    MAX_MSG_ID_CHARS,
    KeyState,
    bounded_id,
    bounded_key,
)
from onceflow_runner.contract.messages import MaxDeliveriesAdvisory
from onceflow_runner.contract.plan import ConnectorPlan
from tests.unit.test_planner import load_examples


def test_short_printable_keys_are_kept_so_keys_stored_before_still_match() -> None:
    assert bounded_key("cust/DE123456789") == "cust/DE123456789"
    assert kv_key("sync", "k/a1") == "sync.ay9hMQ=="  # base64url of the key, as always


def test_two_4kb_keys_that_differ_only_at_the_end_stay_different_and_bounded() -> None:
    first, second = "L" * 4000 + "a", "L" * 4000 + "b"
    assert bounded_key(first) != bounded_key(second)
    assert len(bounded_key(first)) <= MAX_KEY_CHARS
    assert bounded_key(first).startswith("LLLL")
    assert len(kv_key("sync", first)) < 400, "the key store's subject stays far below the control line"


def test_a_hashed_form_can_never_be_forged_by_a_short_key() -> None:
    long_key = "x" * 500
    forged = bounded_key(long_key)
    assert HASH_MARK in forged
    assert bounded_key(forged) != forged  # a key that looks hashed is hashed again


@pytest.mark.parametrize("key", ["line\nbreak", "Müller GmbH", " padded\t"])
def test_keys_that_cannot_be_one_header_line_are_hashed(key: str) -> None:
    bounded = bounded_key(key)
    assert bounded.isascii()
    assert bounded.isprintable()
    assert HASH_MARK in bounded


def test_message_ids_are_hashed_not_truncated() -> None:
    base = "sales/crm/" + "d" * 300
    assert bounded_id(base + "1") != bounded_id(base + "2")
    assert len(bounded_id(base + "1")) <= MAX_MSG_ID_CHARS
    assert bounded_id("sales/crm/d1") == "sales/crm/d1"


def test_key_store_entries_written_before_claims_read_as_done_except_filtered_ones() -> None:
    assert KeyState.from_wire(json.dumps({"outcome": "completed", "revision": "r", "at": 1.0}).encode()).is_done
    assert not KeyState.from_wire(json.dumps({"outcome": "filtered", "revision": "r", "at": 1.0}).encode()).is_done
    claim = KeyState(state="claimed", owner="pod", lease_until=110.0)
    assert not claim.is_done
    assert claim.lease_left(100.0) == 10.0
    assert claim.lease_left(120.0) == 0.0
    assert KeyState.from_wire(claim.to_wire()) == claim


def test_jetstream_max_delivery_advisory_is_read_as_jetstream_writes_it() -> None:
    body = (
        b'{"type":"io.nats.jetstream.advisory.v1.max_deliver","id":"x","timestamp":"2024-01-01T00:00:00Z",'
        b'"stream":"ONCEFLOW_IN","consumer":"sales_sync","stream_seq":42,"deliveries":5}'
    )
    advisory = MaxDeliveriesAdvisory.from_wire(body)
    assert (advisory.stream, advisory.consumer, advisory.stream_seq, advisory.deliveries) == (
        "ONCEFLOW_IN",
        "sales_sync",
        42,
        5,
    )


def test_worst_call_counts_every_attempt_timing_out_and_the_longest_pauses() -> None:
    default = ConnectorPlan(name="erp", base_url="http://erp")
    assert default.worst_call_seconds == 3 * (5 + 30) + 2 * 10
    single = ConnectorPlan(name="erp", base_url="http://erp", attempts=1, connect_timeout=1, read_timeout=3)
    assert single.worst_call_seconds == 4


def _short_ack_wait(ack_wait: str) -> Integration:
    _, _, integrations = load_examples()
    onboarding = next(i for i in integrations if i.metadata["name"] == "customer-onboarding")
    raw = onboarding.model_dump(by_alias=True, exclude_none=True, mode="json")
    raw["spec"]["errorPolicy"]["ackWait"] = ack_wait
    return Integration.model_validate(raw)


def test_planner_refuses_an_ack_wait_shorter_than_one_call_and_says_what_to_set() -> None:
    connectors, policies, _ = load_examples()
    with pytest.raises(InvalidSpec) as caught:
        plan_from_integration(_short_ack_wait("30s"), connectors, policies["customer"], namespace="sales")
    (problem,) = [p for p in caught.value.problems if p.path == "spec.errorPolicy.ackWait"]
    assert problem.message.startswith(
        "30s is shorter than one call to Connector 'wms' can take "
        "(3 attempts x (5s connect + 30s read) + 20s backoff = 125s)"
    )
    assert "set ackWait to at least 125s" in problem.message


def test_the_default_ack_wait_fits_a_connector_with_default_timeouts() -> None:
    connectors, policies, _ = load_examples()
    plan = plan_from_integration(_short_ack_wait("3m"), connectors, policies["customer"], namespace="sales")
    assert all(plan.error_policy.ack_wait >= c.worst_call_seconds for c in plan.connectors.values())
    assert ConnectorPlan(name="d", base_url="http://d").worst_call_seconds <= 180


def test_onceflow_validate_checks_ack_wait_against_the_connectors_in_the_files(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2] / "examples"
    integration = _short_ack_wait("30s").model_dump(by_alias=True, exclude_none=True, mode="json")
    integration.pop("status", None)
    path = tmp_path / "flow.yaml"
    path.write_text(yaml.safe_dump(integration))
    result = CliRunner().invoke(main, ["validate", "-f", str(root / "common"), "-f", str(path)])
    assert result.exit_code == 1, result.output
    assert "Integration/customer-onboarding: spec.errorPolicy.ackWait: 30s is shorter than one call" in result.output
