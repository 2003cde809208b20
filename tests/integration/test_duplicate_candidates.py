"""A parked duplicate's candidates against a real nats-server (issue #15, item 3).

The runner's wiring stores them in full in a message of their own beside the exceptions; review
reads them back whole (100 candidates of 2 KB each), never lists that message as an exception,
shows no other namespace's candidates, still reads the old header, and turns a reviewer's verdict
into labels.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import nats
import pytest
from nats.aio.client import Client

from onceflow_operator.clients import topology
from onceflow_operator.dev.natsserver import NatsServer
from onceflow_operator.review.exceptions import AlreadyDecided, ReviewError, decide, get_exception, list_exceptions
from onceflow_operator.review.labels import read_labels
from onceflow_runner.adapters import natsio
from onceflow_runner.contract import headers, subjects
from onceflow_runner.contract.messages import ParkedCandidates, ParkedRecord
from tests.integration.scenario import stream_messages
from tests.unit.test_entities_and_engine import plan


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await nats.connect(nats_server.url)
    await topology.ensure_streams(client.jetstream())
    yield client
    await client.close()


def _wiring(nc: Client, namespace: str) -> natsio.JetStreamWiring:
    """The runner's wiring of one revision, for what this test needs (publishing): no consumer, no key store."""
    revision = plan().model_copy(update={"namespace": namespace, "integration": "onboarding"})
    return natsio.JetStreamWiring(nc, nc.jetstream(), cast(Any, None), revision)


def _candidates(count: int, size: int) -> list[dict[str, Any]]:
    return [
        {
            "rule": "similar-name-same-postcode",
            "score": round(1 - i / 1000, 3),
            "fields": [
                {"field": "postal_code", "level": "exact", "record": "10115", "candidate": "10115"},
                {"field": "name", "level": "fuzzy 0.95", "record": "Acme GmbH", "candidate": f"Acme GmbH {i}"},
            ],
            "candidate": {"name": f"CUST-{i:04d}", "customer_name": f"Acme GmbH {i}", "notes": "n" * size},
        }
        for i in range(count)
    ]


async def _park(nc: Client, namespace: str, candidates_at: int = 0, stream_sequence: int = 1, **extra: str) -> int:
    """Put a possible duplicate into the exception stream as the runner's `_park` does; its sequence.

    `extra` headers are written as an older runner wrote them (the old candidates header).
    """
    parked = ParkedRecord(
        reason="ApprovalRequired",
        error="possible duplicate",
        step="existing",
        integration="onboarding",
        revision="onboarding-1",
        business_key="customer/DE1",
        original_subject=subjects.inbound_subject(namespace, "crm", "customer.created"),
        stream_sequence=stream_sequence,
        deliveries=1,
        candidates_at=candidates_at,
        entity="customer",
    )
    ack = await nc.jetstream().publish(
        subjects.exceptions_subject(namespace, "onboarding"),
        b'{"company": "Acme"}',
        headers=parked.to_headers() | extra,
    )
    return int(ack.seq)


async def test_a_hundred_candidates_of_two_kilobytes_reach_the_reviewer_intact(
    nc: Client, nats_server: NatsServer
) -> None:
    ns = f"c{uuid.uuid4().hex[:8]}"
    sent = _candidates(100, 2000)
    stored = ParkedCandidates(
        integration="onboarding",
        business_key="customer/DE1",
        stream_sequence=1,
        record={"name": "Acme GmbH"},
        candidates=sent,
    )
    at = await _wiring(nc, ns).publish_candidates(stored, "candidates/onboarding/1")
    again = await _wiring(nc, ns).publish_candidates(stored, "candidates/onboarding/1")
    assert again == at  # a park retried within the duplicate window stores them once
    sequence = await _park(nc, ns, at)
    record = await get_exception(nc.jetstream(), ns, sequence)
    assert record.candidates == sent
    assert record.candidates_omitted == 0
    assert record.matched == {"name": "Acme GmbH"}
    assert record.entity == "customer"
    listed = await list_exceptions(nc.jetstream(), ns)
    assert [r.sequence for r in listed] == [sequence]  # the candidates' message is no exception
    (parked,) = await stream_messages(nats_server.url, subjects.EXCEPTIONS_STREAM, subjects.exceptions_subject(ns, "*"))
    assert headers.CANDIDATES not in parked.headers


async def test_candidates_beyond_the_servers_largest_message_keep_the_best_and_say_how_many_were_left_out(
    nc: Client,
) -> None:
    ns = f"c{uuid.uuid4().hex[:8]}"
    # Many candidates of 1.5 KB (long texts would be cut first): together over the largest message.
    sent = _candidates(nc.max_payload // 1500, 1500)
    at = await _wiring(nc, ns).publish_candidates(
        ParkedCandidates(integration="onboarding", stream_sequence=1, candidates=sent), "c/big"
    )
    record = await get_exception(nc.jetstream(), ns, await _park(nc, ns, at))
    assert 0 < len(record.candidates) < len(sent)
    assert record.candidates == sent[: len(record.candidates)]
    assert record.candidates_omitted == len(sent) - len(record.candidates)


async def test_another_namespaces_candidates_are_never_shown_and_the_old_header_still_is(nc: Client) -> None:
    ours, theirs = f"c{uuid.uuid4().hex[:8]}", f"c{uuid.uuid4().hex[:8]}"
    at = await _wiring(nc, theirs).publish_candidates(
        ParkedCandidates(integration="onboarding", candidates=_candidates(1, 10)), "c/theirs"
    )
    pointed = await get_exception(nc.jetstream(), ours, await _park(nc, ours, at))
    assert pointed.candidates == []
    old = [{"rule": "same-tax-id", "score": 1.0, "candidate": {"name": "CUST-1"}}]
    from_header = await get_exception(
        nc.jetstream(), ours, await _park(nc, ours, **{headers.CANDIDATES: json.dumps(old)})
    )
    assert from_header.candidates == old


async def test_a_reviewers_verdicts_are_read_back_as_labels(nc: Client) -> None:
    ns = f"c{uuid.uuid4().hex[:8]}"
    wiring = _wiring(nc, ns)
    sent = _candidates(3, 10)
    stored = ParkedCandidates(
        integration="onboarding", stream_sequence=1, record={"name": "Acme GmbH"}, candidates=sent
    )
    same = await _park(nc, ns, await wiring.publish_candidates(stored, "c/1"))
    different = await _park(nc, ns, await wiring.publish_candidates(stored, "c/2"))
    js = nc.jetstream()
    with pytest.raises(ReviewError, match="rejected or discarded"):
        await decide(js, ns, same, "approve", who="alice", why="x", verdict="same", same_as=1)
    assert (await get_exception(js, ns, same)).decision is None  # a refused verdict records nothing
    await decide(js, ns, same, "reject", who="alice", why="CUST-0001 is them", verdict="same", same_as=1)
    await decide(js, ns, different, "approve", who="bob", why="new branch", verdict="notSame")
    labels = [label.to_dict() for label in await read_labels(js, ns)]
    assert [(lb["exception"], lb["right"]["name"], lb["same"], lb["who"]) for lb in labels] == [
        (same, "CUST-0001", True, "alice"),
        (different, "CUST-0000", False, "bob"),
        (different, "CUST-0001", False, "bob"),
        (different, "CUST-0002", False, "bob"),
    ]
    assert all(lb["left"] == {"name": "Acme GmbH"} and lb["entity"] == "customer" for lb in labels)
    json.dumps(labels)  # one JSON object a line, as a labels file holds them
    decided = await get_exception(js, ns, same)
    assert decided.decision is not None
    assert (decided.decision.verdict, decided.decision.same_as) == ("same", 1)


async def test_same_named_integrations_reading_different_streams_keep_their_own_candidates(nc: Client) -> None:
    # Finding (outside review): the candidates' message id was `candidates/<integration>/<sequence>`
    # on the shared exceptions stream, so a same-named Integration in another namespace, reading
    # another stream at the same sequence within the duplicate window, got the first one's
    # sequence back: its reviewer saw no candidates (or, in one namespace, the wrong ones).
    ours, theirs = f"c{uuid.uuid4().hex[:8]}", f"c{uuid.uuid4().hex[:8]}"
    from_events = _wiring(nc, theirs)
    from_events.plan = from_events.plan.model_copy(
        update={"nats": from_events.plan.nats.model_copy(update={"stream": subjects.EVENTS_STREAM})}
    )
    theirs_at = await from_events.publish_candidates(
        ParkedCandidates(integration="onboarding", stream_sequence=7, candidates=_candidates(1, 10))
    )
    mine = _candidates(2, 10)
    ours_at = await _wiring(nc, ours).publish_candidates(
        ParkedCandidates(integration="onboarding", stream_sequence=7, candidates=mine)
    )
    assert ours_at != theirs_at
    assert (
        await get_exception(nc.jetstream(), ours, await _park(nc, ours, ours_at, stream_sequence=7))
    ).candidates == mine
    again = await _wiring(nc, ours).publish_candidates(
        ParkedCandidates(integration="onboarding", stream_sequence=7, candidates=mine)
    )
    assert again == ours_at  # the same record parked again within the window is still stored once


async def test_candidates_of_another_record_or_unreadable_ones_are_never_shown_and_the_record_is_still_decided(
    nc: Client,
) -> None:
    # Finding: any message on the Integration's candidates subject was shown, whichever record it
    # explained; and one that was not a candidates message made the exception impossible to open,
    # so nobody could even discard it.
    ns = f"c{uuid.uuid4().hex[:8]}"
    js = nc.jetstream()
    other = await _wiring(nc, ns).publish_candidates(
        ParkedCandidates(integration="onboarding", stream_sequence=99, candidates=_candidates(1, 10))
    )
    pointed = await get_exception(js, ns, await _park(nc, ns, other))  # this record's stream sequence is 1
    assert pointed.candidates == []
    garbage = await js.publish(subjects.exception_candidates_subject(ns, "onboarding"), b"<html>not json")
    broken = await _park(nc, ns, int(garbage.seq))
    assert (await get_exception(js, ns, broken)).candidates == []
    with pytest.raises(ReviewError, match="no duplicate candidates"):
        await decide(js, ns, broken, "reject", who="alice", why="x", verdict="same", same_as=0)
    await decide(js, ns, broken, "discard", who="alice", why="cannot tell")
    assert (await get_exception(js, ns, broken)).decision is not None


async def test_verdicts_that_do_not_fit_are_refused_and_labels_stay_in_their_namespace(nc: Client) -> None:
    # Outside review, what held: a verdict on a record parked for another reason, a candidate
    # number out of range or negative, a second verdict, and labels asked for from another namespace.
    ns, other = f"c{uuid.uuid4().hex[:8]}", f"c{uuid.uuid4().hex[:8]}"
    js = nc.jetstream()
    wiring = _wiring(nc, ns)
    stored = ParkedCandidates(integration="onboarding", stream_sequence=1, candidates=_candidates(2, 10))
    duplicate = await _park(nc, ns, await wiring.publish_candidates(stored))
    invalid = await _park(nc, ns)  # parked without candidates (e.g. a rule failed)
    with pytest.raises(ReviewError, match="no duplicate candidates"):
        await decide(js, ns, invalid, "approve", who="mallory", why="x", verdict="notSame")
    for index in (2, -1, 10**9):
        with pytest.raises(ReviewError, match="1 to 2"):
            await decide(js, ns, duplicate, "reject", who="mallory", why="x", verdict="same", same_as=index)
    with pytest.raises(ReviewError, match="names no candidate"):
        await decide(js, ns, duplicate, "approve", who="mallory", why="x", verdict="notSame", same_as=0)
    await decide(js, ns, duplicate, "reject", who="alice", why="is CUST-0000", verdict="same", same_as=0)
    with pytest.raises(AlreadyDecided):
        await decide(js, ns, duplicate, "approve", who="bob", why="no", verdict="notSame")
    assert [(lb.exception, lb.same, lb.who) for lb in await read_labels(js, ns)] == [(duplicate, True, "alice")]
    assert await read_labels(js, other) == []
    with pytest.raises(ReviewError, match="no exception"):
        await decide(js, other, duplicate, "reject", who="mallory", why="x", verdict="same", same_as=0)


async def test_candidates_deleted_or_expired_leave_the_exception_open_without_a_verdict(nc: Client) -> None:
    # Outside review, what held: the candidates' message gone (deleted, or aged out of the stream
    # before its exception) leaves the exception readable, listed and decidable, with no verdict.
    ns = f"c{uuid.uuid4().hex[:8]}"
    js = nc.jetstream()
    at = await _wiring(nc, ns).publish_candidates(
        ParkedCandidates(integration="onboarding", stream_sequence=1, candidates=_candidates(1, 10))
    )
    sequence = await _park(nc, ns, at)
    await js.delete_msg(subjects.EXCEPTIONS_STREAM, at)
    record = await get_exception(js, ns, sequence)
    assert (record.candidates, record.candidates_at) == ([], at)
    assert [r.sequence for r in await list_exceptions(js, ns)] == [sequence]
    with pytest.raises(ReviewError, match="no duplicate candidates"):
        await decide(js, ns, sequence, "reject", who="alice", why="x", verdict="same", same_as=0)
    await decide(js, ns, sequence, "reject", who="alice", why="cannot compare; CRM resends")
