"""A Connector's status says when its credentials fail: the operator's probe uses them.

The real kube-apiserver, the operator (KopfRunner) and the sandbox ERP on 127.0.0.1: a
session-login Connector whose Secret holds a wrong password, one whose password is right, and a
token Connector whose token the ERP does not know. The probe logs in as a runner would and reads
the answer of the Connector's health path with the credentials.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from onceflow_runner.testing.sandbox import ErpSandbox
from tests.conftest import Kubectl

pytestmark = pytest.mark.controlplane


def secret(name: str, **data: str) -> dict[str, Any]:
    labels = {"onceflow.io/credentials": "true"}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "labels": labels}, "stringData": data}


def connector(name: str, base_url: str, auth: dict[str, Any], health_path: str) -> dict[str, Any]:
    return {
        "apiVersion": "onceflow.io/v1alpha1",
        "kind": "Connector",
        "metadata": {"name": name},
        "spec": {"type": "REST", "rest": {"baseURL": base_url, "auth": auth, "healthPath": health_path}},
    }


def frappe_login(secret_name: str) -> dict[str, Any]:
    return {
        "type": "SessionLogin",
        "sessionLogin": {
            "path": "/api/method/login",
            "secrets": {
                "user": {"name": secret_name, "key": "user"},
                "password": {"name": secret_name, "key": "password"},
            },
            "body": "{'usr': secrets.user, 'pwd': secrets.password}",
        },
    }


async def authenticated(kubectl: Kubectl, name: str, within: float = 30.0) -> dict[str, Any]:
    """Wait (without blocking the sandbox's loop) for the Connector's Authenticated condition."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        obj = await asyncio.to_thread(kubectl.get, "connector", name)
        found = next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == "Authenticated"), None)
        if found:
            return {"condition": found, "object": obj}
        await asyncio.sleep(0.3)
    raise AssertionError(f"Connector {name} has no Authenticated condition within {within}s")


async def test_connector_status_says_auth_failed_when_its_login_or_token_is_refused(
    kubectl: Kubectl, operator_running: None
) -> None:
    session_erp = ErpSandbox(auth="session", password="right-password")
    token_erp = ErpSandbox(api_key="current-key")
    await session_erp.start()
    await token_erp.start()
    try:
        await asyncio.to_thread(
            kubectl.apply,
            secret("b1-wrong", user="integration@example.com", password="wrong-password"),
            secret("b1-right", user="integration@example.com", password="right-password"),
            secret("erp-token", token="stale"),
            connector("erp-session-wrong", session_erp.url, frappe_login("b1-wrong"), "/api/method/ping"),
            connector("erp-session-right", session_erp.url, frappe_login("b1-right"), "/api/method/ping"),
            connector(
                "erp-token-stale",
                token_erp.url,
                {"type": "Bearer", "bearer": {"tokenRef": {"name": "erp-token", "key": "token"}}},
                "/api/method/ping",
            ),
        )
        wrong = await authenticated(kubectl, "erp-session-wrong")
        assert wrong["condition"]["status"] == "False"
        assert wrong["condition"]["reason"] == "AuthFailed"
        assert "login POST /api/method/login was refused with 401" in wrong["condition"]["message"]
        assert "wrong-password" not in json.dumps(wrong["object"])

        right = await authenticated(kubectl, "erp-session-right")
        assert right["condition"]["status"] == "True"
        assert right["condition"]["reason"] == "CredentialsAccepted"
        assert session_erp.logins >= 1  # the probe logged in, and its session opened the health path

        stale = await authenticated(kubectl, "erp-token-stale")
        assert stale["condition"]["reason"] == "AuthFailed"
        assert "answered 401 to the Connector's credentials" in stale["condition"]["message"]
    finally:
        await session_erp.stop()
        await token_erp.stop()
