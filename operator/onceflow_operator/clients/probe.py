"""Probing a REST Connector's endpoint from the operator: one GET, any HTTP answer means reachable."""

from __future__ import annotations

import time
from dataclasses import dataclass

import aiohttp

__all__ = ["ProbeResult", "probe_endpoint"]


@dataclass(frozen=True)
class ProbeResult:
    """What one probe saw: the HTTP status, or why there was none, and how long it took."""

    url: str
    status: int | None
    error: str
    latency_ms: int


async def probe_endpoint(url: str, *, seconds: float = 5.0) -> ProbeResult:
    """GET `url` once; a connection error or time-out is reported by its type name, never raised."""
    started = time.perf_counter()
    code: int | None = None
    error = ""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=seconds)) as session,
            session.get(url) as resp,
        ):
            code = resp.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        error = type(exc).__name__
    return ProbeResult(url, code, error, int((time.perf_counter() - started) * 1000))
