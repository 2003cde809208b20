"""Acknowledged publishes (`adapters.pubacks`) against a real nats-server.

They replace nats-py's `js.publish` on the gateway's and the runner's hot paths, so they must
answer the same way: a stored message's sequence, a duplicate within the window, headers the
runner reads as written, JetStream's error code when a compare-and-set loses,
NoStreamResponseError when no stream takes the subject, TimeoutError when no PubAck comes (never
a silent success); and many concurrent publishes each get their own answer. The fallback through
`Client.publish` (a nats-py without `_send_command`) must behave the same.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.js.api import StreamConfig
from nats.js.errors import APIError, NoStreamResponseError

from onceflow_operator.clients.topology import ensure_streams
from onceflow_runner.adapters.pubacks import AckedPublisher, header_block
from onceflow_runner.contract.subjects import IN_STREAM


async def _stream(nc: Client) -> str:
    """A stream of its own (named like its subjects' prefix) per test."""
    prefix = f"pubacks_{uuid.uuid4().hex[:8]}"
    await nc.jetstream().add_stream(StreamConfig(name=prefix, subjects=[f"{prefix}.>"], duplicate_window=60))
    return prefix


async def test_stored_duplicate_and_concurrent_answers(nc: Client) -> None:
    prefix = await _stream(nc)
    acks = AckedPublisher(nc)
    first = await acks.publish(f"{prefix}.a", b"one", {"Nats-Msg-Id": "k1"})
    again = await acks.publish(f"{prefix}.a", b"one", {"Nats-Msg-Id": "k1"})
    assert (first.seq, first.duplicate) == (1, False)
    assert again.duplicate
    assert again.seq == 1
    many = await asyncio.gather(*(acks.publish(f"{prefix}.b", str(i).encode()) for i in range(200)))
    assert sorted(s.seq for s in many) == list(range(2, 202))
    assert not any(s.duplicate for s in many)
    stored = await nc.jetstream().get_msg(prefix, subject=f"{prefix}.b")
    assert stored.data is not None
    assert stored.seq == 201


async def test_lost_compare_and_set_is_jetstreams_error(nc: Client) -> None:
    prefix = await _stream(nc)
    acks = AckedPublisher(nc)
    await acks.publish(f"{prefix}.key", b"claimed", {"Nats-Expected-Last-Subject-Sequence": "0"})
    with pytest.raises(APIError) as lost:
        await acks.publish(f"{prefix}.key", b"again", {"Nats-Expected-Last-Subject-Sequence": "0"})
    assert lost.value.err_code == 10071


async def test_no_stream_and_no_answer(nc: Client) -> None:
    acks = AckedPublisher(nc, timeout=0.3)
    with pytest.raises(NoStreamResponseError):
        await acks.publish(f"nostream.{uuid.uuid4().hex}", b"x")
    # A subscriber that never answers: the publish gives up after the timeout, and nothing is left pending.
    silent = f"silent.{uuid.uuid4().hex}"
    await nc.subscribe(silent)
    with pytest.raises(nats.errors.TimeoutError):
        await acks.publish(silent, b"x")
    assert not acks._pending


@pytest.fixture(params=["hpub", "client-publish"])
async def publisher(request: pytest.FixtureRequest, nc: Client) -> AsyncIterator[AckedPublisher]:
    await ensure_streams(nc.jetstream())
    pub = AckedPublisher(nc, timeout=1.0)
    pub._raw = request.param == "hpub"  # the fallback for a nats-py without _send_command
    await pub.start()
    yield pub
    await pub.stop()


async def test_many_in_flight_are_each_acked_stored_once_with_their_headers(
    publisher: AckedPublisher, nc: Client
) -> None:
    subject = f"onceflow.p{uuid.uuid4().hex[:8]}.in.src.received"
    headers = {"Nats-Msg-Id": "", "Onceflow-Origin": "src", "ce-type": "io.onceflow.src.received"}

    async def one(i: int) -> tuple[int, bool]:
        block = header_block({**headers, "Nats-Msg-Id": f"{subject}-{i % 100}"})
        ack = await publisher.publish_block(subject, f'{{"i": {i}}}'.encode(), block)
        return ack.seq, ack.duplicate

    acks = await asyncio.gather(*(one(i) for i in range(300)))  # 100 ids, each published 3 times at once
    assert sum(1 for _, duplicate in acks if not duplicate) == 100
    assert len({seq for seq, duplicate in acks if not duplicate}) == 100
    assert not publisher._pending
    js = nc.jetstream()
    info = await js.stream_info(IN_STREAM, subjects_filter=subject)
    assert (info.state.subjects or {}).get(subject) == 100
    stored = await js.get_last_msg(IN_STREAM, subject)
    assert stored.headers is not None
    assert stored.headers["Onceflow-Origin"] == "src"
    assert stored.headers["ce-type"] == "io.onceflow.src.received"


async def test_either_way_a_subject_no_stream_takes_is_refused_and_a_silent_one_times_out(
    publisher: AckedPublisher, nc: Client
) -> None:
    with pytest.raises(NoStreamResponseError):
        await publisher.publish_block("nowhere.at.all", b"{}", header_block({"Nats-Msg-Id": "x"}))
    silent = await nc.subscribe("silent.subject")  # a responder that never answers
    started = time.monotonic()
    with pytest.raises(nats.errors.TimeoutError):
        await publisher.publish_block("silent.subject", b"{}", header_block({"Nats-Msg-Id": "y"}))
    assert 0.9 <= time.monotonic() - started < 3.0
    assert not publisher._pending
    await silent.unsubscribe()


async def test_pubacks_read_early_leave_every_other_subscription_of_the_connection_alone(nc: Client) -> None:
    """PubAcks resolve in the client's read loop (`_read_early`); other messages take nats-py's path."""
    prefix = await _stream(nc)
    acks = AckedPublisher(nc)
    await acks.start()
    received: list[tuple[str, bytes, str | None]] = []
    got = asyncio.Event()

    async def on_message(msg: nats.aio.msg.Msg) -> None:
        received.append((msg.subject, msg.data, (msg.headers or {}).get("X-Kind")))
        if len(received) == 2:
            got.set()

    other = await nc.subscribe(f"other.{prefix}.>", cb=on_message)
    answered = await asyncio.gather(*(acks.publish(f"{prefix}.s", str(i).encode()) for i in range(50)))
    await nc.publish(f"other.{prefix}.plain", b"one")
    await nc.publish(f"other.{prefix}.headed", b"two", headers={"X-Kind": "headed"})
    await asyncio.wait_for(got.wait(), 5)
    assert sorted(s.seq for s in answered) == list(range(1, 51))
    assert received == [(f"other.{prefix}.plain", b"one", None), (f"other.{prefix}.headed", b"two", "headed")]
    # Read early, the PubAcks still count as the inbox subscription's messages.
    inbox = next(sub for sub in nc._subs.values() if sub.subject == f"{acks._prefix}*")
    assert inbox._received == 50
    await other.unsubscribe()
