"""An in-process gateway against a real nats-server, and a raw HTTP client that controls segmentation.

The gateway tests need what httpx hides: a body written in several TCP segments with pauses,
headers sent a byte at a time, a Content-Length that lies. `raw_request` writes exactly the bytes
it is given, in the pieces it is given, and returns the status the gateway answered (0 when the
gateway closed the connection without answering).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import nats

from onceflow_operator.clients.topology import ensure_streams
from onceflow_runner.contract.plan import PLAN_VERSION, GatewayPlan
from onceflow_runner.gateway.server import Gateway
from onceflow_runner.gateway.signatures import SignatureConfig, sign

SECRET = "gateway-test-secret"
HMAC = SignatureConfig("hmac", header="X-Signature")


def gateway_plan(
    namespace: str, *, scheme: str = "hmac", max_body_bytes: int = 262144, **signature: Any
) -> GatewayPlan:
    return GatewayPlan.model_validate(
        {
            "planVersion": PLAN_VERSION,
            "namespace": namespace,
            "connector": "src",
            "path": "/hooks",
            "signature": {
                "scheme": scheme,
                "secret": {"name": "sig", "key": "secret"},
                **({"header": "X-Signature"} if scheme == "hmac" else {}),
                **signature,
            },
            "event_default": "received",
            "max_body_bytes": max_body_bytes,
            "subject_prefix": f"onceflow.{namespace}.in.src",
        }
    )


@asynccontextmanager
async def running_gateway(
    plan: GatewayPlan, nats_url: str, folder: Path, secret: str = SECRET, **kw: Any
) -> AsyncIterator[Gateway]:
    (folder / "sig").mkdir(parents=True, exist_ok=True)
    (folder / "sig" / "secret").write_text(secret)
    nc = await nats.connect(nats_url)  # the operator's part: gateways only bind to the streams
    await ensure_streams(nc.jetstream())
    await nc.close()
    gateway = Gateway(plan, nats_url=nats_url, secrets_dir=folder, **kw)
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.stop()


def signed_headers(
    body: bytes, delivery_id: str = "d-1", config: SignatureConfig = HMAC, secret: str = SECRET
) -> dict[str, str]:
    return sign(config, secret, body, delivery_id=delivery_id, timestamp=int(time.time()))


async def raw_exchange(
    port: int,
    head: bytes,
    pieces: Sequence[bytes] = (),
    *,
    pause: float = 0.0,
    answer_within: float = 15.0,
) -> tuple[int, bytes]:
    """Write `head`, then each piece with `pause` seconds between; return the answer's status and body.

    The status is 0 when the gateway closed the connection without answering.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        await writer.drain()
        for piece in pieces:
            if pause:
                await asyncio.sleep(pause)
            writer.write(piece)
            await writer.drain()
        line = await asyncio.wait_for(reader.readline(), answer_within)
        if not line.startswith(b"HTTP/"):
            return 0, b""
        length = 0
        while (header := await asyncio.wait_for(reader.readline(), answer_within)) not in (b"\r\n", b""):
            name, _, value = header.decode().partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        return int(line.split()[1]), await asyncio.wait_for(reader.readexactly(length), answer_within)
    finally:
        writer.close()


async def raw_request(port: int, head: bytes, pieces: Sequence[bytes] = (), **kw: Any) -> int:
    """`raw_exchange`'s status only."""
    return (await raw_exchange(port, head, pieces, **kw))[0]


def request_head(path: str, headers: dict[str, str], *, length: int | None = None, chunked: bool = False) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: gateway", "Content-Type: application/json"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    elif length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"
