"""Probing a REST Connector's endpoint from the operator: one GET, any HTTP answer means reachable.

The GET carries the Connector's credentials, obtained as a runner obtains them (the runner's own
`HttpCaller`: a token header, an OAuth2 token, or a session login), so a 401 or 403 (or a refused
login) tells the Connector's status that its credentials fail (`AuthFailed`) before, or while,
records wait for them.

The probe runs inside the operator pod, which can read every namespace's Connectors: it must not
become a way to make that pod fetch something for a tenant. So it follows no redirects (a 3xx is
reported as the answer it is) and refuses link-local and cloud-metadata addresses, both as
literals and as what a host name resolves to (the resolver itself filters, so a name that
resolves elsewhere between a check and the connection cannot slip through).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import ResolveResult
from aiohttp.resolver import ThreadedResolver

from onceflow_runner.adapters.outbound import HttpCaller, SecretReader
from onceflow_runner.adapters.transport import AiohttpTransport
from onceflow_runner.contract.plan import ConnectorPlan
from onceflow_runner.errors import CredentialsRefused, OnceflowError, PlanError

__all__ = ["ProbeResult", "is_forbidden_address", "probe_connector_endpoint", "probe_endpoint"]

#: Instance-metadata endpoints outside the link-local ranges (Alibaba Cloud; AWS over IPv6).
_METADATA = {ipaddress.ip_address("100.100.100.200"), ipaddress.ip_address("fd00:ec2::254")}


def is_forbidden_address(address: str) -> bool:
    """True for link-local (169.254.0.0/16, fe80::/10) and cloud instance-metadata addresses."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_link_local or ip in _METADATA


class _GuardedResolver(ThreadedResolver):
    """Resolves as usual, then drops forbidden addresses; none left is a resolution error."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        allowed = [r for r in await super().resolve(host, port, family) if not is_forbidden_address(r["host"])]
        if not allowed:
            raise OSError(f"{host} resolves only to link-local or metadata addresses")
        return allowed


@dataclass(frozen=True)
class ProbeResult:
    """What one probe saw: the HTTP status, or why there was none, and how long it took.

    `auth` says what became of the credentials: "" when none were sent, "accepted", or why they
    failed (a 401/403 answer, a refused login, a key that is no usable key), never a secret value.
    """

    url: str
    status: int | None
    error: str
    latency_ms: int
    auth: str = ""

    @property
    def auth_failed(self) -> bool:
        """True when the target refused the Connector's credentials (or its login)."""
        return self.auth not in {"", "accepted"}


async def probe_connector_endpoint(
    plan: ConnectorPlan, health_path: str, secret: SecretReader, *, seconds: float = 5.0
) -> ProbeResult:
    """GET the health path with the Connector's credentials; report the answer and what became of them."""
    url = plan.base_url.rstrip("/") + health_path
    if is_forbidden_address(urlsplit(url).hostname or ""):
        return ProbeResult(url, None, "refused: link-local or metadata address", 0)
    transport = AiohttpTransport(resolver=_GuardedResolver(), max_response_bytes=plan.max_response_bytes)
    try:
        caller = HttpCaller({plan.name: plan}, secret, transport=transport)
    except PlanError as exc:
        # Credentials that cannot be used at all (a private key that is no PEM key): the runner would
        # refuse to start with the same message. Say it in Authenticated, and still tell whether the
        # endpoint answers, without credentials.
        await transport.aclose()
        bare = await probe_endpoint(url, seconds=seconds, headers=plan.headers)
        return ProbeResult(bare.url, bare.status, bare.error, bare.latency_ms, auth=str(exc))
    try:
        async with asyncio.timeout(seconds * 2):
            headers = await caller.credentials(plan.name)
    except CredentialsRefused as exc:
        return ProbeResult(url, None, "", 0, auth=str(exc))
    except (OnceflowError, TimeoutError) as exc:
        return ProbeResult(url, None, f"login failed: {type(exc).__name__}", 0)
    finally:
        await caller.aclose()
    result = await probe_endpoint(url, seconds=seconds, headers={**plan.headers, **headers})
    if not headers or result.status is None:
        return result
    if result.status in {401, 403}:
        auth = (
            f"GET {health_path} answered {result.status} to the Connector's credentials; check rest.auth and its Secret"
        )
    else:
        auth = "accepted"
    return ProbeResult(result.url, result.status, result.error, result.latency_ms, auth=auth)


async def probe_endpoint(url: str, *, seconds: float = 5.0, headers: Mapping[str, str] | None = None) -> ProbeResult:
    """GET `url` once without following redirects; a failure is reported by its kind, never raised."""
    started = time.perf_counter()
    host = urlsplit(url).hostname or ""
    if is_forbidden_address(host):
        return ProbeResult(url, None, "refused: link-local or metadata address", 0)
    code: int | None = None
    error = ""
    connector = aiohttp.TCPConnector(resolver=_GuardedResolver())
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=seconds), connector=connector) as session,
            session.get(url, allow_redirects=False, headers=dict(headers or {})) as resp,
        ):
            code = resp.status
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        error = type(exc).__name__
    return ProbeResult(url, code, error, int((time.perf_counter() - started) * 1000))
