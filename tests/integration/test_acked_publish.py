"""The gateway's JetStream publisher against a real nats-server: acked, deduplicated, or refused in time.

`AckedPublisher` replaces `js.publish` on the gateway's hot path (one encoded header block, one
inbox subscription, one sweeper for overdue PubAcks). What it must keep: a PubAck's sequence and
duplicate flag, a record stored once per Nats-Msg-Id within the window, headers the runner reads
as written, and an exception (never a silent success) when no stream takes the subject or no
PubAck comes in time. The fallback through `Client.publish` must behave the same.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client

from onceflow_operator.clients.topology import ensure_streams
from onceflow_operator.dev.natsserver import NatsServer
from onceflow_runner.adapters.acked_publish import AckedPublisher, PublishNotStored, header_block
from onceflow_runner.contract.subjects import IN_STREAM


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await nats.connect(nats_server.url)
    await ensure_streams(client.jetstream())
    yield client
    await client.close()


@pytest.fixture(params=["hpub", "client-publish"])
async def publisher(request: pytest.FixtureRequest, nc: Client) -> AsyncIterator[AckedPublisher]:
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
        ack = await publisher.publish(subject, f'{{"i": {i}}}'.encode(), block)
        return ack.seq, ack.duplicate

    acks = await asyncio.gather(*(one(i) for i in range(300)))  # 100 ids, each published 3 times at once
    assert sum(1 for _, duplicate in acks if not duplicate) == 100
    assert len({seq for seq, duplicate in acks if not duplicate}) == 100
    assert publisher.in_flight == 0
    js = nc.jetstream()
    info = await js.stream_info(IN_STREAM, subjects_filter=subject)
    assert (info.state.subjects or {}).get(subject) == 100
    stored = await js.get_last_msg(IN_STREAM, subject)
    assert stored.headers is not None
    assert stored.headers["Onceflow-Origin"] == "src"
    assert stored.headers["ce-type"] == "io.onceflow.src.received"


async def test_a_subject_no_stream_takes_is_refused_not_acknowledged(publisher: AckedPublisher) -> None:
    with pytest.raises(PublishNotStored, match="no responders"):
        await publisher.publish("nowhere.at.all", b"{}", header_block({"Nats-Msg-Id": "x"}))


async def test_no_puback_in_time_fails_the_publish(publisher: AckedPublisher, nc: Client) -> None:
    silent = await nc.subscribe("silent.subject")  # a responder that never answers
    started = time.monotonic()
    with pytest.raises(PublishNotStored, match="no PubAck within"):
        await publisher.publish("silent.subject", b"{}", header_block({"Nats-Msg-Id": "y"}))
    assert 0.9 <= time.monotonic() - started < 3.0
    assert publisher.in_flight == 0
    await silent.unsubscribe()
