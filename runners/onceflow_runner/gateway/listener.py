"""The public webhook listener: a bounded number of connections, each given little time to speak.

Why: aiohttp holds a connection that never finishes its request headers until its keep-alive
timeout, 3630 s by default, so a few hundred clients sending one header byte a second could hold
every file descriptor of a gateway for an hour (slowloris). Here the keep-alive timeout, which
aiohttp also starts when a connection opens, is the header read timeout; and past
`max_connections` a new connection is answered 503 with Retry-After and closed at once, so a
sender retries instead of queueing behind the attackers.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

__all__ = ["REFUSAL", "serve_bounded"]

#: What a connection over the cap gets before it is closed: a sender retries a 503.
REFUSAL = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class _Refused(asyncio.Protocol):
    """A connection over the cap: one 503, then closed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if isinstance(transport, asyncio.WriteTransport):
            transport.write(REFUSAL)
        transport.close()


async def serve_bounded(
    server: web.Server, host: str, port: int, *, max_connections: int, reuse_port: bool = False
) -> asyncio.Server:
    """Listen on host:port with `server`'s handlers, refusing connections past `max_connections`.

    `reuse_port`: several processes of one gateway listen on the same port and the kernel spreads
    new connections over them (SO_REUSEPORT); each keeps its own connection cap.
    """

    def protocol() -> asyncio.Protocol:
        if len(server.connections) >= max_connections:
            return _Refused()
        return server()

    return await asyncio.get_running_loop().create_server(
        protocol, host, port, reuse_address=True, reuse_port=reuse_port or None
    )
