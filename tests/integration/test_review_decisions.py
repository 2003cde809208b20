"""People's decisions against a real nats-server: one decision per exception however many reviewers
press at once, and a decision never sends a record anywhere it does not belong (issue 19)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client

from onceflow_operator.clients import topology
from onceflow_operator.dev.natsserver import NatsServer
from onceflow_operator.review.exceptions import ReviewError, decide, get_exception
from onceflow_runner.contract import headers, subjects
from onceflow_runner.contract.messages import ParkedRecord, RecordHeaders, ReviewAction, ReviewDecision
from tests.integration.review_streams import park
from tests.integration.scenario import stream_messages


@pytest.fixture
async def reviewers(nats_server: NatsServer) -> AsyncIterator[tuple[Client, Client]]:
    """Two reviewers, each with a connection of their own (the CLI and the console, say)."""
    alice, bob = await nats.connect(nats_server.url), await nats.connect(nats_server.url)
    await topology.ensure_streams(alice.jetstream())
    yield alice, bob
    await alice.close()
    await bob.close()


def namespace() -> str:
    return f"d{uuid.uuid4().hex[:8]}"


async def _decided_at_once(
    ns: str, round_: int, *choices: tuple[Client, str, ReviewAction]
) -> tuple[str, int, list[ReviewDecision | BaseException]]:
    """Park one record (its origin named by the round), then let every reviewer decide it at the same time.

    Each (connection, name, action) decides on its own connection. Returns the origin subject, the
    exception's sequence and every decide() outcome: a decision, or the error it raised.
    """
    origin = subjects.inbound_subject(ns, "crm", f"round{round_}")
    sequence = await park(choices[0][0].jetstream(), ns, original_subject=origin)
    results = await asyncio.gather(
        *(decide(c.jetstream(), ns, sequence, action, who=who, why="at once") for c, who, action in choices),
        return_exceptions=True,
    )
    return origin, sequence, list(results)


async def test_two_reviewers_deciding_at_once_make_one_decision_and_one_resend(
    reviewers: tuple[Client, Client], nats_server: NatsServer
) -> None:
    alice, bob = reviewers
    ns = namespace()
    for round_ in range(5):
        origin, sequence, results = await _decided_at_once(
            ns, round_, (alice, "alice", "approve"), (bob, "bob", "retry")
        )
        won = [r for r in results if isinstance(r, ReviewDecision)]
        lost = [r for r in results if isinstance(r, BaseException)]
        assert len(won) == 1, results
        assert len(lost) == 1, results
        assert isinstance(lost[0], ReviewError)
        winner = won[0]
        assert f"already decided: {winner.action} by {winner.who}" in str(lost[0])
        assert "nothing was sent" in str(lost[0])
        assert len(await stream_messages(nats_server.url, subjects.IN_STREAM, origin)) == 1
        record = await get_exception(alice.jetstream(), ns, sequence)
        assert record.decision is not None
        assert (record.decision.action, record.decision.who) == (winner.action, winner.who)


async def test_a_discard_and_an_approval_at_once_leave_the_record_saying_what_happened(
    reviewers: tuple[Client, Client], nats_server: NatsServer
) -> None:
    alice, bob = reviewers
    ns = namespace()
    for round_ in range(5):
        origin, sequence, results = await _decided_at_once(
            ns, round_, (alice, "alice", "discard"), (bob, "bob", "approve")
        )
        (winner,) = [r for r in results if isinstance(r, ReviewDecision)]
        record = await get_exception(alice.jetstream(), ns, sequence)
        assert record.decision is not None
        assert (record.decision.action, record.decision.who) == (winner.action, winner.who)
        resent = await stream_messages(nats_server.url, subjects.IN_STREAM, origin)
        assert len(resent) == (1 if winner.action == "approve" else 0)


async def test_a_decision_written_before_decisions_had_their_own_subject_still_stands(
    reviewers: tuple[Client, Client],
) -> None:
    alice, _ = reviewers
    js, ns = alice.jetstream(), namespace()
    sequence = await park(js, ns, integration="customer-sync")
    older = ReviewDecision(exception_sequence=sequence, action="discard", who="carol", time="2026-01-01T00:00:00+00:00")
    await js.publish(subjects.decisions_subject(ns, "customer-sync"), older.to_wire())
    record = await get_exception(js, ns, sequence)
    assert record.decision is not None
    assert record.decision.who == "carol"
    with pytest.raises(ReviewError, match="already decided: discard by carol"):
        await decide(js, ns, sequence, "approve", who="alice", why="too late")


async def test_an_approval_is_resent_naming_the_gate_it_was_given_at_after_the_earlier_ones(
    reviewers: tuple[Client, Client], nats_server: NatsServer
) -> None:
    alice, _ = reviewers
    js, ns = alice.jetstream(), namespace()
    origin = subjects.inbound_subject(ns, "crm", "customer.approved")
    first = await park(js, ns, original_subject=origin, step="duplicateCheck", reason="ApprovalRequired")
    await decide(js, ns, first, "approve", who="alice", why="a different company")
    (resent,) = await stream_messages(nats_server.url, subjects.IN_STREAM, origin)
    assert resent.headers[headers.APPROVED_STEPS] == "duplicateCheck"
    assert RecordHeaders.from_headers(resent.headers).approved_step_names == ("duplicateCheck",)

    # The runner parks the replayed record at the next gate, keeping the headers it arrived with.
    parked = ParkedRecord(
        reason="ApprovalRequired", step="priceCheck", integration="customer-sync", original_subject=origin
    )
    ack = await js.publish(
        subjects.exceptions_subject(ns, "customer-sync"), resent.data, headers=parked.to_headers(resent.headers)
    )
    await decide(js, ns, ack.seq, "approve", who="bob", why="price agreed")
    resent_again = (await stream_messages(nats_server.url, subjects.IN_STREAM, origin))[-1]
    assert RecordHeaders.from_headers(resent_again.headers).approved_step_names == ("duplicateCheck", "priceCheck")


async def test_a_decision_never_resends_a_forged_record_into_another_namespace(
    reviewers: tuple[Client, Client], nats_server: NatsServer
) -> None:
    alice, _ = reviewers
    js, ns, victim = alice.jetstream(), namespace(), namespace()
    into_victim = subjects.inbound_subject(victim, "crm", "customer.approved")
    sequence = await park(js, ns, original_subject=into_victim, reason="ApprovalRequired", step="duplicateCheck")
    for action in ("approve", "retry", "edit"):
        with pytest.raises(ReviewError, match=f"outside namespace {ns}: refused, nothing was recorded or sent"):
            await decide(js, ns, sequence, action, who="alice", why="looks fine", payload=b"{}")
    assert await stream_messages(nats_server.url, subjects.IN_STREAM, f"{subjects.namespace_root(victim)}.>") == []
    assert (await get_exception(js, ns, sequence)).decision is None
    await decide(js, ns, sequence, "discard", who="alice", why="forged: it names another namespace")
    assert (await get_exception(js, ns, sequence)).decision is not None
