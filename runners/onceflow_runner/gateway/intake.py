"""Reading a webhook request whole, and knowing before publishing whether NATS will take it.

Why this module exists: `StreamReader.read(n)` returns what is buffered, not n bytes, so a body
that arrives in several TCP segments was verified truncated and refused with 401 (final for most
senders). `read_body` reads until the end of the body, whatever the segmentation, chunked or not,
and stops as soon as the cap is passed. And a record whose headers plus body exceed the server's
`max_payload` makes nats-server close the connection (nats-py checks only the body): the sender
saw a disconnect and then 503s for ever: the gateway compares the encoded header block plus the body
(`adapters.pubacks.header_block`) with it and answers 413 instead.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiohttp import StreamReader

__all__ = ["BodyTooLarge", "BodyTooSlow", "read_body"]


@dataclass
class BodyTooLarge(Exception):
    """The body is longer than the cap (answer 413)."""

    limit: int


class BodyTooSlow(Exception):
    """The body did not arrive within the deadline (answer 408)."""


async def read_body(stream: StreamReader, *, limit: int, deadline_seconds: float) -> bytes:
    """The whole body, at most `limit` bytes; BodyTooLarge past it, BodyTooSlow past the deadline.

    A Content-Length that lies is no help to a sender: aiohttp reads exactly the declared length
    (a shorter body waits for the deadline), and chunked or length-less bodies are read to their
    end, counted as they come.
    """
    if stream.is_eof():
        # The whole body is buffered already (the usual case: a small body in the request's own
        # segments): take it without a timer, a read loop or a copy.
        body = stream.read_nowait(-1)
        if len(body) > limit:
            raise BodyTooLarge(limit)
        return body
    received = bytearray()
    try:
        async with asyncio.timeout(deadline_seconds):
            while True:
                chunk = await stream.read(limit + 1 - len(received))
                if not chunk:
                    return bytes(received)
                received += chunk
                if len(received) > limit:
                    raise BodyTooLarge(limit)
    except TimeoutError:
        raise BodyTooSlow from None
