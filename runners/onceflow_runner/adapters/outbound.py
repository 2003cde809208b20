"""Outbound calls to REST Connectors over httpx: auth, rate limit, retries, classification.

Requests go through `AiohttpTransport` (see its docstring for the measurement that chose it).
A response is sorted into exactly one of: a result (2xx; 404 is handed to the step; 409 means
the record already exists, so the effect is already there), a `TransientFailure` (408, 425,
429, 5xx, timeouts, connection errors; `Retry-After` honoured up to `retry.maxBackoff`), a
`CredentialsRefused` (401 and 403: the Connector's credentials, not the record; a
session-login Connector first logs in again, once, see `adapters.sessions`) or a
`RejectedByTarget` (any other 4xx, unless the step's answer rules read refusals: then it is
handed to the step). A 3xx is never followed (it would carry the credentials elsewhere): it is
a `RejectedByTarget` naming the Location, or a `TransientFailure` when the Connector says
`onRedirect: Retry`. Idempotent retries happen here, briefly, before the message is handed
back to JetStream with a delay. Secrets are read from files at start and never logged; an error
page (HTML) is summarised by its status, never copied into a record's exception.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import random
import re
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
from opentelemetry.trace import SpanKind, StatusCode

from onceflow_runner import tracing
from onceflow_runner.adapters.client_assertion import ASSERTION_TYPE, AssertionSigner
from onceflow_runner.adapters.sessions import MAX_RENEWALS, LoginSession, answer_headers, json_or_text
from onceflow_runner.adapters.transport import AiohttpTransport, ResponseTooLarge, read_bounded
from onceflow_runner.contract.headers import IDEMPOTENCY_KEY, TRACEPARENT
from onceflow_runner.contract.plan import ConnectorPlan, SecretRef
from onceflow_runner.engine.ports import Response
from onceflow_runner.errors import (
    CredentialsRefused,
    InvalidRecord,
    PermanentFailure,
    PlanError,
    RejectedByTarget,
    TransientFailure,
)

__all__ = ["HttpCaller", "SecretReader", "TokenBucket", "read_secret", "resolve_url", "retry_after_seconds"]

#: Reads one Secret key (from the mounted Secret volume in a runner; from the API in the operator's probe).
SecretReader = Callable[[SecretRef | None], str]

_TRANSIENT = {408, 425, 429, 500, 502, 503, 504}
#: Checked request URLs a Connector remembers (see `_Connector.url`).
_URL_CACHE = 1024


def read_secret(secrets_dir: Path, ref: SecretRef | None) -> str:
    """Read one Secret key from a mounted Secret volume layout: <dir>/<secret>/<key>."""
    if ref is None:
        raise PlanError("the plan names an auth type without its secret reference")
    path = secrets_dir / ref.name / ref.key
    try:
        return path.read_text().strip()
    except OSError:
        raise PlanError(f"secret {ref.name}/{ref.key} is not mounted at {path}") from None


#: Retry-After as delay-seconds (RFC 9110: digits; a decimal fraction is tolerated).
_DELAY_SECONDS = re.compile(r"\s*[0-9]+(\.[0-9]+)?\s*")


def retry_after_seconds(value: str | None, *, cap: float, now: float | None = None) -> float | None:
    """Parse Retry-After (seconds or an HTTP date) into a delay between 0 and `cap` seconds.

    Why the cap: a target answering `Retry-After: 3000000000` (or an HTTP date decades away) must
    not bury a record; the Connector's `retry.maxBackoff` is the longest wait Onceflow honours.
    Values that are not a delay or a date (`inf`, `nan`, `-5`, garbage) are ignored (None), so the
    caller falls back to its own backoff.
    """
    if not value:
        return None
    if _DELAY_SECONDS.fullmatch(value):
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError, OverflowError, IndexError):
            return None
        seconds = when - (now if now is not None else time.time())
    if not math.isfinite(seconds):
        return None
    return min(max(0.0, seconds), cap)


#: A scheme ("http:", "javascript:") at the start of a path makes it an absolute URL.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_DOT_SEGMENTS = {".", ".."}


def _decoded(text: str) -> str:
    """Percent-decode until nothing changes (%252e%252e is .. to a server that decodes twice)."""
    for _ in range(4):
        once = unquote(text)
        if once == text:
            break
        text = once
    return text


def resolve_url(base_url: httpx.URL, path: str, *, connector: str, step: str) -> httpx.URL:
    """The URL a step's path points to, which must stay under the Connector's base URL.

    Why: paths are built by CEL, often from payload values, and the request carries the
    Connector's credentials. A value like `../admin`, `%2e%2e`, `//evil.example` or
    `https://evil.example` must not steer them anywhere else, so such a path is the record's
    permanent failure (InvalidRecord, naming the step), never a request. A query after `?` is
    kept (plain paths of the drift job carry one); a fragment is refused.
    """

    def refuse(why: str) -> InvalidRecord:
        return InvalidRecord(
            f"{connector}: path {path[:200]!r} {why}; build paths from literals and pathSegment(value)",
            step=step,
        )

    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in path) or "\\" in path:
        raise refuse("holds a control character or a backslash")
    raw_path, _, raw_query = path.partition("?")
    if "#" in path:
        raise refuse("holds '#'")
    if _SCHEME.match(raw_path) or "://" in raw_path:
        raise refuse("is an absolute URL; only a path under the Connector's baseURL is called")
    if not raw_path.startswith("/"):
        raw_path = "/" + raw_path
    if "//" in raw_path:
        raise refuse("holds an empty segment ('//'), which servers read as another host or path")
    for segment in raw_path.split("/"):
        decoded = _decoded(segment)
        if any(part in _DOT_SEGMENTS for part in re.split(r"[/\\]", decoded)):
            raise refuse("holds a dot segment ('.' or '..', also percent-encoded)")
    prefix = base_url.path.rstrip("/")
    try:
        url = base_url.copy_with(path=prefix + raw_path, query=raw_query.encode() if raw_query else None)
    except (httpx.InvalidURL, ValueError) as exc:
        raise refuse(f"is not a valid URL path ({str(exc)[:100]})") from None
    same_origin = (url.scheme, url.host, url.port) == (base_url.scheme, base_url.host, base_url.port)
    if not same_origin or url.userinfo or not url.path.startswith(prefix + "/"):
        raise refuse(f"leaves the Connector's baseURL {base_url}")
    return url


class TokenBucket:
    """A per-connector rate limit: `rate` tokens a second, at most `burst` saved up."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.capacity = rate, float(burst)
        self.tokens, self.updated = float(burst), time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)


class _Connector:
    def __init__(self, plan: ConnectorPlan, secret: SecretReader, transport: httpx.AsyncBaseTransport | None) -> None:
        self.plan = plan
        self.base_url = _checked_base_url(plan)
        self.bucket = TokenBucket(plan.requests_per_second, plan.burst)
        self.static_headers = dict(plan.headers)
        self.headers = self._auth_headers(plan, secret)
        self.oauth: tuple[str, str] | None = None
        self.signer: AssertionSigner | None = None
        auth = plan.auth
        if auth.type == "OAuth2ClientCredentials" and auth.assertion_key is not None:
            self.oauth = (secret(auth.client_id), "")
            self.signer = AssertionSigner(
                secret(auth.assertion_key),
                key_id=auth.assertion_key_id,
                algorithm=auth.assertion_algorithm or "PS256",
                connector=plan.name,
            )
        elif auth.type == "OAuth2ClientCredentials":
            self.oauth = (secret(auth.client_id), secret(auth.client_secret))
        self.token_expires = 0.0
        self.token_lock = asyncio.Lock()
        timeout = httpx.Timeout(plan.read_timeout, connect=plan.connect_timeout)
        self.transport = transport or AiohttpTransport(max_response_bytes=plan.max_response_bytes)
        self.client = httpx.AsyncClient(
            base_url=plan.base_url,
            timeout=timeout,
            transport=self.transport,
            # A session Connector sends its session cookies itself (`sessions`): httpx's own jar would
            # keep a stale copy of them and match it against every request (half the call rate,
            # measured in bench/session_login.py).
            cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])) if plan.auth.type == "SessionLogin" else None,
        )
        #: What a request carries besides its own headers: the client's defaults (Accept, ...).
        self.default_headers = dict(self.client.headers)
        self.extensions = {"timeout": timeout.as_dict()}
        self._urls: dict[str, httpx.URL] = {}
        self.session: LoginSession | None = None
        login = plan.auth.session_login
        if plan.auth.type == "SessionLogin":
            if login is None:
                raise PlanError(f"Connector {plan.name}: auth SessionLogin without its sessionLogin block")
            secrets = {name: secret(ref) for name, ref in login.secrets.items()}
            self.session = LoginSession(plan, login, secrets, self._send_login)

    def url(self, path: str, *, step: str) -> httpx.URL:
        """`resolve_url` for this Connector, remembered per path.

        Why: most steps call a fixed path (or a few), and checking and building the URL costed
        about a third of the time Onceflow spent on a call. The answer depends only on the base
        URL and the path, so a path checked once is safe to reuse; a refused path is checked
        (and refused) every time. At most `_URL_CACHE` paths are kept (paths built from record
        values would otherwise grow the dict without bound).
        """
        url = self._urls.get(path)
        if url is None:
            url = resolve_url(self.base_url, path, connector=self.plan.name, step=step)
            if len(self._urls) >= _URL_CACHE:
                self._urls.clear()
            self._urls[path] = url
        return url

    async def send(self, method: str, url: httpx.URL, content: bytes | None, headers: dict[str, str]) -> httpx.Response:
        """One request straight to the transport, read whole.

        Why not `client.request`: the client merges the URL with its base URL, merges cookies and
        default headers and runs auth and event hooks on every call, which cost about as much as
        the HTTP exchange (docs/benchmarks.md); none of it applies (the URL is absolute and
        checked, auth is our headers, redirects are never followed). The defaults are sent as
        the client would send them.
        """
        if tracing.is_enabled():
            return await self._traced_send(method, url, content, headers)
        return await self._send(method, url, content, headers)

    async def _traced_send(
        self, method: str, url: httpx.URL, content: bytes | None, headers: dict[str, str]
    ) -> httpx.Response:
        """`_send` inside a client span whose traceparent the target receives (one span per attempt).

        A small wrapper rather than opentelemetry-instrumentation-httpx: `send` goes straight to
        our aiohttp transport, not through httpx's client or transports, which that package
        patches; and the path is shown only while business keys are not hashed (a path often
        holds one, e.g. /Customer/DE123).
        """
        attributes: dict[str, str | int] = {
            "http.request.method": method,
            "server.address": url.host,
            tracing.CONNECTOR: self.plan.name,
        }
        if url.port is not None:
            attributes["server.port"] = url.port
        if not tracing.hashes_keys():
            attributes["url.path"] = url.path
        with tracing.span(f"HTTP {method}", kind=SpanKind.CLIENT, attributes=attributes) as calling:
            headers = {**headers, TRACEPARENT: tracing.traceparent_of(calling) or headers.get(TRACEPARENT, "")}
            response = await self._send(method, url, content, headers)
            calling.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 500:
                calling.set_status(StatusCode.ERROR, f"answered {response.status_code}")
            return response

    async def _send(
        self, method: str, url: httpx.URL, content: bytes | None, headers: dict[str, str]
    ) -> httpx.Response:
        if isinstance(self.transport, AiohttpTransport):  # production: no httpx.Request (see `exchange`)
            response = await self.transport.exchange(
                method, str(url), {**self.default_headers, **headers}, content, self.extensions["timeout"]
            )
        else:  # another transport (tests' MockTransport): the httpx way
            request = httpx.Request(
                method, url, content=content, headers={**self.default_headers, **headers}, extensions=self.extensions
            )
            response = await self.transport.handle_async_request(request)
            response.request = request
        try:
            await read_bounded(response, self.plan.max_response_bytes)
        finally:
            await response.aclose()
        return response

    async def _send_login(self, method: str, path: str, body: bytes | None) -> httpx.Response:
        url = resolve_url(self.base_url, path, connector=self.plan.name, step="")
        headers = {"Accept": "application/json", **self.static_headers}
        if body is not None:
            headers["Content-Type"] = "application/json"
        async with asyncio.timeout(self.plan.total_timeout):
            return await self.client.request(method, url, content=body, headers=headers)

    async def auth_headers(self) -> tuple[int, dict[str, str]]:
        """Headers carrying the credentials, with the session generation they belong to (0 without sessions)."""
        if self.session is not None:
            return await self.session.headers()
        await self.refresh_token()
        return 0, self.headers

    @staticmethod
    def _auth_headers(plan: ConnectorPlan, secret: SecretReader) -> dict[str, str]:
        auth = plan.auth
        if auth.type == "Bearer":
            return {"Authorization": f"Bearer {secret(auth.token)}"}
        if auth.type == "Basic":
            pair = f"{secret(auth.username)}:{secret(auth.password)}"
            return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}
        if auth.type == "APIKey":
            return {auth.header or "X-API-Key": secret(auth.api_key)}
        if auth.type == "ERPNextToken":
            key, api_secret = secret(auth.api_key), secret(auth.api_secret)
            return {"Authorization": f"token {key}:{api_secret}"}
        return {}

    async def refresh_token(self) -> None:
        """OAuth2 client credentials: fetch a token when there is none or it is about to expire.

        One fetch per expiry however many calls wait for it (the lock), as for session logins.
        """
        if self.oauth is None or time.monotonic() < self.token_expires:
            return
        async with self.token_lock:
            if time.monotonic() >= self.token_expires:
                await self._fetch_token(self.oauth)

    async def _fetch_token(self, oauth: tuple[str, str]) -> None:
        client_id, client_secret = oauth
        auth = self.plan.auth
        try:
            if self.signer is not None:
                # RFC 7523: the signed assertion is the client's proof; NetSuite reads scopes from it.
                assertion = self.signer.assertion(client_id=client_id, audience=auth.token_url, scopes=auth.scopes)
                data = {
                    "grant_type": "client_credentials",
                    "client_assertion_type": ASSERTION_TYPE,
                    "client_assertion": assertion,
                }
                resp = await self.client.post(auth.token_url, data=data)
            else:
                data = {"grant_type": "client_credentials", "scope": " ".join(auth.scopes)}
                resp = await self.client.post(auth.token_url, data=data, auth=(client_id, client_secret))
        except httpx.HTTPError as exc:
            raise TransientFailure(f"{self.plan.name}: token endpoint unreachable ({type(exc).__name__})") from None
        if resp.status_code in {400, 401, 403}:
            # RFC 6749 section 5.2: invalid_client, invalid_grant, invalid_scope, unauthorized_client.
            raise CredentialsRefused(
                f"Connector {self.plan.name}: the token endpoint {auth.token_url} refused the client with "
                f"{resp.status_code}: {_summary(resp)}; check rest.auth.oauth2 and its Secret",
                connector=self.plan.name,
                status=resp.status_code,
            )
        if resp.status_code != 200:
            raise TransientFailure(f"{self.plan.name}: token endpoint answered {resp.status_code}")
        self.headers = {"Authorization": f"Bearer {self._access_token(resp)}"}
        self.token_expires = time.monotonic() + self._expires_in(resp) - 30

    def _access_token(self, resp: httpx.Response) -> str:
        """The token from an RFC 6749 answer; anything else is the Connector's auth misconfigured."""
        try:
            token = resp.json()
        except ValueError:
            token = None
        value = token.get("access_token") if isinstance(token, dict) else None
        if not isinstance(value, str) or not value:
            raise PermanentFailure(
                f"Connector {self.plan.name}: the token endpoint {self.plan.auth.token_url} answered 200 without an "
                "access_token (RFC 6749 client credentials); check rest.auth.oauth2 (tokenURL, scopes)"
            )
        return value

    @staticmethod
    def _expires_in(resp: httpx.Response) -> float:
        """Seconds the token lives; 300 when the answer does not say (or says nonsense)."""
        try:
            seconds = float(resp.json().get("expires_in", 300))
        except (ValueError, TypeError, AttributeError):
            return 300.0
        return min(max(seconds, 30.0), 86400.0) if math.isfinite(seconds) else 300.0


def _checked_base_url(plan: ConnectorPlan) -> httpx.URL:
    """The Connector's base URL, refused at start when it could not be called safely."""
    try:
        url = httpx.URL(plan.base_url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise PlanError(f"Connector {plan.name}: rest.baseURL {plan.base_url!r} is not a URL ({exc})") from None
    if url.scheme not in {"http", "https"} or not url.host:
        raise PlanError(f"Connector {plan.name}: rest.baseURL must be an http or https URL with a host")
    if url.userinfo:
        raise PlanError(
            f"Connector {plan.name}: rest.baseURL must not carry credentials (user:password@host); "
            "put them in a Secret and reference it from rest.auth"
        )
    return url


class HttpCaller:
    """The Caller the engine uses in a runner: one pooled httpx client per Connector."""

    def __init__(
        self,
        connectors: Mapping[str, ConnectorPlan],
        secrets: Path | SecretReader,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        reader: SecretReader = (lambda ref: read_secret(secrets, ref)) if isinstance(secrets, Path) else secrets
        self._connectors = {name: _Connector(plan, reader, transport) for name, plan in connectors.items()}

    async def credentials(self, connector: str) -> dict[str, str]:
        """The headers that carry the Connector's credentials now, logging in first if it must.

        For the operator's probe, which checks the credentials as the runners use them. Raises
        CredentialsRefused when a login is refused, TransientFailure when it cannot be made.
        """
        _, headers = await self._connectors[connector].auth_headers()
        return dict(headers)

    def session(self, connector: str) -> LoginSession | None:
        """The Connector's login session in this process, when it logs in (for figures and tests)."""
        return self._connectors[connector].session

    async def aclose(self) -> None:
        for conn in self._connectors.values():
            await conn.client.aclose()

    async def request(
        self,
        connector: str,
        method: str,
        path: str,
        *,
        query: Mapping[str, str],
        body: Any,
        idempotency_key: str | None,
        headers: Mapping[str, str],
        step: str,
        answer_refusals: bool = False,
    ) -> Response:
        """Send one request with in-call retries; see the module docstring for how answers are sorted.

        `answer_refusals`: a 4xx other than 401, 403 and the transient ones is returned as a
        Response instead of raised, for a step whose answer rules decide what it means.
        """
        conn = self._connectors[connector]
        plan = conn.plan
        url = conn.url(path, step=step)
        if query:
            # Merged into the path's own query (a drift check's `?fields=...` plus the paging
            # parameters): httpx's `params=` would replace it instead.
            url = url.copy_merge_params(dict(query))
        send_headers = {**conn.static_headers, **headers}
        if idempotency_key:
            send_headers[IDEMPOTENCY_KEY] = idempotency_key
        content = None if body is None else json.dumps(body, separators=(",", ":"), default=str).encode()
        if content is not None:
            send_headers["Content-Type"] = "application/json"
        delay = plan.initial_backoff
        relogged = refused_own_login = False
        for attempt in range(1, plan.attempts + 1):
            await conn.bucket.take()
            generation, credentials = await conn.auth_headers()
            started = time.perf_counter()
            try:
                # read_timeout bounds each read; a target trickling bytes would never trip it.
                async with asyncio.timeout(plan.total_timeout):
                    resp = await conn.send(method, url, content, {**send_headers, **credentials})
                    renewals = 0
                    while (
                        conn.session is not None
                        and not refused_own_login
                        and renewals < MAX_RENEWALS
                        and conn.session.is_expired_answer(resp)
                    ):
                        # The session ended (expiry, a restart of the target): one new login, shared
                        # with every call refused at the same generation, then the same request again.
                        relogged, renewals = True, renewals + 1
                        generation, credentials, own_login = await conn.session.renew(generation)
                        resp = await conn.send(method, url, content, {**send_headers, **credentials})
                        refused_own_login = own_login and conn.session.is_expired_answer(resp)
                if len(resp.content) > plan.max_response_bytes:  # a transport without its own limit
                    raise ResponseTooLarge(f"answer of {len(resp.content)} bytes")
            except TimeoutError:
                failure = TransientFailure(
                    f"{connector}: {method} {path} took longer than {plan.total_timeout:g}s in all "
                    "(the Connector's timeouts.total); the answer was dropped",
                    step=step,
                )
            except httpx.TimeoutException:
                failure = TransientFailure(f"{connector}: {method} {path} timed out", step=step)
            except ResponseTooLarge:
                failure = TransientFailure(
                    f"{connector}: the answer to {method} {path} is larger than {plan.max_response_bytes} bytes "
                    "(the Connector's maxResponseBytes); it was dropped unread",
                    step=step,
                )
            except httpx.TransportError as exc:
                failure = TransientFailure(f"{connector}: {method} {path} failed ({type(exc).__name__})", step=step)
            else:
                latency = (time.perf_counter() - started) * 1e3
                status = resp.status_code
                if 300 <= status < 400:
                    refused = _redirect_refused(plan, method, path, resp, step)
                    if isinstance(refused, RejectedByTarget):
                        raise refused
                    failure = refused
                elif (
                    conn.session is not None
                    and relogged
                    and not refused_own_login
                    and conn.session.is_expired_answer(resp)
                ):
                    # Sessions kept ending under this call (a short session and a busy process): not
                    # the credentials, which just logged in; worth another delivery.
                    failure = TransientFailure(
                        f"{connector}: {MAX_RENEWALS} sessions in a row ended before {method} {path} was answered",
                        step=step,
                    )
                elif status in {401, 403} or (
                    conn.session is not None and relogged and conn.session.is_expired_answer(resp)
                ):
                    raise CredentialsRefused(
                        f"{connector} refused the Connector's credentials with {status} to {method} {path}"
                        f"{' after a new login' if relogged else ''}: {_summary(resp)}; check rest.auth and its "
                        "Secret (records wait and are retried)",
                        connector=connector,
                        step=step,
                        status=status,
                    )
                elif status < 400 or status in {404, 409} or (answer_refusals and status not in _TRANSIENT):
                    return Response(
                        status, json_or_text(resp), latency, size=len(resp.content), headers=answer_headers(resp)
                    )
                elif status not in _TRANSIENT:
                    raise RejectedByTarget(
                        f"{connector} refused {method} {path} with {status}: {_summary(resp)}",
                        step=step,
                        status=status,
                    )
                else:
                    wait = retry_after_seconds(resp.headers.get("Retry-After"), cap=plan.max_backoff)
                    failure = TransientFailure(
                        f"{connector} answered {status} to {method} {path}", step=step, delay=wait
                    )
                    if wait is not None and wait >= plan.max_backoff:
                        # The target asked for the longest wait we honour (or more): hand the record
                        # back to JetStream for that long rather than hold it here.
                        raise failure
            if attempt == plan.attempts:
                raise failure
            await asyncio.sleep(failure.delay if failure.delay is not None else delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, plan.max_backoff)
        raise AssertionError("unreachable")  # pragma: no cover


def _redirect_refused(
    plan: ConnectorPlan, method: str, path: str, resp: httpx.Response, step: str
) -> RejectedByTarget | TransientFailure:
    """A 3xx is never followed: it would carry the Connector's credentials to wherever it points.

    Whether it is the record's end (Fail, the default: the Connector's address is wrong, e.g.
    http that redirects to https) or worth another delivery (Retry: a maintenance or session
    redirect) is the Connector's `onRedirect`.
    """
    location = _shown_location(resp.headers.get("Location", ""))
    message = (
        f"{plan.name} answered {resp.status_code} to {method} {path}, redirecting to {location}; "
        "redirects are not followed (they would carry the Connector's credentials): set the Connector's "
        f"rest.baseURL ({plan.base_url}) to the address that answers"
    )
    if plan.on_redirect == "Retry":
        return TransientFailure(message, step=step)
    return RejectedByTarget(message, step=step, status=resp.status_code)


def _shown_location(location: str) -> str:
    """Where a redirect points, without its query or user info (they may hold tokens)."""
    if not location:
        return "no Location"
    try:
        url = httpx.URL(location)
    except (httpx.InvalidURL, ValueError):
        return "an unreadable Location"
    shown = url.copy_with(query=None, fragment=None, username=None, password=None)
    return str(shown)[:300]


def _summary(resp: httpx.Response) -> str:
    """A short, secret-free reason from an error answer (ERPNext puts it in exc_type/_server_messages).

    An HTML page (a login form, a proxy's error page) says nothing a person can act on in a record's
    exception and may echo the request: it is named, not copied.
    """
    body = json_or_text(resp)
    if isinstance(body, Mapping):
        for key in ("exc_type", "message", "error", "_server_messages"):
            if body.get(key):
                return str(body[key])[:300]
    if isinstance(body, str) and ("text/html" in resp.headers.get("content-type", "") or body.lstrip()[:1] == "<"):
        return f"{resp.reason_phrase or 'an error'} (an HTML page, not shown)"
    return str(body)[:300] if body else resp.reason_phrase
