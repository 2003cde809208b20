"""Attack tests of acknowledged publishes (`adapters.pubacks`) against a real nats-server (issue #16).

Kept apart from test_pubacks.py (the publisher's own tests, changing with the pull-loop work):
a record over max_payload, a closed connection, JetStream's refusals with their codes, a PubAck
that comes after its publish gave up, and a server killed under publishes in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import DiscardPolicy, StreamConfig
from nats.js.errors import APIError

from onceflow_operator.clients.topology import ensure_streams
from onceflow_operator.dev.natsserver import NatsServer
from onceflow_runner.adapters.pubacks import AckedPublisher, Stored, header_block
from tests.integration.scenario import eventually
from tests.integration.test_pubacks import _stream


@pytest.fixture(params=["hpub", "client-publish"])
async def publisher(request: pytest.FixtureRequest, nc: Client) -> AsyncIterator[AckedPublisher]:
    """Both ways a publish goes out: the raw HPUB and the fallback through Client.publish."""
    await ensure_streams(nc.jetstream())
    pub = AckedPublisher(nc, timeout=1.0)
    pub._raw = request.param == "hpub"
    await pub.start()
    yield pub
    await pub.stop()


async def test_a_record_over_max_payload_is_refused_alone_and_the_connection_stays_up(
    publisher: AckedPublisher, nc: Client
) -> None:
    """Headers plus payload at the server's max_payload are stored; one byte over raises MaxPayloadError.

    nats-server closes a connection that publishes past max_payload (it counts the header block
    too), which failed every other publish waiting on it and reconnected the runner or gateway;
    retried, the same record did it again. Refused before sending, it fails alone, at once.
    """
    prefix = await _stream(nc)
    block = header_block({"Nats-Msg-Id": f"{prefix}-big", "Onceflow-Error": "x" * 100})
    at_limit = b"a" * (nc.max_payload - len(block))
    reconnects = nc.stats["reconnects"]
    others = [asyncio.ensure_future(publisher.publish(f"{prefix}.small", str(i).encode())) for i in range(50)]
    started = time.monotonic()
    with pytest.raises(nats.errors.MaxPayloadError):
        await publisher.publish_block(f"{prefix}.big", at_limit + b"a", block)
    assert time.monotonic() - started < 0.5
    stored = await asyncio.gather(*others)
    assert sorted(s.seq for s in stored) == list(range(1, 51))
    assert (await publisher.publish_block(f"{prefix}.big", at_limit, block)).seq == 51
    assert nc.stats["reconnects"] == reconnects
    assert not publisher._pending


async def test_a_publish_on_a_closed_connection_fails_at_once_as_nats_py_does(
    publisher: AckedPublisher, nats_server: NatsServer
) -> None:
    """`js.publish` raises ConnectionClosedError at once; the raw HPUB was queued on the closed client
    and its caller waited the whole PubAck timeout for a TimeoutError."""
    own = await nats.connect(nats_server.url)
    acks = AckedPublisher(own, timeout=publisher.timeout)
    acks._raw = publisher._raw
    await acks.start()
    await own.close()
    started = time.monotonic()
    with pytest.raises(nats.errors.ConnectionClosedError):
        await acks.publish("onceflow.closed.in.src.received", b"{}")
    assert time.monotonic() - started < 0.5
    assert not acks._pending


async def test_stream_refusals_reach_the_caller_with_jetstreams_codes_as_js_publish_gives_them(nc: Client) -> None:
    """Attack test of what held: full streams (discard new), a wrong expected stream or last sequence."""
    js, acks = nc.jetstream(), AckedPublisher(nc)
    name = f"limits_{uuid.uuid4().hex[:8]}"
    await js.add_stream(StreamConfig(name=name, subjects=[f"{name}.>"], max_msgs=1, discard=DiscardPolicy.NEW))
    await acks.publish(f"{name}.a", b"1")
    cases = [
        (f"{name}.a", {}, 10077),  # maximum messages exceeded
        (f"{name}.b", {"Nats-Expected-Stream": "another"}, 10060),
        (f"{name}.b", {"Nats-Expected-Last-Sequence": "5"}, 10071),
    ]
    for subject, headers, code in cases:
        with pytest.raises(APIError) as ours:
            await acks.publish(subject, b"2", headers)
        with pytest.raises(APIError) as theirs:
            await js.publish(subject, b"2", headers=headers)
        assert (ours.value.err_code, ours.value.description) == (code, theirs.value.description)
        assert theirs.value.err_code == code


async def test_a_puback_that_comes_after_its_publish_timed_out_answers_no_other_publish(nc: Client) -> None:
    """Attack test of what held: the late answer's token is gone; the next publish gets its own answer."""
    # The first times out at 1.0-1.25 s (the sweep's step), its answer comes at 1.4 s while the
    # second (sent at once after) waits for its own, given 0.5 s after it was sent.
    acks = AckedPublisher(nc, timeout=1.0)
    answered = 0

    async def respond(msg: Msg) -> None:
        nonlocal answered
        answered += 1
        if answered == 1:
            await asyncio.sleep(1.4)
            await nc.publish(msg.reply, b'{"stream": "late", "seq": 999}')
        else:
            await asyncio.sleep(0.5)
            await nc.publish(msg.reply, f'{{"stream": "s", "seq": {answered}}}'.encode())

    subject = f"late.{uuid.uuid4().hex}"
    answering: set[asyncio.Task[None]] = set()

    async def on_request(msg: Msg) -> None:  # answer in the background: the next request comes meanwhile
        task = asyncio.ensure_future(respond(msg))
        answering.add(task)
        task.add_done_callback(answering.discard)

    await nc.subscribe(subject, cb=on_request)
    with pytest.raises(nats.errors.TimeoutError):
        await acks.publish(subject, b"1")
    assert await acks.publish(subject, b"2") == Stored(2, False)
    assert not acks._pending


async def test_publishes_in_flight_when_the_server_is_killed_are_never_reported_stored() -> None:
    """Attack test of what held: a nats-server killed and restarted (same store) under 200 publishes.

    Each either raised or was stored (a publish reported stored is in the stream); the inbox is
    subscribed again on reconnect, so publishes after it are acknowledged.
    """
    server = NatsServer()
    server.start()
    try:
        own = await nats.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
        await own.jetstream().add_stream(StreamConfig(name="restart", subjects=["restart.>"]))
        acks = AckedPublisher(own, timeout=3.0)
        await acks.start()
        waiting = [asyncio.ensure_future(acks.publish("restart.a", b"x", {"Nats-Msg-Id": f"m{i}"})) for i in range(200)]
        await asyncio.sleep(0)
        server.stop(kill=True)
        server.start()
        answers = await asyncio.gather(*waiting, return_exceptions=True)
        stored = {a.seq for a in answers if isinstance(a, Stored)}
        assert all(isinstance(a, (Stored, nats.errors.TimeoutError)) for a in answers)
        await eventually(lambda: own.is_connected)
        after = await acks.publish("restart.a", b"after", {"Nats-Msg-Id": "after"})
        info = await own.jetstream().stream_info("restart")
        assert info.state.messages == len(stored) + 1
        assert after.seq == info.state.last_seq
        await own.close()
    finally:
        server.close()


async def test_while_reconnecting_the_client_buffer_stays_within_its_limit_as_nats_py_keeps_it() -> None:
    """A server gone: publishes wait in the client's buffer only up to its `pending_size`, then fail
    at once with OutboundBufferLimitError (as nats-py's own publish), never growing it without end."""
    server = NatsServer()
    server.start()
    try:
        own = await nats.connect(
            server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2, pending_size=4096, connect_timeout=1
        )
        await own.jetstream().add_stream(StreamConfig(name="outage", subjects=["outage.>"]))
        acks = AckedPublisher(own, timeout=2.0)
        await acks.start()
        server.stop(kill=True)
        await eventually(lambda: not own.is_connected)
        waiting = [
            asyncio.ensure_future(acks.publish("outage.a", b"x" * 1000, {"Nats-Msg-Id": f"m{i}"})) for i in range(20)
        ]
        answers = await asyncio.gather(*waiting, return_exceptions=True)
        refused = [a for a in answers if isinstance(a, nats.errors.OutboundBufferLimitError)]
        assert len(refused) >= 16  # about 4 of 1 KiB fit in 4 KiB
        assert all(isinstance(a, (nats.errors.OutboundBufferLimitError, nats.errors.TimeoutError)) for a in answers)
        assert own._pending_data_size <= 4096
        with contextlib.suppress(OSError):  # closing with the server still gone
            await own.close()
    finally:
        server.close()
