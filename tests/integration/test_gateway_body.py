"""The gateway reads the whole body, however it arrives, and refuses with 413 what it cannot store.

Issue 19 item 1: `content.read(n)` returned what was buffered, so a correctly signed body that came
in two TCP segments was verified truncated and refused with 401; and a record whose headers and
body passed the NATS server's `max_payload` made the server drop the connection, so the sender saw
a disconnect and then 503s for ever. Real gateway, real nats-server.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import nats
import pytest

from onceflow_operator.dev.natsserver import NatsServer
from onceflow_runner.contract.messages import PARK_HEADROOM
from onceflow_runner.contract.subjects import IN_STREAM
from onceflow_runner.gateway.server import Gateway
from tests.integration.gateway_harness import (
    chunk,
    gateway_plan,
    raw_exchange,
    raw_request,
    request_head,
    running_gateway,
    signed_headers,
)

CAP = 262144


@pytest.fixture
async def gateway(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[Gateway]:
    plan = gateway_plan(f"g{uuid.uuid4().hex[:8]}", max_body_bytes=CAP)
    async with running_gateway(plan, nats_server.url, tmp_path) as gw:
        yield gw


async def stored_body(nats_url: str, sequence: int) -> bytes:
    nc = await nats.connect(nats_url)
    try:
        return (await nc.jetstream().get_msg(IN_STREAM, sequence)).data or b""
    finally:
        await nc.close()


async def test_signed_body_written_in_several_segments_with_pauses_is_accepted_whole(
    gateway: Gateway, nats_server: NatsServer
) -> None:
    body = b'{"key": "segmented", "pad": "' + b"x" * 3000 + b'"}'
    head = request_head("/hooks", signed_headers(body), length=len(body))
    pieces = [body[:7], body[7:1500], body[1500:]]
    assert await raw_request(gateway.port, head, pieces, pause=0.3) == 202


async def test_chunked_body_in_segments_is_accepted(gateway: Gateway) -> None:
    body = b'{"key": "chunked", "pad": "' + b"y" * 5000 + b'"}'
    head = request_head("/hooks", signed_headers(body, "chunked"), chunked=True)
    pieces = [chunk(body[:10]), chunk(body[10:4000]), chunk(body[4000:]), b"0\r\n\r\n"]
    assert await raw_request(gateway.port, head, pieces, pause=0.2) == 202


@pytest.mark.parametrize("size", [1, 2, 1023, 65535, 65537, 200_003, CAP])
async def test_bodies_from_one_byte_to_the_cap_in_two_segments_are_stored_whole(
    gateway: Gateway, nats_server: NatsServer, size: int
) -> None:
    body = os.urandom(size)
    head = request_head("/hooks", signed_headers(body), length=size)
    status, answer = await raw_exchange(gateway.port, head, [body[: size // 2], body[size // 2 :]], pause=0.05)
    assert status == 202, answer
    assert await stored_body(nats_server.url, int(json.loads(answer)["sequence"])) == body


async def test_body_one_byte_over_the_cap_is_refused_with_413(gateway: Gateway) -> None:
    body = b"z" * (CAP + 1)
    async with httpx.AsyncClient() as client:
        resp = await client.post(gateway.url, content=body, headers=signed_headers(body))
    assert resp.status_code == 413


async def test_chunked_body_over_the_cap_is_refused_with_413(gateway: Gateway) -> None:
    body = b"z" * (CAP + 100)
    head = request_head("/hooks", signed_headers(body), chunked=True)
    pieces = [chunk(body[i : i + 65536]) for i in range(0, len(body), 65536)] + [b"0\r\n\r\n"]
    assert await raw_request(gateway.port, head, pieces) == 413


async def test_content_length_that_understates_the_body_stores_nothing(gateway: Gateway) -> None:
    body = b"z" * (CAP + 100)
    head = request_head("/hooks", signed_headers(body), length=100)
    # The gateway reads the 100 declared bytes (the signature fails on them) and takes the rest for
    # a malformed next request: either way nothing is stored and nothing is read past the cap.
    assert await raw_request(gateway.port, head, [body]) in {400, 401}


#: The small server's max_payload: room for the park headroom and a body.
SMALL_PAYLOAD = 32 * 1024


@pytest.fixture(scope="module")
def small_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A nats-server that takes at most 32 KiB per message, headers included."""
    config = tmp_path_factory.mktemp("nats-small") / "nats.conf"
    config.write_text(f"max_payload: {SMALL_PAYLOAD}\n")
    server = NatsServer(extra=["-c", str(config)])
    server.start()
    yield server
    server.close()


async def test_record_over_the_nats_max_payload_gets_413_and_the_gateway_keeps_accepting(
    small_nats: NatsServer, tmp_path: Path
) -> None:
    """Also what would fit but leave no room to park it: stored, it could never reach a person."""
    plan = gateway_plan(f"g{uuid.uuid4().hex[:8]}", max_body_bytes=1048576)
    room = SMALL_PAYLOAD - PARK_HEADROOM
    async with running_gateway(plan, small_nats.url, tmp_path) as gw, httpx.AsyncClient() as client:
        near = b"n" * (room - 100)  # under the body cap; over it with the record's headers and the room to park
        over = b"o" * (SMALL_PAYLOAD - 100)  # under max_payload alone
        largest = b"l" * (room - 2000)  # with its headers (about 700 bytes here) and the room to park: it fits
        answers = [
            (await client.post(gw.url, content=body, headers=signed_headers(body, f"big{i}"))).status_code
            for i, body in enumerate((near, over, largest))
        ]
        small = b'{"key": "small"}'
        after = await client.post(gw.url, content=small, headers=signed_headers(small, "small"))
        assert gw.nc is not None
        reconnects = gw.nc.stats["reconnects"]
    assert answers == [413, 413, 202]
    assert after.status_code == 202, after.text
    assert reconnects == 0
