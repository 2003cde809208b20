"""The puller's reading of what the server sends on its inbox (adapters/pulls.py), without a server.

The integration tests (tests/integration/test_pull_loop.py) cover fetches against a real
nats-server; these drive the statuses a test cannot easily make a server send: a heartbeat in
the middle of a fetch, a 409 refusal, a record whose headers a sender wrote oddly.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import APIError

from onceflow_runner.adapters.pulls import Puller


class _Sub:
    _id = 7
    _received = 0

    async def unsubscribe(self) -> None:
        return None


class _Client:
    """The few client calls the puller uses; `sent` keeps each pull request."""

    def __init__(self) -> None:
        self.stats = {"in_msgs": 0, "in_bytes": 0}
        self.sent: list[bytes] = []
        self.others: list[int] = []
        self._parse_header_lines = Client._parse_header_lines

    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes) -> None:
        self.others.append(sid)

    def _build_message(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: Any) -> Msg:
        return Msg(cast(Client, self), subject=subject.decode(), reply=reply.decode(), data=data, headers=headers)

    def new_inbox(self) -> str:
        return "_INBOX.test"

    async def subscribe(self, subject: str) -> _Sub:
        return _Sub()

    async def publish(self, subject: str, payload: bytes, reply: str = "") -> None:
        self.sent.append(payload)


def _puller() -> tuple[Puller, _Client]:
    client = _Client()
    js = cast(JetStreamContext, type("JS", (), {"_nc": client, "_prefix": "$JS.API"})())
    return Puller(js, "S", "c"), client


async def _deliver(client: _Client, headers: bytes, data: bytes = b"", sid: int = 7) -> None:
    await client._process_msg(sid, b"_INBOX.test", b"$JS.ACK.S.c.1.1.1.0.0", data, headers)


async def test_a_heartbeat_does_not_end_a_fetch_and_a_record_keeps_its_headers() -> None:
    puller, client = _puller()
    await puller.start()
    fetching = asyncio.ensure_future(puller.fetch(2, timeout=5))
    await asyncio.sleep(0)  # the request is out
    await _deliver(client, b"NATS/1.0 100 Idle Heartbeat\r\n\r\n")
    await _deliver(client, b"NATS/1.0\r\nOnceflow-Event: a\r\nBad Name: x\r\n\r\n", b"one")
    await _deliver(client, b"", b"two")
    got = await fetching
    assert [m.data for m in got] == [b"one", b"two"]
    assert got[0].headers == {"Onceflow-Event": "a"}  # as nats-py parses: a name with a space is dropped
    assert got[1].headers is None
    assert client.stats["in_msgs"] == 3
    await _deliver(client, b"", b"other", sid=8)  # another subscription's message: nats-py's own path
    assert client.others == [8]


async def test_a_refusal_with_no_records_is_raised_and_a_quiet_end_is_an_empty_fetch() -> None:
    puller, client = _puller()
    fetching = asyncio.ensure_future(puller.fetch(10, timeout=5))
    await asyncio.sleep(0)
    await _deliver(client, b"NATS/1.0 409 Exceeded MaxWaiting\r\n\r\n")
    with pytest.raises(APIError) as refused:
        await fetching
    assert refused.value.code == 409
    assert refused.value.description == "Exceeded MaxWaiting"
    fetching = asyncio.ensure_future(puller.fetch(10, timeout=5))
    await asyncio.sleep(0)
    await _deliver(client, b"NATS/1.0 408 Request Timeout\r\n\r\n")
    assert await fetching == []
    assert len(client.sent) == 2
