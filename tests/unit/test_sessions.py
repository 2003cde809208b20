"""Session-login Connectors and refused credentials, through the runner's HTTP caller.

httpx's `MockTransport` plays the target (SAP Business One's and Odoo's answer shapes); the
end-to-end proof on real servers is tests/integration/test_session_and_rpc.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from onceflow_runner.adapters import sessions
from onceflow_runner.adapters.outbound import HttpCaller
from onceflow_runner.contract.plan import ConnectorPlan
from onceflow_runner.engine.ports import Response
from onceflow_runner.errors import CredentialsRefused, TransientFailure

PASSWORD = "s3cret-Pa55"
B1_LOGIN: dict[str, Any] = {
    "method": "POST",
    "path": "/b1s/v1/Login",
    "secrets": {"user": {"name": "b1", "key": "user"}, "password": {"name": "b1", "key": "password"}},
    "body": "{'CompanyDB': 'SBODEMOUS', 'UserName': secrets.user, 'Password': secrets.password}",
    "session": "response.SessionId",
    "expires_in": "response.SessionTimeout * 60",
    "send_as": "Header",
    "header": "Authorization",
    "header_value": "'Session ' + base64.encode(secrets.user + ':' + session)",
}


def write_secrets(tmp_path: Path) -> Path:
    (tmp_path / "b1").mkdir()
    (tmp_path / "b1" / "user").write_text("manager")
    (tmp_path / "b1" / "password").write_text(PASSWORD)
    return tmp_path


class Target:
    """A session-login API: `/b1s/v1/Login` hands out numbered sessions; calls need the current one."""

    def __init__(self, *, expire_first: int = 0, login_status: int = 200) -> None:
        self.logins = 0
        self.login_bodies: list[Any] = []
        self.live = ""
        self.refuse_next = expire_first
        self.login_status = login_status
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/b1s/v1/Login":
            self.logins += 1
            self.login_bodies.append(json.loads(request.content))
            if self.login_status != 200:
                return httpx.Response(self.login_status, json={"error": {"message": {"value": "Fail to get DB"}}})
            self.live = f"sess-{self.logins}"
            return httpx.Response(
                200,
                json={"SessionId": self.live, "SessionTimeout": 30},
                headers=[("Set-Cookie", f"B1SESSION={self.live}; HttpOnly"), ("Set-Cookie", "ROUTEID=.node1")],
            )
        self.seen.append(request)
        expected = "Session " + base64.b64encode(f"manager:{self.live}".encode()).decode()
        if self.refuse_next > 0 or request.headers.get("Authorization") != expected:
            self.refuse_next -= 1
            return httpx.Response(401, json={"error": {"code": 301, "message": {"value": "Invalid session"}}})
        return httpx.Response(200, json={"value": [{"CardCode": "C1"}]})


def caller(target: Callable[[httpx.Request], httpx.Response], secrets: Path, **auth: Any) -> HttpCaller:
    plan = ConnectorPlan.model_validate(
        {
            "name": "b1",
            "base_url": "https://b1.test:50000",
            "headers": {"Prefer": "odata.maxpagesize=50"},
            "auth": {"type": "SessionLogin", "session_login": {**B1_LOGIN, **auth}},
        }
    )
    return HttpCaller({"b1": plan}, secrets, transport=httpx.MockTransport(target))


async def get(c: HttpCaller, **kw: Any) -> Response:
    return await c.request(
        "b1", "GET", "/b1s/v1/BusinessPartners", query={}, body=None, idempotency_key=None, headers={}, step="s", **kw
    )


async def test_login_body_from_secrets_and_session_header_from_a_template(tmp_path: Path) -> None:
    target = Target()
    c = caller(target, write_secrets(tmp_path))
    assert (await get(c)).body == {"value": [{"CardCode": "C1"}]}
    assert target.login_bodies == [{"CompanyDB": "SBODEMOUS", "UserName": "manager", "Password": PASSWORD}]
    sent = target.seen[0].headers
    assert sent["Authorization"] == "Session " + base64.b64encode(b"manager:sess-1").decode()
    assert sent["Prefer"] == "odata.maxpagesize=50"  # the Connector's static header


async def test_concurrent_calls_refused_after_an_expiry_share_one_new_login(tmp_path: Path) -> None:
    target = Target()
    c = caller(target, write_secrets(tmp_path))
    await get(c)
    target.live = "ended-by-the-target"  # the target forgot the session: every call is now refused
    answers = await asyncio.gather(*(get(c) for _ in range(50)))
    assert all(a.status == 200 for a in answers)
    assert target.logins == 2
    session = c.session("b1")
    assert session is not None
    assert session.logins == 2


async def test_cookies_mode_sends_every_cookie_the_login_set(tmp_path: Path) -> None:
    seen: list[str] = []

    def target(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/b1s/v1/Login":
            return httpx.Response(
                200, json={}, headers=[("Set-Cookie", "B1SESSION=abc; Path=/b1s/v1"), ("Set-Cookie", "ROUTEID=.n1")]
            )
        seen.append(request.headers.get("Cookie", ""))
        return httpx.Response(200, json={})

    c = caller(target, write_secrets(tmp_path), send_as="Cookies", session=None, header="", header_value=None)
    await get(c)
    assert seen == ["B1SESSION=abc; ROUTEID=.n1"]


async def test_a_session_is_renewed_before_it_expires_when_the_system_says_when(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(sessions, "_clock", lambda: now[0])
    target = Target()
    c = caller(target, write_secrets(tmp_path), refresh_before=60)
    await get(c)
    now[0] += 30 * 60 - 61  # SessionTimeout 30 minutes, renewed 60 s ahead
    await get(c)
    assert target.logins == 1
    now[0] += 2
    await get(c)
    assert target.logins == 2
    assert all(r.headers["Authorization"] for r in target.seen)  # no call went out without a session


async def test_a_refused_login_is_credentials_refused_naming_the_path_never_the_password(tmp_path: Path) -> None:
    c = caller(Target(login_status=401), write_secrets(tmp_path))
    with pytest.raises(CredentialsRefused) as refused:
        await get(c)
    message = str(refused.value)
    assert "login POST /b1s/v1/Login was refused with 401" in message
    assert "rest.auth.sessionLogin" in message
    assert PASSWORD not in message
    assert "manager" not in message
    assert refused.value.connector == "b1"


async def test_a_401_after_the_new_login_is_credentials_refused_after_one_login_only(tmp_path: Path) -> None:
    target = Target(expire_first=10)
    c = caller(target, write_secrets(tmp_path))
    with pytest.raises(CredentialsRefused, match=r"refused the Connector's credentials with 401 .* after a new login"):
        await get(c)
    assert target.logins == 2


async def test_an_odoo_session_expiry_on_http_200_logs_in_again(tmp_path: Path) -> None:
    calls = {"n": 0}

    def target(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/b1s/v1/Login":
            return httpx.Response(200, json={"SessionId": "s", "SessionTimeout": 30})
        calls["n"] += 1
        if calls["n"] == 1:
            error = {
                "code": 100,
                "message": "Odoo Session Expired",
                "data": {"name": "odoo.http.SessionExpiredException"},
            }
            return httpx.Response(200, json={"jsonrpc": "2.0", "id": 1, "error": error})
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": 1, "result": 7})

    expired = "has(response.error) && response.error.data.name == 'odoo.http.SessionExpiredException'"
    c = caller(target, write_secrets(tmp_path), expired_when=expired)
    assert (await get(c)).body == {"jsonrpc": "2.0", "id": 1, "result": 7}
    session = c.session("b1")
    assert session is not None
    assert session.logins == 2


async def test_a_403_error_page_from_a_token_connector_is_credentials_refused_without_the_page(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "token").write_text("tok")
    page = "<!DOCTYPE html><html><body><form action=/login>Sign in, Bearer tok</form></body></html>"
    plan = ConnectorPlan.model_validate(
        {
            "name": "erp",
            "base_url": "http://erp.test",
            "auth": {"type": "Bearer", "token": {"name": "t", "key": "token"}},
        }
    )
    transport = httpx.MockTransport(lambda _: httpx.Response(403, text=page, headers={"Content-Type": "text/html"}))
    c = HttpCaller({"erp": plan}, tmp_path, transport=transport)
    with pytest.raises(CredentialsRefused) as refused:
        await c.request("erp", "GET", "/x", query={}, body=None, idempotency_key=None, headers={}, step="s")
    assert "an HTML page, not shown" in str(refused.value)
    assert "<html" not in str(refused.value)
    assert "Sign in" not in str(refused.value)


async def test_a_refusal_is_handed_to_a_step_whose_rules_read_it(tmp_path: Path) -> None:
    target = Target()
    c = caller(target, write_secrets(tmp_path))
    await get(c)

    def conflict(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {"code": -2035, "message": {"value": "already exists"}}})

    refusing = httpx.MockTransport(conflict)  # the same Connector, now refusing (calls and logins)
    c._connectors["b1"].transport = c._connectors["b1"].client._transport = refusing
    answer = await get(c, answer_refusals=True)
    assert answer.status == 400
    assert answer.body["error"]["code"] == -2035


def test_a_connector_header_carrying_credentials_is_refused_in_the_plan() -> None:
    with pytest.raises(ValueError, match="Cookie carries credentials"):
        ConnectorPlan.model_validate({"name": "e", "base_url": "http://e.test", "headers": {"Cookie": "sid=1"}})


async def test_sessions_that_keep_ending_under_a_call_are_transient_not_refused_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another call logs in each time (a busy process, sessions allowing few calls), and each new
    # session has ended again before this call's resend: worth a redelivery, not AuthFailed.
    target = Target(expire_first=1000)
    c = caller(target, write_secrets(tmp_path))

    async def someone_else_logged_in(self: sessions.LoginSession, refused: int) -> tuple[int, dict[str, str], bool]:
        return refused + 1, {"Authorization": "Session other"}, False

    monkeypatch.setattr(sessions.LoginSession, "renew", someone_else_logged_in)
    with pytest.raises(TransientFailure, match="3 sessions in a row ended") as failed:
        await get(c)
    assert not isinstance(failed.value, CredentialsRefused)
    # retry.attempts (3) attempts, each resent under at most MAX_RENEWALS new sessions.
    assert len(target.seen) == 3 * (1 + sessions.MAX_RENEWALS)


async def test_a_refused_login_is_not_tried_again_by_every_call_so_the_account_is_not_locked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(sessions, "_clock", lambda: now[0])
    target = Target(login_status=401)
    c = caller(target, write_secrets(tmp_path))
    for _ in range(20):
        with pytest.raises(CredentialsRefused):
            await get(c)
    assert target.logins == 1
    now[0] += sessions.LOGIN_RETRY_SECONDS + 1
    target.login_status = 200  # the password was fixed on the system's side
    assert (await get(c)).status == 200
    assert target.logins == 2
