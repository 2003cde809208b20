"""JetStream publishes for the gateway's hot path: the header block encoded once, many PubAcks in flight.

Why not `JetStreamContext.publish`: per publish, nats-py checks every header name with a regular
expression, cleans every value and copies both into a buffer piece by piece (a record carries
twelve headers: about a tenth of the gateway's CPU per webhook), then waits with
`asyncio.wait_for` (a timer per publish); and the gateway encoded the headers once more to know
the size nats-server counts against `max_payload`. Here the block is encoded once (its size is
then exact), each publish goes out as one HPUB whose reply subject is a token on one inbox
subscription, and one sweeper fails every publish whose PubAck did not come in time.

What a caller gets is what `js.publish` gave: the stream sequence and the duplicate flag once the
stream acknowledged, else an exception (`PublishNotStored`): no answer within the timeout, no
stream for the subject, or a JetStream error; the gateway answers 503 and the sender retries.

The HPUB goes through the client's write buffer (`_send_command` and `_flush_pending`, the two
calls nats-py's own publish makes after its checks, the flusher kicked only when not already).
They are not public API: when a nats-py release drops them, `AckedPublisher` falls back to
`Client.publish` with the same reply subject (slower, the same guarantee) and says so once in
the log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

__all__ = ["AckedPublisher", "PublishNotStored", "Stored", "header_block"]

log = logging.getLogger("onceflow.nats")

_STATUS = "Status"
_NO_RESPONDERS = "503"
#: Seconds between sweeps for publishes whose PubAck is overdue.
SWEEP_SECONDS = 0.25


class PublishNotStored(Exception):
    """The stream did not acknowledge the record: not stored (or not known to be)."""


@dataclass(frozen=True, slots=True)
class Stored:
    """The stream's acknowledgement of one publish."""

    seq: int
    duplicate: bool


def header_block(headers: Mapping[str, str]) -> bytes:
    r"""The NATS header block of `headers`, as nats-py writes it: `NATS/1.0\r\n`, `Key: value\r\n`..., `\r\n`.

    Names and values are stripped; a CR or LF inside a value is removed (it would end the header
    early and let a sender add headers of its own). The names are the contract's constants.
    """
    text = "NATS/1.0\r\n" + "".join(f"{k.strip()}: {v.strip()}\r\n" for k, v in headers.items()) + "\r\n"
    if text.count("\r") != len(headers) + 2 or text.count("\n") != len(headers) + 2:
        cleaned = (
            f"{k.strip()}: {v.strip().replace(chr(13), '').replace(chr(10), '')}\r\n" for k, v in headers.items()
        )
        text = "NATS/1.0\r\n" + "".join(cleaned) + "\r\n"
    return text.encode()


class AckedPublisher:
    """Publishes to JetStream over one connection, each awaited until its PubAck."""

    def __init__(self, nc: Client, *, timeout: float = 5.0) -> None:
        self.nc = nc
        self.timeout = timeout
        self._prefix = ""
        self._waiting: dict[str, asyncio.Future[Msg]] = {}
        #: (deadline, token) in publish order: every timeout is the same, so the oldest expires first.
        self._deadlines: deque[tuple[float, str]] = deque()
        self._next = 0
        self._subscription: Subscription | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._raw = hasattr(nc, "_send_command") and hasattr(nc, "_flush_pending")
        if not self._raw:
            log.warning("nats-py has no _send_command; publishing through Client.publish (slower)")

    async def start(self) -> None:
        """Subscribe the reply inbox and start the sweeper (once, after connecting)."""
        self._prefix = self.nc.new_inbox() + "."
        self._subscription = await self.nc.subscribe(self._prefix + "*", cb=self._answered)
        self._sweeper = asyncio.create_task(self._sweep(), name="pubacks-overdue")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(PublishNotStored("publisher stopped"))
        self._waiting.clear()

    @property
    def in_flight(self) -> int:
        """Publishes waiting for their PubAck now."""
        return len(self._waiting)

    async def publish(self, subject: str, payload: bytes, block: bytes) -> Stored:
        """Publish `payload` with the header block `block` (see `header_block`); return the PubAck's figures."""
        if not self._prefix:
            raise PublishNotStored("publisher not started")
        self._next += 1
        token = str(self._next)
        reply = self._prefix + token
        future: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()
        self._waiting[token] = future
        self._deadlines.append((time.monotonic() + self.timeout, token))
        try:
            if self._raw:
                size = len(block)
                command = (
                    f"HPUB {subject} {reply} {size} {size + len(payload)}\r\n".encode() + block + payload + b"\r\n"
                )
                await self.nc._send_command(command)
                kicked = getattr(self.nc, "_flush_queue", None)
                if kicked is None or kicked.empty():  # as nats-py's publish: one kick per write, not per publish
                    await self.nc._flush_pending()
            else:
                await self.nc.publish(subject, payload, reply=reply, headers=_parse_block(block))
            answer = await future
        finally:
            self._waiting.pop(token, None)
        if answer.headers and answer.headers.get(_STATUS) == _NO_RESPONDERS:
            raise PublishNotStored("no stream takes this subject (no responders)")
        try:
            ack: Any = json.loads(answer.data)
        except ValueError:
            raise PublishNotStored("PubAck is not JSON") from None
        if not isinstance(ack, dict) or "error" in ack or "seq" not in ack:
            raise PublishNotStored(
                f"JetStream refused the publish: {str(ack.get('error') if isinstance(ack, dict) else ack)[:200]}"
            )
        return Stored(int(ack["seq"]), bool(ack.get("duplicate", False)))

    async def _answered(self, msg: Msg) -> None:
        future = self._waiting.get(msg.subject[len(self._prefix) :])
        if future is not None and not future.done():
            future.set_result(msg)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            now = time.monotonic()
            while self._deadlines and self._deadlines[0][0] <= now:
                _, token = self._deadlines.popleft()
                future = self._waiting.get(token)
                if future is not None and not future.done():
                    future.set_exception(PublishNotStored(f"no PubAck within {self.timeout:g}s"))


def _parse_block(block: bytes) -> dict[str, str]:
    """`header_block`'s input again, for the fallback through `Client.publish`."""
    lines = block.decode().split("\r\n")[1:]
    return dict(line.split(": ", 1) for line in lines if line)
