"""Outbound calls: how answers are classified and what a target or a payload can make the runner do.

Unit tests use httpx's `MockTransport` (the test seam); where the wire matters (redirects, body
sizes, slow answers) a real aiohttp server on 127.0.0.1 answers through the production transport.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onceflow_runner.adapters.outbound import HttpCaller, resolve_url, retry_after_seconds
from onceflow_runner.contract.plan import ConnectorPlan
from onceflow_runner.errors import InvalidRecord, PermanentFailure, PlanError, RejectedByTarget, TransientFailure

PROPERTY = settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])


def caller_answering(handler: Callable[[httpx.Request], httpx.Response], tmp_path: Path, **plan: object) -> HttpCaller:
    connector = ConnectorPlan.model_validate({"name": "erp", "base_url": "http://erp.test:8000", **plan})
    return HttpCaller({"erp": connector}, tmp_path, transport=httpx.MockTransport(handler))


async def get(caller: HttpCaller, path: str = "/api/resource/Customer") -> object:
    return await caller.request(
        "erp", "GET", path, query={}, body=None, idempotency_key=None, headers={}, step="create-customer"
    )


# --- Retry-After (issue 19, item 7) -----------------------------------------------------------------

retry_after_values = st.one_of(
    st.sampled_from(["3000000000", "inf", "-inf", "nan", "Infinity", "-5", "1e400", "1_000", "", "  7 ", "0.5"]),
    st.integers(min_value=-(10**12), max_value=10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)).map(
        format_datetime
    ),
    st.text(max_size=40),
)


@PROPERTY
@given(value=retry_after_values, cap=st.floats(min_value=0, max_value=3600))
def test_retry_after_is_always_a_finite_delay_within_the_cap_or_ignored(value: str, cap: float) -> None:
    delay = retry_after_seconds(value, cap=cap)
    assert delay is None or (math.isfinite(delay) and 0 <= delay <= cap)


@pytest.mark.parametrize(
    "header",
    [
        "3000000000",
        format_datetime(datetime.now(UTC) + timedelta(days=365 * 40), usegmt=True),
    ],
)
async def test_huge_retry_after_or_far_date_is_capped_at_max_backoff(header: str, tmp_path: Path) -> None:
    caller = caller_answering(
        lambda _: httpx.Response(503, headers={"Retry-After": header}), tmp_path, attempts=1, max_backoff=10
    )
    with pytest.raises(TransientFailure) as failed:
        await get(caller)
    assert failed.value.delay is not None
    assert 0 <= failed.value.delay <= 10


async def test_non_finite_or_negative_retry_after_is_ignored_for_own_backoff(tmp_path: Path) -> None:
    for header in ("inf", "1e400", "nan", "-5"):
        answer = httpx.Response(429, headers={"Retry-After": header})
        caller = caller_answering(lambda _, answer=answer: answer, tmp_path, attempts=1)
        with pytest.raises(TransientFailure) as failed:
            await get(caller)
        assert failed.value.delay is None, header


# --- Redirects (issue 19, item 4) -----------------------------------------------------------------


class LoopbackServers:
    """Two real HTTP servers on 127.0.0.1: the ERP (which redirects) and where the redirect points."""

    def __init__(self) -> None:
        self.elsewhere_requests: list[dict[str, str]] = []
        self.erp_status = 301
        self._runners: list[web.AppRunner] = []
        self.erp_url = self.elsewhere_url = ""

    async def start(self) -> None:
        async def redirect(request: web.Request) -> web.Response:
            return web.Response(status=self.erp_status, headers={"Location": f"{self.elsewhere_url}/login?token=s3"})

        async def record(request: web.Request) -> web.Response:
            self.elsewhere_requests.append(dict(request.headers))
            return web.json_response({"data": {"name": "created elsewhere"}})

        for handler in (redirect, record):
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", handler)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self._runners.append(runner)
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            if handler is redirect:
                self.erp_url = f"http://127.0.0.1:{port}"
            else:
                self.elsewhere_url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()


@pytest.fixture
async def loopback() -> AsyncIterator[LoopbackServers]:
    servers = LoopbackServers()
    await servers.start()
    yield servers
    await servers.stop()


def real_caller(base_url: str, secrets: Path, **plan: object) -> HttpCaller:
    (secrets / "erp").mkdir(exist_ok=True)
    (secrets / "erp" / "token").write_text("erp-credential")
    connector = ConnectorPlan.model_validate(
        {"name": "erp", "base_url": base_url, "auth": {"type": "Bearer", "token": {"name": "erp", "key": "token"}}}
        | plan
    )
    return HttpCaller({"erp": connector}, secrets)


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_redirect_is_a_permanent_failure_naming_location_and_base_url_and_sends_no_credentials(
    status: int, loopback: LoopbackServers, tmp_path: Path
) -> None:
    loopback.erp_status = status
    caller = real_caller(loopback.erp_url, tmp_path)
    try:
        with pytest.raises(RejectedByTarget) as refused:
            await caller.request(
                "erp",
                "POST",
                "/api/resource/Customer",
                query={},
                body={"customer_name": "Acme"},
                idempotency_key="k",
                headers={},
                step="create-customer",
            )
    finally:
        await caller.aclose()
    message = str(refused.value)
    assert refused.value.step == "create-customer"
    assert refused.value.status == status
    assert f"{loopback.elsewhere_url}/login" in message
    assert "token=s3" not in message
    assert "baseURL" in message
    assert loopback.erp_url in message
    assert loopback.elsewhere_requests == []


async def test_redirect_is_transient_when_the_connector_says_retry(loopback: LoopbackServers, tmp_path: Path) -> None:
    loopback.erp_status = 302
    caller = real_caller(loopback.erp_url, tmp_path, on_redirect="Retry", attempts=1)
    try:
        with pytest.raises(TransientFailure, match="redirecting to"):
            await get(caller)
    finally:
        await caller.aclose()
    assert loopback.elsewhere_requests == []


# --- Response size and total time (issue 19, item 18) ----------------------------------------------


@pytest.fixture
async def unruly_erp() -> AsyncIterator[str]:
    """An ERP that answers too much, with or without Content-Length, or trickles one byte at a time."""

    async def big(_: web.Request) -> web.Response:
        return web.Response(body=b"x" * 300_000, content_type="application/json")

    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for _ in range(30):
            await resp.write(b"y" * 10_000)
        await resp.write_eof()
        return resp

    async def trickle(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for _ in range(100):
            await resp.write(b" ")
            await asyncio.sleep(0.05)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/big", big)
    app.router.add_get("/chunked", chunked)
    app.router.add_get("/trickle", trickle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    await runner.cleanup()


@pytest.mark.parametrize("path", ["/big", "/chunked"])
async def test_answer_longer_than_max_response_bytes_is_a_transient_failure_saying_so(
    path: str, unruly_erp: str, tmp_path: Path
) -> None:
    caller = real_caller(unruly_erp, tmp_path, max_response_bytes=100_000, attempts=1)
    try:
        with pytest.raises(TransientFailure, match=r"larger than 100000 bytes \(the Connector's maxResponseBytes\)"):
            await get(caller, path)
    finally:
        await caller.aclose()


async def test_answer_trickling_past_the_total_timeout_is_a_transient_failure_saying_so(
    unruly_erp: str, tmp_path: Path
) -> None:
    caller = real_caller(unruly_erp, tmp_path, total_timeout=0.5, read_timeout=2, attempts=1)
    started = time.monotonic()
    try:
        with pytest.raises(TransientFailure, match=r"longer than 0.5s in all \(the Connector's timeouts.total\)"):
            await get(caller, "/trickle")
    finally:
        await caller.aclose()
    assert time.monotonic() - started < 2


async def test_oversized_answer_from_any_transport_is_refused(tmp_path: Path) -> None:
    caller = caller_answering(lambda _: httpx.Response(200, content=b"z" * 5000), tmp_path, max_response_bytes=4096)
    with pytest.raises(TransientFailure, match="maxResponseBytes"):
        await get(caller)


def test_base_url_with_credentials_is_refused_at_start_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match=r"rest.baseURL must not carry credentials"):
        caller_answering(lambda _: httpx.Response(200), tmp_path, base_url="https://admin:s3cr3t@erp.test")


# --- OAuth2 token answers (issue 19, item 6) --------------------------------------------------------


def oauth_caller(token_answer: httpx.Response, tmp_path: Path) -> HttpCaller:
    (tmp_path / "erp-oauth").mkdir()
    (tmp_path / "erp-oauth" / "id").write_text("client")
    (tmp_path / "erp-oauth" / "secret").write_text("s3cr3t")

    def answer(request: httpx.Request) -> httpx.Response:
        return token_answer if request.url.path == "/oauth/token" else httpx.Response(200, json={"ok": True})

    return caller_answering(
        answer,
        tmp_path,
        auth={
            "type": "OAuth2ClientCredentials",
            "client_id": {"name": "erp-oauth", "key": "id"},
            "client_secret": {"name": "erp-oauth", "key": "secret"},
            "token_url": "http://erp.test:8000/oauth/token",
        },
    )


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, json={"token_type": "bearer", "expires_in": 3600}),
        httpx.Response(200, json=["access_token"]),
        httpx.Response(200, text="<html>login</html>"),
        httpx.Response(200, json={"access_token": None}),
    ],
)
async def test_token_answer_without_access_token_is_a_permanent_failure_naming_the_connector_auth(
    answer: httpx.Response, tmp_path: Path
) -> None:
    with pytest.raises(PermanentFailure, match=r"Connector erp: the token endpoint .* without an access_token.*oauth2"):
        await get(oauth_caller(answer, tmp_path))


async def test_token_answer_with_odd_expires_in_still_authenticates(tmp_path: Path) -> None:
    caller = oauth_caller(httpx.Response(200, json={"access_token": "t0k", "expires_in": "soon"}), tmp_path)
    assert (await get(caller)).status == 200  # type: ignore[attr-defined]


# --- Paths built from payload data (issue 19, item 13) ----------------------------------------------

BASES = ["http://erp.test:8000", "https://erp.test/erp/", "http://10.0.0.5:8080/api/v2"]
HOSTILE_PATHS = [
    "/api/resource/Customer/../../admin",
    "/api/resource/Customer/%2e%2e/%2E%2E/admin",
    "/api/resource/Customer/%252e%252e/admin",
    "/api/resource/Customer/..%2Fadmin",
    "/api/resource/./Customer",
    "//evil.example/steal",
    "/api//resource",
    "https://evil.example/steal",
    "http:evil.example",
    "javascript:alert(1)",
    "/api/resource/Customer#frag",
    "/api/resource\\..\\admin",
    "/api/resource/\r\nHost: evil",
]


@pytest.mark.parametrize("path", HOSTILE_PATHS)
def test_path_leaving_the_base_url_is_an_invalid_record_naming_the_step(path: str) -> None:
    with pytest.raises(InvalidRecord, match=r"^erp: path .*pathSegment") as refused:
        resolve_url(httpx.URL("http://erp.test:8000/erp"), path, connector="erp", step="updateErp")
    assert refused.value.step == "updateErp"


def test_plain_paths_keep_the_base_path_prefix_and_their_query() -> None:
    base = httpx.URL("https://erp.test/erp")
    assert str(resolve_url(base, "/api/resource/Item Price", connector="erp", step="s")) == (
        "https://erp.test/erp/api/resource/Item%20Price"
    )
    assert resolve_url(base, '/api/resource/Customer?fields=["*"]', connector="erp", step="s").params["fields"] == (
        '["*"]'
    )


def _is_under(url: httpx.URL, base: httpx.URL) -> bool:
    prefix = base.path.rstrip("/") + "/"
    same_origin = (url.scheme, url.host, url.port) == (base.scheme, base.host, base.port)
    return same_origin and not url.userinfo and not url.fragment and url.path.startswith(prefix)


path_pieces = st.sampled_from(
    [
        "/",
        "..",
        ".",
        "%2e",
        "%2E%2e",
        "%252e",
        "%2F",
        "?",
        "#",
        "//",
        "\\",
        "@",
        ":",
        "http:",
        "https://",
        "evil.example",
        "api",
        "resource",
        "Customer",
        " ",
        "%",
        "%zz",
        "ü",
        "\x00",
        "\n",
        "~",
        ";",
        "=",
        "&",
    ]
)


@PROPERTY
@given(
    base=st.sampled_from(BASES),
    path=st.text(max_size=60) | st.lists(path_pieces | st.text(max_size=6), max_size=12).map("".join),
)
def test_any_path_ends_under_the_base_url_or_as_an_invalid_record(base: str, path: str) -> None:
    base_url = httpx.URL(base)
    try:
        url = resolve_url(base_url, path, connector="erp", step="call")
    except InvalidRecord as refused:
        step = refused.step
        assert step == "call"
        return
    assert _is_under(url, base_url), (path, str(url))
    assert all(seg not in {".", ".."} for seg in url.path.split("/"))


async def test_hostile_payload_path_sends_no_request_with_the_credentials(
    loopback: LoopbackServers, tmp_path: Path
) -> None:
    caller = real_caller(loopback.elsewhere_url + "/erp", tmp_path)
    try:
        for path in ("/erp/../steal", "//127.0.0.1:1/steal", f"{loopback.erp_url}/steal", "/x/%2e%2e/%2e%2e/steal"):
            with pytest.raises(InvalidRecord):
                await get(caller, path)
    finally:
        await caller.aclose()
    assert loopback.elsewhere_requests == []
