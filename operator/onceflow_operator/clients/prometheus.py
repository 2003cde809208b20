"""The Prometheus HTTP API, for canary analysis metrics that come from a query (one module per API)."""

from __future__ import annotations

import math

import aiohttp

__all__ = ["PrometheusError", "query_prometheus"]


class PrometheusError(Exception):
    """The query could not give one number; the message says why, for the Integration's status."""


async def query_prometheus(address: str, query: str, *, seconds: float = 10.0) -> float:
    """Run an instant query; return its scalar or the value of its single series.

    An empty result is an error (no data is no verdict), as is more than one series: an analysis
    compares one number with its conditions.
    """
    url = address.rstrip("/") + "/api/v1/query"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=seconds)) as session,
            session.get(url, params={"query": query}) as resp,
        ):
            body = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise PrometheusError(f"Prometheus at {address} did not answer ({type(exc).__name__})") from None
    if not isinstance(body, dict) or body.get("status") != "success":
        error = body.get("error", "unexpected answer") if isinstance(body, dict) else "unexpected answer"
        raise PrometheusError(f"Prometheus refused the query: {error}")
    data = body.get("data") or {}
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar" and isinstance(result, list):
        value = result[1]
    elif kind == "vector" and isinstance(result, list) and len(result) == 1:
        value = result[0]["value"][1]
    elif kind == "vector" and not result:
        raise PrometheusError("the query returned no series (no data yet)")
    else:
        raise PrometheusError(f"the query must give one number; it gave a {kind} of {len(result or [])} series")
    number = float(value)
    if math.isnan(number):
        raise PrometheusError("the query gave NaN (no data in the window)")
    return number
