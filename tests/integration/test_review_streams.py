"""The review page, the gauges and `onceflow trace` read every message of their streams, however
many there are: a decision stored after more than the old 10,000-message read limit still closes
its exception, and a trace still finds its key (issue 19, item 11)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client

from onceflow_operator.clients import topology
from onceflow_operator.dev.natsserver import NatsServer
from onceflow_operator.review.exceptions import decide, get_exception, list_exceptions, trace
from onceflow_runner.contract import subjects
from tests.integration.review_streams import fill, other_audit, other_decisions, park

OLD_LIMIT = 10_000


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await nats.connect(nats_server.url)
    await topology.ensure_streams(client.jetstream())
    yield client
    await client.close()


def namespace() -> str:
    return f"r{uuid.uuid4().hex[:8]}"


async def test_a_decision_stored_after_more_than_ten_thousand_others_closes_its_exception(nc: Client) -> None:
    js, ns = nc.jetstream(), namespace()
    sequence = await park(js, ns)
    await fill(nc, js, subjects.decisions_subject(ns, "noise"), other_decisions(OLD_LIMIT + 1))
    await decide(js, ns, sequence, "discard", who="alice", why="a test record")

    assert await list_exceptions(js, ns) == []  # the review page: nothing waits
    decided = await list_exceptions(js, ns, include_decided=True)  # the gauges' read
    assert [(r.sequence, r.decision.who if r.decision else None) for r in decided] == [(sequence, "alice")]
    record = await get_exception(js, ns, sequence)
    assert record.decision is not None
    assert record.decision.action == "discard"


async def test_trace_finds_a_key_recorded_after_more_than_ten_thousand_other_entries(nc: Client) -> None:
    js, ns = nc.jetstream(), namespace()
    await fill(nc, js, subjects.audit_subject(ns, "noise"), other_audit(OLD_LIMIT + 1))
    sequence = await park(js, ns, business_key="customer/late")
    await decide(js, ns, sequence, "discard", who="alice", why="a test record")

    events = await trace(js, ns, "customer/late")
    assert sorted(e.get("outcome") or e["kind"] for e in events) == ["decision", "exception"]


async def test_a_stream_read_pages_on_past_its_page_size_to_the_last_message(nc: Client) -> None:
    from onceflow_operator.review.reading import read_all

    js, ns = nc.jetstream(), namespace()
    subject = subjects.audit_subject(ns, "noise")
    await fill(nc, js, subject, other_audit(53))
    read = await read_all(js, subjects.AUDIT_STREAM, subject, page=7)
    assert len(read) == 53
    assert [m.sequence for m in read] == sorted(m.sequence for m in read)
    assert await read_all(js, subjects.AUDIT_STREAM, subjects.audit_subject(ns, "nothing-here"), page=7) == []
