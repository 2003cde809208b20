"""One lane's pull consumer, fetched with one request per batch and read where the client parses it.

Why a module of its own: nats-py's `PullSubscription.fetch` costs, per record, an `asyncio.wait_for`
and a queue get (`next_msg`), and per fetch a second request when the first finds nothing; its
messages pass through the subscription's queue. Measured with cProfile on
bench/runner_throughput.py (docs/benchmarks.md, "Data plane, third pass"), the pull loop was about
a tenth of the runner's CPU.

Here one request per fetch, `{"batch": n, "expires": t, "no_wait": true}`, on an inbox of this
puller: nats-server (2.10 and later, checked against the one the tests run) delivers what the
consumer has, then ends the request with a 404 status at once; with nothing there it waits for
the first record (then ends it the same way) or answers 408 when `t` runs out. So a fetch returns
as soon as records came and none is left, or when the batch is full, or after `t`: an idle
runner adds no latency. Records are collected where the client's read loop parses them (its
`_process_msg`, wrapped for this inbox only), each a nats-py `Msg` like `fetch` returns.

A record that comes after its fetch ended (a request the client gave up on and the server did
not) is kept and returned by the next fetch, never dropped: it is delivered, and JetStream would
only send it again after ackWait. Without the client's private `_process_msg`, `_build_message`
and `_parse_header_lines` (a nats-py release that drops them), `natsio.JetStreamWiring.subscribe`
uses nats-py's own pull subscription instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any, Final

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.errors import APIError

__all__ = ["Puller", "supported"]

#: The header block's first line; a status reply has ` <code> <description>` after it.
_HEADER_LINE: Final = b"NATS/1.0"
#: Idle heartbeats and flow control: not an answer to a fetch.
_CONTROL: Final = b"100"
#: The ends of a request that say only "nothing (more) now": no messages, request timed out.
_QUIET: Final = frozenset({"404", "408"})
#: Seconds the server's request ends before the client stops waiting for it.
_EXPIRES_MARGIN: Final = 0.05


def supported(nc: Client) -> bool:
    """True when this nats-py has the private calls `Puller` reads messages with."""
    return all(hasattr(nc, name) for name in ("_process_msg", "_build_message", "_parse_header_lines"))


class Puller:
    """Fetches of one durable pull consumer (see the module docstring); one fetch at a time."""

    def __init__(self, js: JetStreamContext, stream: str, consumer: str) -> None:
        self.js, self.nc = js, js._nc
        self.stream, self.consumer = stream, consumer
        self._next = f"{js._prefix}.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._inbox = ""
        self._sub: Subscription | None = None
        #: The fetch in progress: how many records it asked for, what came, and its end.
        self._want = 0
        self._got: list[Msg] = []
        self._ended: asyncio.Future[None] | None = None
        #: The status that ended the last request, and its description.
        self._status: tuple[str, str] | None = None
        #: Records that came while no fetch waited for them.
        self._early: list[Msg] = []

    async def start(self) -> None:
        """Subscribe this puller's inbox and read it early (once)."""
        if self._sub is not None:
            return
        self._inbox = self.nc.new_inbox()
        sub = self._sub = await self.nc.subscribe(self._inbox)
        process, sid, stats = self.nc._process_msg, sub._id, self.nc.stats
        build, parse = self.nc._build_message, self.nc._parse_header_lines
        skip = len(_HEADER_LINE)

        async def read(msg_sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes) -> None:
            if msg_sid != sid:
                await process(msg_sid, subject, reply, data, headers)
                return
            stats["in_msgs"] += 1
            stats["in_bytes"] += len(data)
            sub._received += 1
            if headers and headers[skip : skip + 1] == b" ":  # a status: the request ended (or a heartbeat)
                code = headers[skip + 1 : skip + 4]
                if code != _CONTROL:
                    self._end(code.decode(), headers[skip + 5 :].split(b"\r\n", 1)[0].decode(errors="replace"))
                return
            found = parse(headers[skip + 2 :]) if headers and len(headers) > skip + 4 else None
            self._take(build(sid, subject, reply, data, found or None))

        self.nc._process_msg = read  # type: ignore[method-assign,assignment]

    def _take(self, msg: Msg) -> None:
        ended = self._ended
        if ended is None or ended.done():
            self._early.append(msg)
            return
        self._got.append(msg)
        if len(self._got) >= self._want:
            ended.set_result(None)

    def _end(self, code: str, description: str) -> None:
        if self._ended is not None and not self._ended.done():
            self._status = (code, description)
            self._ended.set_result(None)

    async def fetch(self, batch: int, timeout: float = 1.0) -> list[Msg]:  # noqa: ASYNC109 (nats-py's signature)
        """Up to `batch` records: as soon as some came and the consumer has no more, else within `timeout`."""
        if self._early:
            taken, self._early = self._early[:batch], self._early[batch:]
            return taken
        if self._sub is None:
            await self.start()
        self._want, self._got, self._status = batch, [], None
        ended = self._ended = asyncio.get_running_loop().create_future()
        expires = int(max(timeout - _EXPIRES_MARGIN, 0.01) * 1e9)
        request = json.dumps({"batch": batch, "expires": expires, "no_wait": True}).encode()
        try:
            await self.nc.publish(self._next, request, reply=self._inbox)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(ended), timeout)
        finally:
            got, self._got, self._ended = self._got, [], None
            if not ended.done():
                ended.cancel()
        if not got and self._status is not None and self._status[0] not in _QUIET:
            # 409 (the consumer was deleted, too many waiting requests, a leader change) or worse:
            # raised, so the pull loop says so and pauses instead of asking again at once.
            code, description = self._status
            raise APIError(code=int(code) if code.isdigit() else 0, description=description)
        return got

    async def consumer_info(self) -> Any:
        """The consumer's info (its lag, for the heartbeat)."""
        return await self.js.consumer_info(self.stream, self.consumer)

    async def unsubscribe(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
