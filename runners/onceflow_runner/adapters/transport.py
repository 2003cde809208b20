"""An httpx transport over aiohttp's connection pool.

Why: measured in bench/runner_throughput.py on this project's 2-core machines, httpx's default
transport (httpcore) managed about 150 requests/s at 64 in flight against a local server that a
raw aiohttp client drove at about 2,700/s; httpcore's pool serialises on its own locks under
concurrency. Steps keep httpx's API (and its test seam, `MockTransport`); the bytes move over
aiohttp. Decompression is left to httpx so the two never both decode a body; `read_bounded` has it
decode an encoded answer piece by piece, within the limit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import aiohttp.abc
import httpx
from aiohttp import hdrs
from yarl import URL

__all__ = ["AiohttpTransport", "ResponseTooLarge", "read_bounded"]

#: Bytes of an encoded answer handed to httpx's decoder at a time: deflate expands at most about
#: 1,000 times, so one piece decodes to at most about 4 MiB however the answer was packed.
_PIECE = 4 * 1024


class ResponseTooLarge(httpx.TransportError):
    """The answer's body is longer than the transport will hold; it was not read past the limit."""


class _Pieces(httpx.AsyncByteStream):
    """An answer read already, given out in `_PIECE`-sized pieces (see `read_bounded`)."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        body = memoryview(self._body)
        for start in range(0, len(body), _PIECE):
            yield bytes(body[start : start + _PIECE])


async def read_bounded(response: httpx.Response, limit: int) -> bytes:
    """`response.aread()`, refused with ResponseTooLarge as soon as the decoded answer passes `limit`.

    Why: the transport's limit counts the bytes on the wire; httpx decodes a Content-Encoding
    after, all at once, so 10 MiB of gzip could become 10 GiB in memory before anyone measured
    it (a gzip bomb). Decoded piece by piece, at most `limit` plus one piece's expansion is held.
    """
    parts: list[bytes] = []
    size = 0
    async for part in response.aiter_bytes():
        size += len(part)
        if size > limit:
            raise ResponseTooLarge(f"answer decodes to more than {limit} bytes", request=response._request)
        parts.append(part)
    response._content = b"".join(parts)  # what `aread` sets: `.content`, `.json()` read it
    return response._content


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Send httpx requests through one aiohttp ClientSession (created on first use, in the loop)."""

    def __init__(
        self,
        *,
        max_connections: int = 256,
        keepalive_seconds: float = 30.0,
        max_response_bytes: int | None = None,
        resolver: aiohttp.abc.AbstractResolver | None = None,
    ) -> None:
        #: The operator's probe passes a resolver that refuses link-local and metadata addresses.
        self._resolver = resolver
        self._max_connections = max_connections
        self._max_response_bytes = max_response_bytes
        self._keepalive = keepalive_seconds
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, keepalive_timeout=self._keepalive, resolver=self._resolver
            )
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False, trust_env=False)
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        return await self._exchange(
            request.method, str(request.url), request.headers.multi_items(), request.content or None, timeouts, request
        )

    async def exchange(
        self, method: str, url: str, headers: Mapping[str, str], content: bytes | None, timeouts: Mapping[str, Any]
    ) -> httpx.Response:
        """Send one request without building an `httpx.Request`; the answer is an unread `httpx.Response`.

        Why: a Connector's call goes straight to the transport (`outbound`), and an `httpx.Request`
        (its header normalization, its content encoding) cost more CPU than aiohttp's own request,
        measured in bench/runner_throughput.py (docs/benchmarks.md, "Data plane, per-record cost").
        The bytes sent are the same: aiohttp adds Host and Content-Length as httpx would.
        """
        return await self._exchange(method, url, headers, content, timeouts, None)

    async def _exchange(
        self,
        method: str,
        url: str,
        headers: Any,
        content: bytes | None,
        timeouts: Mapping[str, Any],
        request: httpx.Request | None,
    ) -> httpx.Response:
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=timeouts.get("connect"), sock_read=timeouts.get("read")
        )
        try:
            async with self._get_session().request(
                method,
                # Sent as built (httpx's URL is encoded already): given as text, aiohttp re-quotes it
                # and decodes %3B, %3D, %26, %40 ... in the path, so `pathSegment("ACME;1")` became
                # /ACME;1, which a Java server reads as /ACME with a path parameter.
                URL(url, encoded=True),
                headers=headers,
                data=content,
                allow_redirects=False,
                timeout=timeout,
                skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
            ) as resp:
                body = await self._read_body(resp, request)
        except TimeoutError as exc:
            raise httpx.ReadTimeout(str(exc) or "timed out", request=request) from exc
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        except aiohttp.ClientError as exc:
            raise httpx.RemoteProtocolError(str(exc), request=request) from exc
        # A stream, not `content=`: httpx then neither reads nor re-measures it here; the caller's
        # `aread` (or `read_bounded`) decodes it (Content-Encoding) once, an encoded one in pieces.
        encoded = len(body) > _PIECE and hdrs.CONTENT_ENCODING in resp.headers
        return httpx.Response(
            resp.status,
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in resp.raw_headers],
            stream=_Pieces(body) if encoded else httpx.ByteStream(body),
            request=request,
        )

    async def _read_body(self, resp: aiohttp.ClientResponse, request: httpx.Request | None) -> bytes:
        """Read the body, refusing it as soon as it is longer than the limit (not after holding it all)."""
        limit = self._max_response_bytes
        if limit is None:
            return await resp.read()
        if resp.content_length is not None and resp.content_length > limit:
            raise ResponseTooLarge(f"answer declares {resp.content_length} bytes", request=request)
        body = bytearray()
        async for chunk in resp.content.iter_chunked(64 * 1024):
            body += chunk
            if len(body) > limit:
                raise ResponseTooLarge(f"answer longer than {limit} bytes", request=request)
        return bytes(body)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
