"""Session-login ERPs, JSON-RPC answers and refused credentials, end to end on real servers.

A real gateway and runner (processes, as `onceflow local run` starts them), a real nats-server
and the sandbox ERP in its session-login mode (Frappe's `/api/method/login`, `sid` cookie) or
its Odoo-style JSON-RPC endpoint. Each test reads the outcome from the ERP's own books and the
exception stream, as a person would.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import yaml

from onceflow_operator.api import Connector
from onceflow_operator.compiler.planner import connector_plan
from onceflow_operator.dev.natsserver import NatsServer
from onceflow_runner.adapters.outbound import HttpCaller
from onceflow_runner.testing.sandbox import ErpSandbox
from tests.integration.scenario import eventually
from tests.integration.test_delivery_faults import start, stop

FRAPPE_LOGIN: dict[str, Any] = {
    "type": "SessionLogin",
    "sessionLogin": {
        "path": "/api/method/login",
        "secrets": {
            "user": {"name": "erp-api", "key": "user"},
            "password": {"name": "erp-api", "key": "password"},
        },
        "body": "{'usr': secrets.user, 'pwd': secrets.password}",
        "session": "cookies.sid",
    },
}
ROOT = Path(__file__).resolve().parents[2]
LOGIN_SECRET = {"user": "integration@example.com", "password": "sandbox-password"}


async def test_session_login_survives_session_expiry_mid_load_with_one_login_per_expiry(
    nats_server: NatsServer,
) -> None:
    # Every session ends after 15 calls: 150 records at 32 in flight cross about ten expiries.
    erp = ErpSandbox(auth="session", session_calls=15)
    h = await start(nats_server, erp=erp, auth=FRAPPE_LOGIN, erp_secret=LOGIN_SECRET)
    try:
        await h.send_many([f"s{i}" for i in range(150)], concurrency=32)
        ledger = await h.settled(150, within=90)
        assert len(ledger.effects) == 150
        assert ledger.exceptions == []
        assert ledger.dead_letters == []
        assert erp.sessions_ended >= 5, "the load should have crossed several expiries"
        assert erp.expired_answers >= erp.sessions_ended
        # One login at start, then exactly one per session that ended: the refused calls of an
        # expiry share one new login instead of each logging in.
        assert erp.logins == erp.sessions_ended + 1
        assert erp.refused_logins == 0
        # Neither the password nor any session reached a log line.
        logs = "".join(p.read_text(errors="replace") for p in (h.run.workdir / "logs").glob("*.log"))
        assert logs, "the runner and gateway write logs"
        assert LOGIN_SECRET["password"] not in logs
        assert not [sid for sid in erp.issued_sessions if sid in logs]
    finally:
        await stop(h)


JSONRPC_CREATE: dict[str, Any] = {
    "connector": "erp",
    "path": "/jsonrpc",
    "body": (
        "{'jsonrpc': '2.0', 'id': 1, 'method': 'res.partner.create', "
        "'params': {'values': {'name': record.customer_name, 'vat': record.tax_id}}}"
    ),
    "response": {
        "rules": [
            {
                "when": "has(response.error) && response.error.data.name == 'odoo.exceptions.ValidationError'",
                "outcome": "Failed",
                "message": "response.error.data.message",
            },
            {"when": "has(response.error)", "outcome": "Retry", "message": "response.error.message"},
        ],
        "result": "response.result",
    },
}


async def test_jsonrpc_error_answer_becomes_an_exception_with_the_systems_message(nats_server: NatsServer) -> None:
    h = await start(nats_server, call=JSONRPC_CREATE)
    try:
        await h.send("good")
        await h.send("nameless", json.dumps({"key": "nameless", "name": ""}).encode())
        ledger = await h.settled(2)
        (exc,) = ledger.exceptions
        assert exc.headers["Onceflow-Reason"] == "RejectedByTarget"
        assert exc.headers["Onceflow-Step"] == "create"
        assert "The partner's name is mandatory" in exc.headers["Onceflow-Error"]
        assert "Traceback" not in exc.headers["Onceflow-Error"]
        assert list(ledger.effects) == ["good"]
        assert h.erp.docs["Customer"]["Customer good"]["vat"] == "good"
    finally:
        await stop(h)


async def test_401_storm_holds_records_without_exceptions_until_the_credentials_work(
    nats_server: NatsServer,
) -> None:
    # The Secret holds a key the ERP does not know (rotated on the ERP, not yet in the Secret).
    erp = ErpSandbox(api_key="rotated-key")
    h = await start(
        nats_server,
        erp=erp,
        erp_secret={"api-key": "old-key", "api-secret": "sandbox-secret"},
        backoff=["100ms", "300ms"],
        max_deliver=50,
    )
    try:
        await h.send_many([f"a{i}" for i in range(20)])
        # Every record was refused at least once, and none became an exception or a dead letter.
        await eventually(lambda: erp.requests >= 40, within=30)
        ledger = await h.ledger()
        assert ledger.exceptions == []
        assert ledger.dead_letters == []
        assert ledger.effects == {}
        # A person puts the old key back on the ERP: the held records go through, once each.
        erp.token = "token old-key:sandbox-secret"
        ledger = await h.settled(20, within=60)
        assert len(ledger.effects) == 20
        assert ledger.exceptions == []
    finally:
        await stop(h)


async def test_the_sap_business_one_example_logs_in_to_a_b1_shaped_login_and_its_cookies_open_the_api(
    tmp_path: Path,
) -> None:
    # examples/erps/sap-business-one.yaml as compiled for a runner, pointed at the sandbox's
    # B1-shaped login (`POST /b1s/v1/Login`: SessionId, SessionTimeout, B1SESSION and ROUTEID).
    docs = list(yaml.safe_load_all((ROOT / "examples" / "erps" / "sap-business-one.yaml").read_text()))
    connector = Connector.model_validate(next(d for d in docs if d["kind"] == "Connector"))
    secret = next(d for d in docs if d["kind"] == "Secret")
    erp = ErpSandbox(auth="session", username="manager", password="B1-pass", company="SBODEMOUS")
    await erp.start()
    try:
        plan = connector_plan(connector).model_copy(update={"base_url": f"{erp.url}/b1s/v1"})
        values = {**secret["stringData"], "user": "manager", "password": "B1-pass"}
        (tmp_path / "sap-b1-login").mkdir()
        for key, value in values.items():
            (tmp_path / "sap-b1-login" / key).write_text(value)
        caller = HttpCaller({"sap-b1": plan}, tmp_path)
        try:
            headers = await caller.credentials("sap-b1")
        finally:
            await caller.aclose()
        assert erp.logins == 1
        assert set(headers["Cookie"].split("; ")) == {f"B1SESSION={next(iter(erp.sessions))}", "ROUTEID=.node1"}
        async with httpx.AsyncClient() as client:
            answer = await client.get(f"{erp.url}/api/resource/Customer", headers=headers)
        assert answer.status_code == 200  # the session the example's login got is the one the ERP accepts
    finally:
        await erp.stop()
