"""The NATS header blocks the gateway and the runner encode: what nats-py would write, no header injection."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nats.js.errors import APIError

from onceflow_runner.adapters.natsio import JetStreamEvents, JetStreamWiring
from onceflow_runner.adapters.pubacks import Stored, header_block, read_puback
from onceflow_runner.contract import headers as h
from onceflow_runner.contract.headers import cloudevent_headers
from onceflow_runner.contract.keys import bounded_id, bounded_key
from onceflow_runner.contract.plan import Plan
from tests.unit.test_entities_and_engine import plan


def test_block_is_what_nats_py_writes_for_the_same_headers() -> None:
    block = header_block({"Nats-Msg-Id": " ns/src/d-1 ", "Content-Type": "application/json", "ce-source": "/ä"})
    assert (
        block
        == b"NATS/1.0\r\nNats-Msg-Id: ns/src/d-1\r\nContent-Type: application/json\r\nce-source: /\xc3\xa4\r\n\r\n"
    )


def test_a_value_cannot_end_its_header_and_add_another() -> None:
    block = header_block({"Content-Type": "text/plain\r\nNats-Expected-Stream: OTHER", "Onceflow-Event": "x\ny"})
    assert block == b"NATS/1.0\r\nContent-Type: text/plainNats-Expected-Stream: OTHER\r\nOnceflow-Event: xy\r\n\r\n"
    assert block.count(b"\r\n") == 4


# -- The canonical event's block, assembled from lines encoded once (issue 16, third pass) --------


class _Recorded:
    """Stands in for the wiring: keeps what `publish_event` would publish."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.sent: list[tuple[str, bytes, bytes]] = []

    async def publish_block(self, subject: str, payload: bytes, block: bytes) -> bool:
        self.sent.append((subject, payload, block))
        return False


def _event_plan(source: str, system: str) -> Plan:
    return plan(source=source).model_copy(update={"source_system": system})


def _as_before(plan: Plan, entity: str, verb: str, meta: dict[str, Any], msg_id: str, time: str) -> bytes:
    """The block as publish_event built it before: a dict through `header_block` (the reference)."""
    headers = cloudevent_headers(
        event_type=f"io.onceflow.{entity}.{verb}",
        source=f"/namespaces/{plan.namespace}/integrations/{plan.integration}",
        event_id=bounded_key(str(meta["businessKey"])),
        time=time,
        content_type="application/json",
    )
    headers[h.ORIGIN] = plan.source
    origin_system = str(meta.get("originSystem") or plan.source_system)
    if origin_system:
        headers[h.ORIGIN_SYSTEM] = origin_system
    headers[h.REVISION] = plan.revision
    if meta.get("traceparent"):
        headers[h.TRACEPARENT] = str(meta["traceparent"])
    headers[h.NATS_MSG_ID] = bounded_id(f"{plan.namespace}/{plan.integration}/{msg_id}")
    return header_block(headers)


_TEXT = st.text(max_size=40)  # lone surrogates included: written escaped, as header_block writes them


@settings(max_examples=300, deadline=None)
@given(
    key=_TEXT.filter(str.strip) | st.just("k/" + "x" * 400),
    origin_system=st.none() | _TEXT,
    plan_system=st.sampled_from(["", "erpnext", " crm\r\n"]),
    traceparent=st.none() | st.just("00-" + "a" * 32 + "-" + "b" * 16 + "-01") | _TEXT,
    msg_id=_TEXT,
    source=st.sampled_from(["crm", " shop \n"]),
)
def test_an_events_block_is_byte_for_byte_what_header_block_wrote(
    key: str, origin_system: str | None, plan_system: str, traceparent: str | None, msg_id: str, source: str
) -> None:
    plan_ = _event_plan(source, plan_system)
    wiring = _Recorded(plan_)
    events = JetStreamEvents(cast(JetStreamWiring, wiring))
    meta: dict[str, Any] = {"businessKey": key, "originSystem": origin_system, "traceparent": traceparent}
    asyncio.run(events.publish_event("customer", "created", {"a": 1}, msg_id=f"{key}/announce", meta=meta))
    subject, payload, block = wiring.sent[0]
    assert subject == f"{plan_.nats.events_prefix}.customer.created"
    assert payload == b'{"a": 1}'
    sent_time = next(line for line in block.split(b"\r\n") if line.startswith(b"ce-time: "))[9:].decode()
    datetime.fromisoformat(sent_time)  # now, as an RFC 3339 time
    assert block == _as_before(plan_, "customer", "created", meta, f"{key}/announce", sent_time)


def test_the_common_pubacks_are_read_without_json_and_the_rest_as_before() -> None:
    assert read_puback(b'{"stream":"ONCEFLOW_IN","seq":42}') == Stored(42, False)
    assert read_puback(b'{"stream":"KV_b","seq":7,"duplicate": true}') == Stored(7, True)
    assert read_puback(b'{"stream":"T","domain":"hub","seq":9}') == Stored(9, False)  # through json
    assert read_puback(b'{"stream":"T","seq":3,"duplicate":false}') == Stored(3, False)
    with pytest.raises(APIError) as lost:
        read_puback(
            b'{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 1"},"stream":"T","seq":0}'
        )
    assert lost.value.err_code == 10071
    with pytest.raises(APIError):
        read_puback(b"[1]")
