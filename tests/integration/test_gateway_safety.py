"""The gateway under hostile or careless senders: slow headers, many connections, replays,
long ids, an unusable signing secret, and operations endpoints kept off the webhook port.

Issue 19 items 15, 17 and 18 (gateway parts). Real gateway, real nats-server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import nats
import pytest

from onceflow_operator.dev.natsserver import NatsServer
from onceflow_runner.gateway.server import Gateway
from onceflow_runner.gateway.signatures import SignatureConfig, sign
from tests.integration.gateway_harness import (
    SECRET,
    gateway_plan,
    raw_exchange,
    request_head,
    running_gateway,
    signed_headers,
)
from tests.integration.scenario import eventually

STANDARD = SignatureConfig("standard-webhooks")
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def namespace() -> str:
    return f"g{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def gateway(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[Gateway]:
    async with running_gateway(
        gateway_plan(namespace()), nats_server.url, tmp_path, header_timeout=2.0, max_connections=8
    ) as gw:
        yield gw


# -- item 18: slow headers, connection cap, operations port, long ids ---------------------------


async def test_connection_sending_headers_one_byte_per_second_is_closed_within_the_header_timeout(
    gateway: Gateway,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    started = time.monotonic()
    try:
        for byte in b"POST /hooks HTTP/1.1\r\nHost: gateway\r\nX-Slow: " + b"a" * 30:
            writer.write(bytes([byte]))
            await writer.drain()
            if await _closed_within(reader, 1.0):
                break
        else:
            pytest.fail("the gateway kept a connection that never finished its headers")
    finally:
        writer.close()
    assert time.monotonic() - started < gateway.header_timeout + 2


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1), seconds) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


async def test_connections_past_the_cap_get_503_and_senders_within_it_are_served(gateway: Gateway) -> None:
    idle = [await asyncio.open_connection("127.0.0.1", gateway.port) for _ in range(gateway.max_connections)]
    try:
        await asyncio.sleep(0)  # let the server see them
        status, _ = await raw_exchange(gateway.port, request_head("/hooks", {}, length=0))
    finally:
        for _, writer in idle:
            writer.close()
    assert status == 503
    await eventually(lambda: gateway.open_connections == 0, within=5)
    body = b'{"key": "after-the-flood"}'
    async with httpx.AsyncClient() as client:
        resp = await client.post(gateway.url, content=body, headers=signed_headers(body))
    assert resp.status_code == 202


async def test_metrics_and_health_are_served_on_the_operations_port_not_the_webhook_port(gateway: Gateway) -> None:
    async with httpx.AsyncClient() as client:
        public = [(await client.get(f"http://127.0.0.1:{gateway.port}{p}")).status_code for p in _OPS]
        private = [(await client.get(f"{gateway.operations_url}{p}")).status_code for p in _OPS]
        metrics = (await client.get(f"{gateway.operations_url}/metrics")).text
    assert all(code in {404, 405} for code in public), public
    assert private == [200, 200, 200]
    assert "onceflow_gateway_requests_total" in metrics


_OPS = ("/metrics", "/healthz", "/readyz")


async def test_delivery_ids_longer_than_256_characters_that_share_a_prefix_do_not_collide(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    plan = gateway_plan(namespace(), scheme="standard-webhooks")
    async with running_gateway(plan, nats_server.url, tmp_path, secret=WHSEC) as gw, httpx.AsyncClient() as client:
        prefix = "msg_" + "x" * 300
        answers = []
        for n, suffix in enumerate(("a", "b")):
            body = f'{{"n": {n}}}'.encode()
            headers = sign(STANDARD, WHSEC, body, delivery_id=prefix + suffix, timestamp=int(time.time()))
            answers.append((await client.post(gw.url, content=body, headers=headers)).json())
    assert [a["duplicate"] for a in answers] == [False, False]
    assert answers[0]["sequence"] != answers[1]["sequence"]


# -- item 17: replays ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "config"),
    [
        ("hmac", SignatureConfig("hmac", header="X-Signature")),
        ("github", SignatureConfig("github")),
        ("shopify", SignatureConfig("shopify")),
    ],
)
async def test_replay_of_a_body_signed_scheme_under_a_new_delivery_id_is_a_duplicate(
    nats_server: NatsServer, tmp_path: Path, scheme: str, config: SignatureConfig
) -> None:
    plan = gateway_plan(namespace(), scheme=scheme)
    body = b'{"customer": "acme", "amount": "10.00"}'
    async with running_gateway(plan, nats_server.url, tmp_path) as gw, httpx.AsyncClient() as client:
        first = await client.post(
            gw.url, content=body, headers=sign(config, SECRET, body, delivery_id="d-1", timestamp=0)
        )
        replay = await client.post(
            gw.url, content=body, headers=sign(config, SECRET, body, delivery_id="d-2", timestamp=0)
        )
    assert first.status_code == replay.status_code == 202
    assert (first.json()["duplicate"], replay.json()["duplicate"]) == (False, True)


async def test_timestamp_tolerance_longer_than_the_duplicate_window_is_capped_to_it(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    plan = gateway_plan(namespace(), scheme="standard-webhooks", tolerance_seconds=3600)
    body = b'{"n": 1}'
    async with running_gateway(plan, nats_server.url, tmp_path, secret=WHSEC) as gw, httpx.AsyncClient() as client:
        assert gw.js is not None
        window = (await gw.js.stream_info("ONCEFLOW_IN")).config.duplicate_window
        stale = sign(STANDARD, WHSEC, body, delivery_id="old", timestamp=int(time.time() - window - 30))
        fresh = sign(STANDARD, WHSEC, body, delivery_id="new", timestamp=int(time.time() - 5))
        answers = [(await client.post(gw.url, content=body, headers=h)).status_code for h in (stale, fresh)]
    assert answers == [401, 202]


# -- item 15: unusable signing secrets --------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "secret"),
    [
        ("hmac", ""),
        ("hmac", "   \n"),
        ("github", ""),
        ("standard-webhooks", "not-a-whsec"),
        ("standard-webhooks", "whsec_!!!"),
    ],
)
async def test_gateway_with_an_empty_or_malformed_secret_is_never_ready_and_stores_nothing(
    nats_server: NatsServer, tmp_path: Path, caplog: pytest.LogCaptureFixture, scheme: str, secret: str
) -> None:
    plan = gateway_plan(namespace(), scheme=scheme)
    body = b'{"forged": true}'
    config = SignatureConfig(scheme, header="X-Signature")
    forged = (
        sign(config, "", body, delivery_id="f", timestamp=int(time.time())) if scheme != "standard-webhooks" else {}
    )
    with caplog.at_level(logging.ERROR, logger="onceflow.gateway"):
        async with running_gateway(plan, nats_server.url, tmp_path, secret=secret) as gw, httpx.AsyncClient() as client:
            ready = await client.get(f"{gw.operations_url}/readyz")
            answer = await client.post(gw.url, content=body, headers=forged)
    assert ready.status_code == 503
    assert ready.text.startswith("signing secret unusable: ")
    assert answer.status_code == 503
    line = next(r for r in caplog.records if r.getMessage().startswith("signing secret unusable"))
    assert (line.__dict__["connector"], line.__dict__["field"]) == ("src", "spec.webhook.signature.secretRef")


async def test_a_rejected_signature_gets_401_that_describes_nothing_of_the_configuration(gateway: Gateway) -> None:
    body = b'{"n": 1}'
    async with httpx.AsyncClient() as client:
        missing = await client.post(gateway.url, content=body)
        wrong = await client.post(gateway.url, content=body, headers={"X-Signature": "00"})
    assert missing.status_code == wrong.status_code == 401
    assert missing.json() == wrong.json() == {"error": "signature rejected"}


# -- an event that no subject can carry -----------------------------------------------------------


async def test_a_6kb_event_name_is_refused_and_the_gateway_stays_on_the_broker(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    # Taken into the subject, such a name exceeded NATS's control line: the server closed the
    # connection and every later sender got 503 while /healthz still said ok.
    plan = gateway_plan(namespace(), scheme="standard-webhooks").model_copy(update={"event_body_field": "type"})
    async with running_gateway(plan, nats_server.url, tmp_path, secret=WHSEC) as gw, httpx.AsyncClient() as client:

        async def send(event: str, delivery_id: str) -> httpx.Response:
            body = json.dumps({"type": event, "tax": "1"}).encode()
            headers = sign(STANDARD, WHSEC, body, delivery_id=delivery_id, timestamp=int(time.time()))
            return await client.post(gw.url, content=body, headers=headers)

        refused = await send("customer." + "x." * 3000 + "approved", "msg_long")
        assert refused.status_code == 400
        assert "event name longer than" in refused.json()["error"]
        accepted = await send("customer.approved", "msg_after")
        assert accepted.status_code == 202
        health = await client.get(f"http://127.0.0.1:{gw.metrics_port}/healthz")
        assert health.status_code == 200


async def test_a_body_the_event_cannot_be_read_from_is_refused_not_filed_under_the_default_event(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    plan = gateway_plan(namespace(), scheme="standard-webhooks").model_copy(update={"event_body_field": "type"})
    async with running_gateway(plan, nats_server.url, tmp_path, secret=WHSEC) as gw, httpx.AsyncClient() as client:
        for n, body in enumerate(
            (b'{"type": "customer.approved", "deep": ' + b"[" * 20000 + b"]" * 20000 + b"}", b"not json")
        ):
            headers = sign(STANDARD, WHSEC, body, delivery_id=f"msg_{n}", timestamp=int(time.time()))
            answer = await client.post(gw.url, content=body, headers=headers)
            assert answer.status_code == 400, answer.text
            assert "the event is read from its field 'type'" in answer.json()["error"]


async def test_a_content_type_with_a_byte_that_is_not_utf8_is_stored_not_answered_500(
    nats_server: NatsServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`Content-Type: application/json\\xff` (a careless sender's Latin-1 charset name, say).

    aiohttp hands the value over with the byte as a surrogate escape; encoding the header block
    raised UnicodeEncodeError, so the sender got a 500 (and retried it for ever) and the log a
    traceback. The record is stored, with the value readable (the byte shown escaped).
    """
    plan = gateway_plan(namespace())
    async with running_gateway(plan, nats_server.url, tmp_path) as gw:
        body = b'{"id": 1}'
        lines = [f"{k}: {v}".encode() for k, v in signed_headers(body, delivery_id="latin-1").items()]
        head = b"\r\n".join(
            [b"POST /hooks HTTP/1.1", b"Host: gateway", b"Content-Type: application/json; charset=\xff", *lines]
        )
        with caplog.at_level(logging.ERROR):
            status, answer = await raw_exchange(
                gw.port, head + f"\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
            )
        assert status == 202, answer
        assert json.loads(answer)["duplicate"] is False
        assert not [r for r in caplog.records if r.exc_info]
        nc = await nats.connect(nats_server.url)
        stored = await nc.jetstream().get_last_msg("ONCEFLOW_IN", f"{plan.subject_prefix}.received")
        await nc.close()
    assert stored.data == body
    assert stored.headers is not None
    assert stored.headers["Content-Type"] == "application/json; charset=\\udcff"


async def test_a_gateway_stopped_while_nats_is_down_stops_without_an_error(tmp_path: Path) -> None:
    """SIGTERM during a NATS outage (a rollout while the cluster restarts): `drain` needs a
    connection and raised ConnectionReconnectingError, so the process ended with a traceback and
    exit code 1. It closes the connection instead and stops cleanly."""
    server = NatsServer()
    server.start()
    try:
        async with running_gateway(gateway_plan(namespace()), server.url, tmp_path) as gw:
            server.stop(kill=True)
            await eventually(lambda: gw.nc is not None and not gw.nc.is_connected)
        assert gw.nc is not None
        assert gw.nc.is_closed
    finally:
        server.close()
