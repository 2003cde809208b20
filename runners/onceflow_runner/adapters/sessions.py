"""Session-login authentication: log in once, share the session, log in again when it ends.

Why a module of its own: systems such as SAP Business One Service Layer, Odoo and Frappe are
reached through a login call whose answer (a body field, a cookie) is the credential every
later call carries. Done naively, each of a runner's concurrent calls would notice an expired
session and log in by itself: a thundering herd that some systems answer by locking the user.
Here one `LoginSession` per Connector and process holds the session behind a lock, numbered by
a generation: a call that was refused with generation g asks for a new login only if g is still
current, so a burst of 401s after an expiry causes exactly one login, and every waiting call
resends with the new session; calls that start meanwhile wait for that login instead of sending
the ended session. A call gives up when the session it logged in itself is refused at once (the
credentials are refused: `CredentialsRefused`), or, as a plain transient failure, after
`MAX_RENEWALS` sessions ended under it.

Nothing here logs a Secret value or a session: messages name the Connector, the login path and
the status, and a CEL failure names the field, never the values it read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from http.cookies import CookieError, SimpleCookie
from typing import Any

import httpx

from onceflow_runner.contract.plan import ConnectorPlan, SessionLoginPlan
from onceflow_runner.engine.expressions import evaluate
from onceflow_runner.errors import CredentialsRefused, OnceflowError, TransientFailure

__all__ = ["LOGIN_RETRY_SECONDS", "MAX_RENEWALS", "LoginSession", "answer_cookies", "answer_headers", "json_or_text"]

#: The clock sessions expire by (a seam for tests, which must not stop the event loop's own clock).
_clock = time.monotonic

#: Sends the login request: (method, path, JSON body or None) -> the answer.
SendLogin = Callable[[str, str, bytes | None], Awaitable[httpx.Response]]

_TRANSIENT = {408, 425, 429, 500, 502, 503, 504}
#: Sessions one call may see end under it before it gives up: a busy process can use up a short
#: session (one allowing few calls) between another call's login and this call's resend.
MAX_RENEWALS = 3
#: After a refused login, calls fail at once for this long instead of each trying the same
#: password again: systems such as SAP Business One lock a user after a few failed logins.
LOGIN_RETRY_SECONDS = 30.0


def json_or_text(resp: httpx.Response) -> Any:
    """The answer's JSON value, else its text, else None for an empty body.

    JSON nested past the parser's depth is text too: the RecursionError would otherwise leave
    the Connector call as an unexplained failure instead of an answer the step judges.
    """
    if not resp.content:
        return None
    try:
        return resp.json()
    except (ValueError, RecursionError):
        return resp.text


def answer_cookies(resp: httpx.Response) -> dict[str, str]:
    """Cookies an answer sets, by name (attributes such as Path and HttpOnly dropped)."""
    jar: dict[str, str] = {}
    for line in resp.headers.get_list("set-cookie"):
        parsed: SimpleCookie = SimpleCookie()
        try:
            parsed.load(line)
        except CookieError:
            continue
        for name, morsel in parsed.items():
            jar[name] = morsel.value
    return jar


def answer_headers(resp: httpx.Response) -> dict[str, str]:
    """An answer's headers with lowercase names, as CEL reads them (`headers['etag']`)."""
    return {k.lower(): v for k, v in resp.headers.items()}


class LoginSession:
    """One Connector's session in one process: logged in lazily, renewed before expiry or once per refusal."""

    def __init__(self, plan: ConnectorPlan, login: SessionLoginPlan, secrets: Mapping[str, str], send: SendLogin):
        self._connector = plan.name
        self._login = login
        self._secrets = dict(secrets)
        self._send = send
        self._lock = asyncio.Lock()
        self._headers: dict[str, str] = {}
        self._renew_at: float | None = None
        #: A generation an answer said has ended: calls wait for the next login instead of using it.
        self._ended = 0
        #: Incremented by each successful login; 0 until the first.
        self.generation = 0
        #: Logins made (successful or not), for tests and metrics.
        self.logins = 0
        #: The last refused login and until when calls fail with it instead of logging in again.
        self._refusal: CredentialsRefused | None = None
        self._refused_until = 0.0

    def _fresh(self) -> bool:
        return (
            self.generation > 0
            and self.generation != self._ended
            and (self._renew_at is None or _clock() < self._renew_at)
        )

    async def headers(self) -> tuple[int, dict[str, str]]:
        """The session's headers and their generation, logging in first when there is none or it is due."""
        if self._fresh():
            return self.generation, self._headers
        async with self._lock:
            if not self._fresh():
                await self._log_in()
            return self.generation, self._headers

    async def renew(self, refused_generation: int) -> tuple[int, dict[str, str], bool]:
        """A call made with `refused_generation` was told the session is gone: log in, unless another call did.

        Returns the generation and headers to resend with, and whether this call made the login
        (a session refused right after its own login means the credentials, not the session, fail).
        """
        if refused_generation == self.generation:
            self._ended = refused_generation  # new calls now wait for the login below, not send in vain
        async with self._lock:
            logged_in = self.generation == refused_generation
            if logged_in:
                await self._log_in()
            return self.generation, self._headers, logged_in

    def is_expired_answer(self, resp: httpx.Response) -> bool:
        """True when an answer says the session is gone: 401, 403, or the Connector's `expiredWhen`."""
        if resp.status_code in {401, 403}:
            return True
        if not self._login.expired_when:
            return False
        variables = {"status": resp.status_code, "response": json_or_text(resp), "headers": answer_headers(resp)}
        try:
            return evaluate(self._login.expired_when, variables, step="", what="expiredWhen") is True
        except OnceflowError:
            return False  # an answer the expression cannot read is not the expiry it describes

    def _refused(self, why: str, status: int = 0) -> CredentialsRefused:
        return CredentialsRefused(
            f"Connector {self._connector}: login {self._login.method} {self._login.path} {why}; check "
            "rest.auth.sessionLogin and its Secret",
            connector=self._connector,
            status=status,
        )

    def _cel(self, field: str, source: str, variables: Mapping[str, Any]) -> Any:
        try:
            return evaluate(source, variables, step="", what=f"sessionLogin.{field}")
        except OnceflowError as exc:
            # The message names the field and the expression only (evaluate never echoes values).
            raise self._refused(f"could not be read: {exc}") from None

    async def _log_in(self) -> None:
        if self._refusal is not None and _clock() < self._refused_until:
            raise CredentialsRefused(
                f"{self._refusal} (not tried again for {LOGIN_RETRY_SECONDS:g}s, so the account is not locked)",
                connector=self._connector,
                status=self._refusal.status,
            )
        try:
            await self._attempt_login()
        except CredentialsRefused as refused:
            self._refusal, self._refused_until = refused, _clock() + LOGIN_RETRY_SECONDS
            raise
        self._refusal = None

    async def _attempt_login(self) -> None:
        login = self._login
        self.logins += 1
        body = None
        if login.body:
            value = self._cel("body", login.body, {"secrets": self._secrets})
            body = json.dumps(value, separators=(",", ":"), default=str).encode()
        try:
            resp = await self._send(login.method, login.path, body)
        except httpx.HTTPError as exc:
            raise TransientFailure(
                f"Connector {self._connector}: login {login.method} {login.path} failed ({type(exc).__name__})"
            ) from None
        status = resp.status_code
        if status in _TRANSIENT:
            raise TransientFailure(f"Connector {self._connector}: login {login.method} {login.path} answered {status}")
        if not 200 <= status < 300:
            raise self._refused(f"was refused with {status}", status)
        cookies = answer_cookies(resp)
        answer = {"response": json_or_text(resp), "cookies": cookies, "headers": answer_headers(resp)}
        session = self._cel("session", login.session, answer) if login.session else None
        if login.session and (not isinstance(session, str | int) or session == ""):
            raise self._refused(f"answered {status} without a session (sessionLogin.session gave none)", status)
        if login.send_as == "Cookies":
            if not cookies:
                raise self._refused(f"answered {status} without setting a cookie (sessionLogin.sendAs Cookies)", status)
            headers = {"Cookie": "; ".join(f"{name}={value}" for name, value in cookies.items())}
        else:
            value = (
                self._cel("headerValue", login.header_value, {"session": session, "secrets": self._secrets})
                if login.header_value
                else session
            )
            headers = {login.header: str(value)}
        lifetime: Any = login.lifetime
        if login.expires_in:
            # An answer that does not say this time: `lifetime`, or until the system refuses the session.
            with contextlib.suppress(OnceflowError):
                lifetime = evaluate(login.expires_in, answer, step="", what="sessionLogin.expiresIn")
        self._renew_at = None
        if isinstance(lifetime, int | float) and math.isfinite(lifetime) and lifetime > 0:
            # Renew refreshBefore ahead, but never sooner than half-way through a short session.
            self._renew_at = _clock() + max(float(lifetime) - login.refresh_before, float(lifetime) / 2)
        self._headers = headers
        self.generation += 1
