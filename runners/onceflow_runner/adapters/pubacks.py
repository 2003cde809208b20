"""JetStream publishes that wait for their PubAck, on one reply inbox per connection, read lean.

Why a module of its own: every record the runner settles makes two or three acknowledged
JetStream writes (its key claim, a canonical event, its done mark), and nats-py's `js.publish`
spends most of its time per write on things a settling record does not need: a NUID and a random
token per request, a done-callback closure and `asyncio.wait_for` per reply, and a `PubAck`
dataclass built by reflecting over its fields. Measured with cProfile on bench/runner_throughput.py
(docs/benchmarks.md, "Data plane, per-record cost"), this path costs about half the CPU per write.

The guarantee is the same as `js.publish`'s: `publish` returns only after the stream stored the
message (or found it a duplicate of one stored within its window), and raises otherwise, with the
errors nats-py raises (APIError with JetStream's error code, NoStreamResponseError when no stream
takes the subject, TimeoutError when no PubAck came in time).
"""

from __future__ import annotations

import asyncio
import json
from typing import Final, NamedTuple

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.errors import APIError, NoStreamResponseError

__all__ = ["AckedPublisher", "Stored"]

#: The status header NATS puts on the reply when nothing subscribes to the published subject.
_NO_RESPONDERS: Final = "503"


class Stored(NamedTuple):
    """What JetStream answered for one publish: the stream sequence, and whether it was a duplicate."""

    seq: int
    duplicate: bool


def _expire(future: asyncio.Future[Msg]) -> None:
    if not future.done():
        future.set_exception(nats.errors.TimeoutError())


class AckedPublisher:
    """Publish to JetStream and await the PubAck; replies come to one wildcard inbox of this publisher.

    Tokens are a counter (unique within the inbox, which is unique per publisher: a NUID under the
    connection's inbox prefix, so a namespace's NATS user may read it). Safe for any number of
    concurrent publishes on one event loop.
    """

    def __init__(self, nc: Client, *, timeout: float = 5.0) -> None:
        self.nc, self.timeout = nc, timeout
        self._pending: dict[str, asyncio.Future[Msg]] = {}
        self._prefix = ""
        self._count = 0
        self._starting: asyncio.Lock | None = None

    async def _start(self) -> str:
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if not self._prefix:
                prefix = f"{self.nc.new_inbox()}."
                await self.nc.subscribe(f"{prefix}*", cb=self._answered)
                self._prefix = prefix
        return self._prefix

    async def _answered(self, msg: Msg) -> None:
        future = self._pending.pop(msg.subject[len(self._prefix) :], None)
        if future is not None and not future.done():
            future.set_result(msg)

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str] | None = None) -> Stored:
        """Publish and wait until JetStream stored it (see the module docstring for what is raised)."""
        prefix = self._prefix or await self._start()
        self._count += 1
        token = str(self._count)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Msg] = loop.create_future()
        self._pending[token] = future
        timer = loop.call_later(self.timeout, _expire, future)
        try:
            await self.nc.publish(subject, payload, reply=prefix + token, headers=headers)
            reply = await future
        finally:
            timer.cancel()
            self._pending.pop(token, None)
        if reply.headers and reply.headers.get("Status") == _NO_RESPONDERS and not reply.data:
            raise NoStreamResponseError
        answer = json.loads(reply.data)
        error = answer.get("error")
        if error:
            raise APIError.from_error(error)
        return Stored(int(answer.get("seq") or 0), bool(answer.get("duplicate")))
