"""The public webhook listener: a bounded number of connections, each given little time to speak.

Why: aiohttp holds a connection that never finishes its request headers until its keep-alive
timeout, 3630 s by default, so a few hundred clients sending one header byte a second could hold
every file descriptor of a gateway for an hour (slowloris). Here the keep-alive timeout, which
aiohttp also starts when a connection opens, is the header read timeout; and past
`max_connections` a new connection is answered 503 with Retry-After and closed at once, so a
sender retries instead of queueing behind the attackers.

A port another process listens on is refused (PortInUse), also with SO_REUSEPORT: the option
lets any socket of the same user that sets it join a port, so the first process of a gateway
claims the port alone before it binds it shared (another gateway started on it, say from a port
the local executor handed out twice, would otherwise take part of its connections).
"""

from __future__ import annotations

import asyncio
import errno
import socket

from aiohttp import web

__all__ = ["REFUSAL", "PortInUse", "serve_bounded"]

#: What a connection over the cap gets before it is closed: a sender retries a 503.
REFUSAL = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class PortInUse(Exception):
    """Another process listens on the webhook port (the gateway exits, naming it)."""


class _Refused(asyncio.Protocol):
    """A connection over the cap: one 503, then closed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if isinstance(transport, asyncio.WriteTransport):
            transport.write(REFUSAL)
        transport.close()


async def serve_bounded(
    server: web.Server, host: str, port: int, *, max_connections: int, reuse_port: bool = False, claim: bool = True
) -> asyncio.Server:
    """Listen on host:port with `server`'s handlers, refusing connections past `max_connections`.

    `reuse_port`: several processes of one gateway listen on the same port and the kernel spreads
    new connections over them (SO_REUSEPORT); each keeps its own connection cap. `claim`: the
    port must be free (the first process; the others join it with `claim=False`).
    """
    if reuse_port and claim and port:
        _claim(host, port)

    def protocol() -> asyncio.Protocol:
        if len(server.connections) >= max_connections:
            return _Refused()
        return server()

    try:
        return await asyncio.get_running_loop().create_server(
            protocol, host, port, reuse_address=True, reuse_port=reuse_port or None
        )
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(_in_use(host, port)) from None
        raise


def _claim(host: str, port: int) -> None:
    """Raise PortInUse when a socket listens on host:port, with SO_REUSEPORT or without.

    A bind without SO_REUSEPORT conflicts with any listener (SO_REUSEADDR only passes over
    connections in TIME_WAIT), and the probe is closed before the shared bind.
    """
    for family, kind, proto, _, address in socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    ):
        try:
            probe = socket.socket(family, kind, proto)
        except OSError:  # a family this host lacks (IPv6 off): create_server skips it too
            continue
        with probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise PortInUse(_in_use(host, port)) from None
                raise


def _in_use(host: str, port: int) -> str:
    # "address already in use", as the system says it: the local run (dev/localrun.py) reads it to pick another port.
    where = f"port {port} on {host or 'every address'}"
    return f"{where}: address already in use (another process listens on it); give the gateway a free --port"
