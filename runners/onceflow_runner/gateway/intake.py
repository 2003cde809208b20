"""Reading a webhook request whole, and knowing before publishing whether NATS will take it.

Why this module exists: `StreamReader.read(n)` returns what is buffered, not n bytes, so a body
that arrives in several TCP segments was verified truncated and refused with 401 (final for most
senders). `read_body` reads until the end of the body, whatever the segmentation, chunked or not,
and stops as soon as the cap is passed. And a record whose headers plus body exceed the server's
`max_payload` makes nats-server close the connection (nats-py checks only the body): the sender
saw a disconnect and then 503s for ever. `nats_message_size` lets the gateway answer 413 instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import StreamReader

__all__ = ["BodyTooLarge", "BodyTooSlow", "nats_message_size", "read_body"]


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


def nats_message_size(headers: Mapping[str, str], body: bytes) -> int:
    r"""Bytes nats-server counts against `max_payload` for an HPUB: the header block plus the body.

    The header block is written as nats-py writes it: `NATS/1.0\r\n`, one `Key: value\r\n` per
    header (both stripped), and a closing `\r\n`.
    """
    block = len(b"NATS/1.0\r\n") + 2
    for key, value in headers.items():
        block += len(key.strip().encode()) + 2 + len(value.strip().encode()) + 2
    return block + len(body)
