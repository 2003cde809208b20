"""JetStream publishes that wait for their PubAck: one reply inbox, many in flight, read lean.

Why a module of its own: the gateway stores every webhook and the runner makes two or three
acknowledged writes per record it settles (its key claim, a canonical event, its done mark), and
nats-py's `js.publish` spends most of its time per write on what neither needs: every header name
checked with a regular expression and every value cleaned and copied piece by piece, a NUID and a
random token per request, `asyncio.wait_for` (a timer) per reply, and a `PubAck` dataclass built
by reflecting over its fields. Measured with cProfile on bench/runner_throughput.py and
bench/gateway_cost.py (docs/benchmarks.md, "Data plane"), this path costs about half the CPU per
write.

Here a header block is encoded once (`header_block`; the gateway also takes its exact size for
the broker's `max_payload`), each publish goes out as one HPUB whose reply subject is a counter
token under one inbox subscription of this publisher, and one sweeper fails every publish whose
PubAck is overdue (every timeout is the same, so the oldest expires first).

The guarantee is `js.publish`'s: `publish` returns only after the stream stored the message (or
found it a duplicate of one stored within its window), and raises otherwise, with the errors
nats-py raises: APIError with JetStream's error code (a lost compare-and-set is 10071),
NoStreamResponseError when no stream takes the subject, nats.errors.TimeoutError when no PubAck
came in time, nats.errors.MaxPayloadError (before sending) when headers plus payload exceed the
server's max_payload, nats.errors.ConnectionClosedError on a closed connection,
nats.errors.OutboundBufferLimitError while reconnecting once the client's buffer is full.

The HPUB goes through the client's write buffer (`_send_command` and `_flush_pending`, the two
calls nats-py's own publish makes after its checks, the flusher kicked only when not already).
They are not public API: when a nats-py release drops them, publishes go through
`Client.publish` with the same reply subject (slower, the same guarantee), said once in the log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Mapping
from typing import Final, NamedTuple

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.errors import APIError, NoStreamResponseError

__all__ = ["AckedPublisher", "Stored", "header_block"]

log = logging.getLogger("onceflow.nats")

#: The status header NATS puts on the reply when nothing subscribes to the published subject.
_NO_RESPONDERS: Final = "503"
#: Seconds between sweeps for publishes whose PubAck is overdue.
SWEEP_SECONDS: Final = 0.25


class Stored(NamedTuple):
    """What JetStream answered for one publish: the stream sequence, and whether it was a duplicate."""

    seq: int
    duplicate: bool


def header_block(headers: Mapping[str, str]) -> bytes:
    r"""The NATS header block of `headers`, as nats-py writes it: `NATS/1.0\r\n`, `Key: value\r\n`..., `\r\n`.

    Names and values are stripped; a CR or LF inside a value is removed (it would end the header
    early and let a sender add headers of its own); a surrogate is written escaped (`\udcff`).
    The names are the contract's constants.
    """
    text = "NATS/1.0\r\n" + "".join(f"{k.strip()}: {v.strip()}\r\n" for k, v in headers.items()) + "\r\n"
    if text.count("\r") != len(headers) + 2 or text.count("\n") != len(headers) + 2:
        cleaned = (
            f"{k.strip()}: {v.strip().replace(chr(13), '').replace(chr(10), '')}\r\n" for k, v in headers.items()
        )
        text = "NATS/1.0\r\n" + "".join(cleaned) + "\r\n"
    # A sender's byte that is not UTF-8 reaches us as a surrogate escape (aiohttp), and a JSON
    # string may hold a lone surrogate: written escaped (\udcff), never raising.
    return text.encode("utf-8", "backslashreplace")


class AckedPublisher:
    """Publishes to JetStream over one connection, each awaited until its PubAck.

    Tokens are a counter (unique within the inbox, which is unique per publisher: a NUID under the
    connection's inbox prefix, so a namespace's NATS user may read it). Starts on first use (or at
    `start`); safe for any number of concurrent publishes on one event loop.
    """

    def __init__(self, nc: Client, *, timeout: float = 5.0) -> None:
        self.nc, self.timeout = nc, timeout
        self._pending: dict[str, asyncio.Future[Msg]] = {}
        #: (deadline, token) in publish order.
        self._deadlines: deque[tuple[float, str]] = deque()
        self._prefix = ""
        self._count = 0
        self._starting: asyncio.Lock | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._raw = hasattr(nc, "_send_command") and hasattr(nc, "_flush_pending")
        if not self._raw:
            log.warning("nats-py has no _send_command; publishing through Client.publish (slower)")

    async def start(self) -> str:
        """Subscribe the reply inbox (once); returns its prefix."""
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if not self._prefix:
                prefix = f"{self.nc.new_inbox()}."
                await self.nc.subscribe(f"{prefix}*", cb=self._answered)
                self._prefix = prefix
        return self._prefix

    async def stop(self) -> None:
        """Stop the sweeper; publishes still waiting fail as timed out."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(nats.errors.TimeoutError())
        self._pending.clear()

    async def publish(self, subject: str, payload: bytes, headers: Mapping[str, str] | None = None) -> Stored:
        """Publish and wait until JetStream stored it (see the module docstring for what is raised)."""
        return await self.publish_block(subject, payload, header_block(headers) if headers else b"")

    async def publish_block(self, subject: str, payload: bytes, block: bytes) -> Stored:
        """As `publish`, with the headers already encoded by `header_block` (empty: none)."""
        if self.nc.is_closed:  # nats-py's own check (the raw write would be queued on a dead client)
            raise nats.errors.ConnectionClosedError
        if len(block) + len(payload) > self.nc.max_payload:
            # nats-server counts the headers too and closes a connection past it, failing every
            # publish waiting on it (nats-py's own check counts only the payload).
            raise nats.errors.MaxPayloadError
        if not self.nc.is_connected and self._raw:
            # nats-py's own check while it reconnects: the write would wait in the client's buffer,
            # which must not grow past its limit (or at all when buffering is off) in an outage.
            limit = getattr(self.nc, "_max_pending_size", 0)
            if limit <= 0 or len(block) + len(payload) + getattr(self.nc, "_pending_data_size", 0) > limit:
                raise nats.errors.OutboundBufferLimitError
        prefix = self._prefix or await self.start()
        self._count += 1
        token = str(self._count)
        reply = prefix + token
        future: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()
        self._pending[token] = future
        self._deadlines.append((time.monotonic() + self.timeout, token))
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(self._sweep(), name="pubacks-overdue")
        try:
            if not self._raw:
                headers = _parse_block(block) if block else None
                await self.nc.publish(subject, payload, reply=reply, headers=headers)
            elif block:
                size = len(block)
                await self.nc._send_command(
                    f"HPUB {subject} {reply} {size} {size + len(payload)}\r\n".encode() + block + payload + b"\r\n"
                )
            else:
                await self.nc._send_command(f"PUB {subject} {reply} {len(payload)}\r\n".encode() + payload + b"\r\n")
            if self._raw:
                kicked = getattr(self.nc, "_flush_queue", None)
                if kicked is None or kicked.empty():  # as nats-py's publish: one kick per write, not per publish
                    await self.nc._flush_pending()
            answer = await future
        finally:
            self._pending.pop(token, None)
        if answer.headers and answer.headers.get("Status") == _NO_RESPONDERS and not answer.data:
            raise NoStreamResponseError
        ack = json.loads(answer.data)
        error = ack.get("error") if isinstance(ack, dict) else {"description": "PubAck is not an object"}
        if error:
            raise APIError.from_error(error)
        return Stored(int(ack.get("seq") or 0), bool(ack.get("duplicate")))

    async def _answered(self, msg: Msg) -> None:
        future = self._pending.get(msg.subject[len(self._prefix) :])
        if future is not None and not future.done():
            future.set_result(msg)

    async def _sweep(self) -> None:
        """Fail overdue publishes; ends once none waits (the next publish starts it again)."""
        while self._pending:
            await asyncio.sleep(SWEEP_SECONDS)
            now = time.monotonic()
            while self._deadlines and self._deadlines[0][0] <= now:
                _, token = self._deadlines.popleft()
                future = self._pending.get(token)
                if future is not None and not future.done():
                    future.set_exception(nats.errors.TimeoutError())
        self._deadlines.clear()


def _parse_block(block: bytes) -> dict[str, str]:
    """`header_block`'s input again, for the fallback through `Client.publish`."""
    lines = block.decode().split("\r\n")[1:]
    return dict(line.split(": ", 1) for line in lines if line)
