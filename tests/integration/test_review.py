"""Operations people fix exceptions: list, approve, edit-and-retry, trace — over the real streams,
with the record landing in the sandbox ERP exactly once. Deciders are real users of the real API
server (client certificates), allowed by RBAC; the audit names them."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from onceflow_operator.cli import main
from onceflow_operator.dev.controlplane import ControlPlane
from onceflow_operator.dev.localrun import LocalRun
from onceflow_operator.dev.natsserver import NatsServer
from tests.conftest import Kubectl
from tests.integration.scenario import (
    CRM_SECRET,
    Sandboxes,
    crm_customer_event,
    dumps,
    eventually,
    sandbox_effects,
    signed_post,
)

pytestmark = pytest.mark.controlplane


async def cli(nats: NatsServer, *args: str, env: dict[str, str] | None = None) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, main, [*args, "--nats", nats.url], env=env)


@pytest.fixture
def people(
    onboarding: tuple[LocalRun, str], admin_kubectl: Kubectl, control_plane: ControlPlane, tmp_path: Path
) -> dict[str, str]:
    """`--kubeconfig` arguments for alice and bob, who may decide in the scenario's namespace (group shop-reviewers)."""
    _, namespace = onboarding
    admin_kubectl.run("create", "namespace", namespace)
    Kubectl(admin_kubectl.kubeconfig, namespace).apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "exception-deciders", "namespace": namespace},
            "rules": [{"apiGroups": ["onceflow.io"], "resources": ["exceptions"], "verbs": ["get", "update"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "exception-deciders", "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "exception-deciders"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "shop-reviewers"}],
        },
    )
    return {
        user: str(control_plane.user_kubeconfig(tmp_path / user, user, ("shop-reviewers",)))
        for user in ("alice", "bob")
    }


async def waiting(nats: NatsServer, namespace: str) -> list[dict[str, Any]]:
    result = await cli(nats, "exceptions", "list", "-n", namespace, "-o", "json")
    assert result.exit_code == 0, result.output
    return list(json.loads(result.output))


async def send(run: LocalRun, event: dict[str, Any]) -> None:
    async with httpx.AsyncClient() as client:
        resp = await signed_post(
            client, run.gateway_url("crm-webhooks"), "standard-webhooks", CRM_SECRET, dumps(event), uuid.uuid4().hex
        )
    assert resp.status_code == 202


async def test_a_parked_duplicate_is_approved_once_and_lands_in_the_erp_once(
    onboarding: tuple[LocalRun, str], boxes: Sandboxes, nats_server: NatsServer, people: dict[str, str]
) -> None:
    run, namespace = onboarding
    boxes.erp.seed(
        "Customer",
        {
            "name": "ACME Industrial GmbH.",
            "customer_name": "ACME Industrial GmbH.",
            "tax_id": "X",
            "postal_code": "10115",
        },
    )
    tax_id = f"DE{uuid.uuid4().int % 10**9:09d}"
    await send(run, crm_customer_event(tax_id))
    (parked,) = await eventually(lambda: waiting(nats_server, namespace))
    assert parked["reason"] == "ApprovalRequired"
    assert parked["businessKey"] == f"customer/{tax_id}"
    shown = await cli(nats_server, "exceptions", "show", str(parked["sequence"]), "-n", namespace)
    assert "similar-name-same-postcode" in shown.output
    assert tax_id in shown.output

    approved = await cli(
        nats_server,
        "exceptions",
        "approve",
        str(parked["sequence"]),
        "-n",
        namespace,
        "--kubeconfig",
        people["alice"],
        "-m",
        "a different company in the same street",
    )
    assert approved.exit_code == 0, approved.output
    key = f"customer/{tax_id}/createInErp"
    await eventually(lambda: _has(sandbox_effects(boxes.erp), key))
    again = await cli(
        nats_server, "exceptions", "approve", str(parked["sequence"]), "-n", namespace, "-m", "twice",
        "--kubeconfig", people["bob"],
    )  # fmt: skip
    assert again.exit_code != 0
    assert "already decided: approve by alice" in again.output
    await asyncio.sleep(1)  # no condition to wait on: this gives a wrongly doubled effect time to show
    assert (await sandbox_effects(boxes.erp))[key] == 1
    assert await waiting(nats_server, namespace) == []

    traced = await cli(nats_server, "trace", f"customer/{tax_id}", "-n", namespace, "-o", "json")
    outcomes = [e.get("outcome") or e.get("kind") for e in json.loads(traced.output)]
    assert "exception" in outcomes
    assert "decision" in outcomes
    assert "completed" in outcomes


async def test_an_invalid_record_is_edited_and_retried_into_the_erp(
    onboarding: tuple[LocalRun, str], boxes: Sandboxes, nats_server: NatsServer, tmp_path: Path, people: dict[str, str]
) -> None:
    run, namespace = onboarding
    tax_id = f"DE{uuid.uuid4().int % 10**9:09d}"
    bad = crm_customer_event(tax_id, address={"city": "Berlin", "postal_code": "10115", "country": "XX"})
    await send(run, bad)
    (exc,) = await eventually(lambda: waiting(nats_server, namespace))
    assert exc["reason"] == "InvalidRecord"
    retried = await cli(
        nats_server, "exceptions", "retry", str(exc["sequence"]), "-n", namespace, "-m", "try again",
        "--kubeconfig", people["alice"],
    )  # fmt: skip
    assert retried.exit_code == 0
    # Unchanged bytes fail the same way: a new exception, the first one closed as retried.
    (second,) = await eventually(lambda: waiting(nats_server, namespace))
    assert second["sequence"] != exc["sequence"]
    editor = tmp_path / "fix-country.sh"
    editor.write_text('#!/bin/sh\nsed -i \'s/"XX"/"DE"/\' "$1"\n')
    editor.chmod(0o755)
    edited = await cli(
        nats_server,
        "exceptions",
        "edit",
        str(second["sequence"]),
        "-n",
        namespace,
        "--kubeconfig",
        people["bob"],
        "-m",
        "country code typo",
        env={"EDITOR": str(editor)},
    )
    assert edited.exit_code == 0, edited.output
    key = f"customer/{tax_id}/createInErp"
    await eventually(lambda: _has(sandbox_effects(boxes.erp), key))
    assert (await sandbox_effects(boxes.erp))[key] == 1
    assert await waiting(nats_server, namespace) == []
    history = json.loads((await cli(nats_server, "exceptions", "list", "-n", namespace, "--all", "-o", "json")).output)
    assert [h["decision"] for h in history] == ["retry", "edit"]
    assert [h["decidedBy"] for h in history] == ["alice", "bob"]


async def test_edited_payload_that_is_not_json_is_refused(
    onboarding: tuple[LocalRun, str], nats_server: NatsServer, tmp_path: Path, people: dict[str, str]
) -> None:
    run, namespace = onboarding
    await send(run, crm_customer_event("DE1", address={"country": "XX", "postal_code": "1"}))
    (exc,) = await eventually(lambda: waiting(nats_server, namespace))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    result = await cli(
        nats_server,
        "exceptions",
        "edit",
        str(exc["sequence"]),
        "-n",
        namespace,
        "-m",
        "x",
        "--payload-file",
        str(broken),
        "--kubeconfig",
        people["alice"],
    )
    assert result.exit_code != 0
    assert "not JSON" in result.output
    assert len(await waiting(nats_server, namespace)) == 1


async def _has(effects: Any, key: str) -> bool:
    return key in await effects
