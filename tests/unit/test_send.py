"""`onceflow send`: it signs as the gateway verifies, and every mistake ends in one line naming the fix."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from onceflow_operator.cli import main
from onceflow_operator.cli.send import _answer
from onceflow_operator.compiler.webhooks import (
    WebhookRequestError,
    connector_from_manifest,
    secret_values,
    signed_webhook,
    signing_secret,
)
from onceflow_operator.dev.controlplane import free_port
from onceflow_runner.contract.plan import GatewayPlan
from onceflow_runner.gateway.server import Gateway
from onceflow_runner.gateway.signatures import SignatureError, verify
from tests.conftest import ROOT

EXAMPLES = ROOT / "examples"
ONBOARDING = EXAMPLES / "customer-onboarding"
SAMPLE = ONBOARDING / "webhooks" / "customer-approved.json"


def _example_docs() -> list[dict[str, Any]]:
    return [
        d
        for path in sorted(EXAMPLES.rglob("*.yaml"))
        if "fixtures" not in path.parts
        for d in yaml.safe_load_all(path.read_text())
        if d
    ]


def _webhook_connectors() -> list[dict[str, Any]]:
    return [d for d in _example_docs() if d["kind"] == "Connector" and d["spec"]["type"] == "Webhook"]


def _gateway(plan: GatewayPlan, secret: str, folder: Path) -> Gateway:
    """The real gateway object for `plan`, its Secret mounted as in a pod (nothing is started)."""
    ref = plan.signature.secret
    (folder / ref.name).mkdir(parents=True, exist_ok=True)
    (folder / ref.name / ref.key).write_text(secret)
    return Gateway(plan, nats_url="nats://127.0.0.1:1", secrets_dir=folder)


@pytest.mark.parametrize("doc", _webhook_connectors(), ids=lambda d: d["metadata"]["name"])
def test_every_example_webhook_is_signed_so_its_own_gateway_accepts_it(doc: dict[str, Any], tmp_path: Path) -> None:
    secrets = {d["metadata"]["name"]: d for d in _example_docs() if d["kind"] == "Secret"}
    connector = connector_from_manifest(doc)
    secret = signing_secret(connector, secrets, where="the examples")
    body = SAMPLE.read_bytes()
    now = int(time.time())
    request = signed_webhook(connector, secret, body, namespace="demo", delivery_id="evt-1", now=now)
    gateway = _gateway(request.plan, secret, tmp_path)
    assert request.path == doc["spec"]["webhook"]["path"]
    assert verify(gateway.signature, gateway.secret, request.headers, body, now)
    assert secret not in " ".join(request.headers.values())


def test_a_body_signed_with_another_key_is_refused_by_the_gateway(tmp_path: Path) -> None:
    connector = connector_from_manifest(_webhook_connectors()[0])
    body = SAMPLE.read_bytes()
    other = "whsec_" + base64.b64encode(b"another key entirely").decode()
    request = signed_webhook(connector, other, body, namespace="demo", delivery_id="e", now=1)
    gateway = _gateway(request.plan, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", tmp_path)
    with pytest.raises(SignatureError, match="no v1 signature in webhook-signature matches the body"):
        verify(gateway.signature, gateway.secret, request.headers, body, 1)


def test_the_event_header_is_set_for_connectors_that_read_it_from_a_header() -> None:
    shop = next(d for d in _webhook_connectors() if d["metadata"]["name"] == "shop-webhooks")
    request = signed_webhook(
        connector_from_manifest(shop), "a-long-enough-key", b"{}", namespace="d", delivery_id="x", now=1, event="o/c"
    )
    assert request.headers["X-Shopify-Topic"] == "o/c"


def test_an_event_the_connector_reads_from_the_body_is_refused_as_an_option() -> None:
    tpl = next(d for d in _webhook_connectors() if d["metadata"]["name"] == "tpl-webhooks")
    with pytest.raises(WebhookRequestError, match=r"from the body's field 'milestone'; --event 'shipped' cannot"):
        signed_webhook(
            connector_from_manifest(tpl),
            "a-long-enough-key",
            b"{}",
            namespace="d",
            delivery_id="x",
            now=1,
            event="shipped",
        )


def test_secret_values_reads_data_and_string_data_and_names_bad_base64() -> None:
    doc = {"metadata": {"name": "s"}, "data": {"a": "aGk="}, "stringData": {"b": "plain"}}
    assert secret_values(doc) == {"a": "hi", "b": "plain"}
    with pytest.raises(WebhookRequestError, match="Secret/s: a value under data is not base64"):
        secret_values({"metadata": {"name": "s"}, "data": {"a": "!!"}})


def test_the_answer_is_one_line_with_status_delivery_id_and_whether_it_was_stored() -> None:
    accepted = {"accepted": True, "id": "evt-1", "duplicate": False, "sequence": 7}
    assert _answer("crm", 202, "Accepted", accepted, "Secret s/k") == (
        "crm: 202 Accepted, delivery id evt-1, stored (stream sequence 7)"
    )
    assert _answer("crm", 202, "Accepted", accepted | {"duplicate": True}, "Secret s/k") == (
        "crm: 202 Accepted, delivery id evt-1, a duplicate of stream sequence 7: not stored again"
    )
    assert _answer("crm", 404, "Not Found", None, "Secret s/k") == (
        "crm: 404 Not Found; the URL's path is not the Connector's spec.webhook.path"
    )


def _send(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["send", *args], env=env)
    return result.exit_code, result.output


def _manifests(tmp_path: Path, *docs: dict[str, Any]) -> str:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump_all(list(docs)))
    return str(path)


CRM = next(d for d in _webhook_connectors() if d["metadata"]["name"] == "crm-webhooks")
CRM_SECRET = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "crm-webhook"}, "stringData": {"secret": ""}}


@pytest.mark.parametrize(
    ("docs", "connector", "message"),
    [
        (
            [CRM],
            "crm-webhooks",
            "Error: Connector/crm-webhooks: spec.webhook.signature.secretRef names Secret 'crm-webhook', "
            "which is not in the given manifests (add its manifest with -f)",
        ),
        (
            [CRM, CRM_SECRET | {"stringData": {"other": "x"}}],
            "crm-webhooks",
            "Error: Connector/crm-webhooks: Secret 'crm-webhook' has no key 'secret' (spec.webhook.signature.secretRef)",
        ),
        (
            [CRM, CRM_SECRET | {"stringData": {"secret": "not-a-whsec-key"}}],
            "crm-webhooks",
            "Error: Connector/crm-webhooks: spec.webhook.signature.secretRef (crm-webhook/secret): "
            "the standard-webhooks signing secret does not start with whsec_",
        ),
        (
            [
                {
                    "apiVersion": "onceflow.io/v1alpha1",
                    "kind": "Connector",
                    "metadata": {"name": "erp"},
                    "spec": {"type": "REST", "rest": {"baseURL": "http://erp.test"}},
                }
            ],
            "erp",
            "Error: Connector/erp: spec.type is REST, not Webhook: it has no gateway to send to",
        ),
        ([CRM], "nope", "Error: no Connector named 'nope' in the given manifests (-f)"),
    ],
    ids=["no-secret", "no-key", "unusable-secret", "rest-connector", "no-connector"],
)
def test_a_connector_that_cannot_be_signed_for_ends_in_one_line(
    tmp_path: Path, docs: list[dict[str, Any]], connector: str, message: str
) -> None:
    code, output = _send(connector, "-f", _manifests(tmp_path, *docs), "-d", "{}", "--to", "http://127.0.0.1:1")
    assert code == 1
    assert output.strip().splitlines() == [message]
    assert "not-a-whsec-key" not in output


def test_an_unreachable_gateway_ends_in_one_line_with_the_full_url(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    files = _manifests(
        tmp_path, *[d for d in _example_docs() if d["metadata"]["name"] in {"crm-webhooks", "crm-webhook"}]
    )
    code, output = _send("crm-webhooks", "-f", files, "-d", f"@{SAMPLE}", "--to", f"http://127.0.0.1:{port}")
    assert code == 1
    assert (
        output.strip() == f"Error: cannot reach the gateway at http://127.0.0.1:{port}/crm (ConnectError); check --to"
    )


def test_without_to_and_without_dev_up_send_says_where_the_url_comes_from(tmp_path: Path) -> None:
    files = _manifests(
        tmp_path, *[d for d in _example_docs() if d["metadata"]["name"] in {"crm-webhooks", "crm-webhook"}]
    )
    code, output = _send("crm-webhooks", "-f", files, "-d", "{}", env={"ONCEFLOW_CACHE": str(tmp_path / "cache")})
    assert code == 2
    assert output.strip().splitlines()[-1] == (
        "Error: no gateway URL: give --to URL (the gateway's Service or Ingress), or start onceflow dev up"
    )


def test_an_unreadable_body_file_names_the_option(tmp_path: Path) -> None:
    code, output = _send("crm-webhooks", "-d", f"@{tmp_path / 'missing.json'}")
    assert code == 2
    assert "Invalid value for -d/--data: cannot read" in output
