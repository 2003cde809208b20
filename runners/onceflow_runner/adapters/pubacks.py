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
import re
import time
from collections import deque
from collections.abc import Mapping
from typing import Final, NamedTuple

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.errors import APIError, NoStreamResponseError

__all__ = ["AckedPublisher", "Stored", "encode_block", "header_block", "header_line", "read_puback"]

log = logging.getLogger("onceflow.nats")

#: The status header NATS puts on the reply when nothing subscribes to the published subject.
_NO_RESPONDERS: Final = "503"
#: Seconds between sweeps for publishes whose PubAck is overdue.
SWEEP_SECONDS: Final = 0.25
#: The PubAck of nearly every publish, as nats-server writes it: `{"stream":"S","seq":N}`, and
#: `{"stream":"S","seq":N,"duplicate": true}` for a duplicate (that space is the server's). Anything
#: else (an error, a domain, another field or spacing) is read in full by `json.loads`.
_PLAIN_PUBACK: Final = re.compile(rb'\{"stream":"[^"\\]*","seq":(\d{1,19})(,"duplicate": ?true)?\}')


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
    return encode_block(text)


def encode_block(text: str) -> bytes:
    r"""A header block's text as bytes, as `header_block` writes it.

    A sender's byte that is not UTF-8 reaches us as a surrogate escape (aiohttp), and a JSON
    string may hold a lone surrogate: written escaped (`\udcff`), never raising.
    """
    return text.encode("utf-8", "backslashreplace")


def header_line(name: str, value: str) -> str:
    r"""One `Name: value\r\n` line exactly as `header_block` writes it (stripped; CR and LF removed).

    For a caller that encodes a message's constant headers once and adds only the lines that
    change per message (`natsio.JetStreamEvents`): joined and passed to `encode_block`, the block
    is byte for byte `header_block`'s.
    """
    value = value.strip()
    if "\r" in value or "\n" in value:
        value = value.replace("\r", "").replace("\n", "")
    return f"{name.strip()}: {value}\r\n"


class AckedPublisher:
    """Publishes to JetStream over one connection, each awaited until its PubAck.

    Tokens are a counter (unique within the inbox, which is unique per publisher: a NUID under the
    connection's inbox prefix, so a namespace's NATS user may read it). Starts on first use (or at
    `start`); safe for any number of concurrent publishes on one event loop.
    """

    def __init__(self, nc: Client, *, timeout: float = 5.0) -> None:
        self.nc, self.timeout = nc, timeout
        #: token -> the PubAck's body once it came (None: NATS said no stream takes the subject).
        self._pending: dict[str, asyncio.Future[bytes | None]] = {}
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
                sub = await self.nc.subscribe(f"{prefix}*", cb=self._answered)
                self._prefix = prefix
                self._read_early(sub)
        return self._prefix

    def _read_early(self, sub: Subscription) -> None:
        """Resolve each plain PubAck where the client's read loop parses it, not after a queue and a task.

        Why: nats-py hands every message to a subscription through a `Msg` object, an asyncio
        queue and the subscription's task, which then calls `_answered`; for two or three PubAcks
        per record that hop cost about as much as the publish itself. Here the client's
        `_process_msg` is wrapped for this inbox's subscription only: a message without headers
        (every PubAck, errors included) resolves its publish at once; anything else (a
        no-responders status) and every other subscription's message take nats-py's own path.
        Not public API: without `_process_msg` everything takes that path, as before.
        """
        process = getattr(self.nc, "_process_msg", None)
        sid = getattr(sub, "_id", None)
        if process is None or sid is None:
            return
        skip, pending, stats = len(self._prefix), self._pending, self.nc.stats

        async def read(msg_sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
            if msg_sid != sid or headers:
                await process(msg_sid, subject, reply, data, headers)
                return
            stats["in_msgs"] += 1
            stats["in_bytes"] += len(data)
            sub._received += 1
            future = pending.get(subject[skip:].decode())
            if future is not None and not future.done():
                future.set_result(data)

        self.nc._process_msg = read  # type: ignore[method-assign,assignment]

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
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
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
        if answer is None:
            raise NoStreamResponseError
        return read_puback(answer)

    async def _answered(self, msg: Msg) -> None:
        future = self._pending.get(msg.subject[len(self._prefix) :])
        if future is not None and not future.done():
            no_stream = (msg.headers or {}).get("Status") == _NO_RESPONDERS and not msg.data
            future.set_result(None if no_stream else msg.data)

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


def read_puback(data: bytes) -> Stored:
    """What a PubAck says; APIError (with JetStream's code) when it is an error.

    Why a fast path: the runner reads two or three PubAcks per record, and `json.loads` (with its
    encoding detection) cost more than the rest of reading one. The plain shape is matched
    whole; an error or any shape it does not match is parsed as JSON, as before.
    """
    plain = _PLAIN_PUBACK.fullmatch(data)
    if plain is not None:
        return Stored(int(plain[1]), plain[2] is not None)
    ack = json.loads(data)
    error = ack.get("error") if isinstance(ack, dict) else {"code": 0, "description": "PubAck is not an object"}
    if error:
        raise APIError.from_error(error)
    return Stored(int(ack.get("seq") or 0), bool(ack.get("duplicate")))


def _parse_block(block: bytes) -> dict[str, str]:
    """`header_block`'s input again, for the fallback through `Client.publish`."""
    lines = block.decode().split("\r\n")[1:]
    return dict(line.split(": ", 1) for line in lines if line)
