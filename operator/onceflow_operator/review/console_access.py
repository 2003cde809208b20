"""Who the review console believes, and with which keys: proxy trust, token audiences, CSRF key.

Why: the console acts on people's decisions, so every input that says who someone is, or where
a form came from, must come from somewhere it can trust:

- `X-Forwarded-User`/`-Groups` (proxy mode) and `X-Forwarded-Proto`/`-Host` (behind a TLS-terminating
  proxy) count only from a trusted proxy: a source address in `ONCEFLOW_CONSOLE_TRUSTED_PROXIES`
  (CIDRs; loopback, i.e. a sidecar, when unset) that also presents `ONCEFLOW_CONSOLE_PROXY_SECRET`
  in `X-Onceflow-Proxy-Secret` when one is set (then any source may present it, unless sources are
  set too). Anyone else sending them is not signed in.
- bearer tokens (token mode) are reviewed for `ONCEFLOW_CONSOLE_AUDIENCES`, so a token minted for
  another service is not a pass to this one.
- the CSRF key comes from `ONCEFLOW_CONSOLE_CSRF_KEY` (or the file `ONCEFLOW_CONSOLE_CSRF_KEY_FILE`,
  e.g. a mounted Secret), so forms work across replicas and restarts; only when neither is set is
  one generated, and a log line says so.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from aiohttp import web

__all__ = [
    "AUDIENCES_ENV",
    "CSRF_KEY_ENV",
    "CSRF_KEY_FILE_ENV",
    "PROXY_SECRET_ENV",
    "PROXY_SECRET_HEADER",
    "TRUSTED_PROXIES_ENV",
    "ConsoleAccess",
    "ProxyTrust",
]

log = logging.getLogger("onceflow.console")

PROXY_SECRET_ENV: Final = "ONCEFLOW_CONSOLE_PROXY_SECRET"
TRUSTED_PROXIES_ENV: Final = "ONCEFLOW_CONSOLE_TRUSTED_PROXIES"
AUDIENCES_ENV: Final = "ONCEFLOW_CONSOLE_AUDIENCES"
CSRF_KEY_ENV: Final = "ONCEFLOW_CONSOLE_CSRF_KEY"
CSRF_KEY_FILE_ENV: Final = "ONCEFLOW_CONSOLE_CSRF_KEY_FILE"
#: The header a trusted proxy presents the shared secret in (oauth2-proxy: `--pass-header`/`--set-xauthrequest`).
PROXY_SECRET_HEADER: Final = "X-Onceflow-Proxy-Secret"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK: Final[tuple[Network, ...]] = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
ANYWHERE: Final[tuple[Network, ...]] = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


@dataclass(frozen=True)
class ProxyTrust:
    """Which requests speak for the fronting proxy: from an allowed source, with the secret if one is set."""

    sources: tuple[Network, ...] = LOOPBACK
    secret: str | None = None

    def trusts(self, request: web.Request) -> bool:
        """True when the request came through the trusted proxy (so its X-Forwarded-* headers count)."""
        if self.secret is not None:
            presented = request.headers.get(PROXY_SECRET_HEADER, "")
            if not hmac.compare_digest(presented.encode(), self.secret.encode()):
                return False
        try:
            address = ipaddress.ip_address(request.remote or "")
        except ValueError:
            return False
        return any(address in network for network in self.sources)

    def origin(self, request: web.Request) -> str:
        """The origin the browser saw: the proxy's (X-Forwarded-Proto/-Host) if trusted, else this server's."""
        if self.trusts(request):
            proto = (_split(request.headers.get("X-Forwarded-Proto", "")) or [request.scheme])[0]
            host = (_split(request.headers.get("X-Forwarded-Host", "")) or [request.host])[0]
            return f"{proto}://{host}"
        return f"{request.scheme}://{request.host}"

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> ProxyTrust:
        secret = env.get(PROXY_SECRET_ENV) or None
        listed = _split(env.get(TRUSTED_PROXIES_ENV, ""))
        try:
            sources = tuple(ipaddress.ip_network(cidr, strict=False) for cidr in listed)
        except ValueError as exc:
            raise ValueError(f"{TRUSTED_PROXIES_ENV}: {exc}; give CIDRs, e.g. 10.0.0.0/8,127.0.0.1/32") from None
        return cls(sources or (ANYWHERE if secret else LOOPBACK), secret)


def _csrf_key(env: Mapping[str, str]) -> bytes:
    configured = env.get(CSRF_KEY_ENV)
    path = env.get(CSRF_KEY_FILE_ENV)
    if not configured and path:
        configured = Path(path).read_text().strip()
    if configured:
        return hashlib.sha256(configured.encode()).digest()
    log.warning(
        "no CSRF key configured (%s or %s): generated one for this process, so a form loaded from another "
        "replica, or before a restart, is refused; set it from a Secret",
        CSRF_KEY_ENV,
        CSRF_KEY_FILE_ENV,
    )
    return secrets.token_bytes(32)


@dataclass(frozen=True)
class ConsoleAccess:
    """Everything the console trusts: the proxy, the token audiences, the CSRF key, extra public origins."""

    proxy: ProxyTrust = field(default_factory=ProxyTrust)
    audiences: tuple[str, ...] = ()
    csrf_key: bytes = field(default_factory=lambda: _csrf_key({}))

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> ConsoleAccess:
        """Read the settings from the environment (see the module docstring)."""
        found = os.environ if env is None else env
        audiences = tuple(_split(found.get(AUDIENCES_ENV, "")))
        return cls(ProxyTrust.from_environment(found), audiences, _csrf_key(found))
