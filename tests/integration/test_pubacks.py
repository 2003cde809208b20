"""The settle path's acknowledged publishes (`adapters.pubacks`) against a real nats-server.

They replace nats-py's `js.publish` on the runner's hot path, so they must answer the same way:
a stored message's sequence, a duplicate within the window, JetStream's error code when a
compare-and-set loses, NoStreamResponseError when no stream takes the subject, TimeoutError when
no PubAck comes; and many concurrent publishes each get their own answer.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.js.api import StreamConfig
from nats.js.errors import APIError, NoStreamResponseError

from onceflow_operator.dev.natsserver import NatsServer
from onceflow_runner.adapters.pubacks import AckedPublisher


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await nats.connect(nats_server.url)
    yield client
    await client.close()


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
