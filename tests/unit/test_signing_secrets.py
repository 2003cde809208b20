"""An empty or malformed signing secret is refused everywhere it can be seen, in the same words.

Issue 19 item 15: HMAC with an empty key is a key everyone knows, and a Standard Webhooks secret
that is not `whsec_<base64>` verifies nothing. The gateway (integration tests), `onceflow validate`
and `onceflow local run` (here) refuse both before any webhook is accepted.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from onceflow_operator.api.names import CREDENTIALS_LABEL
from onceflow_operator.cli import main
from onceflow_operator.compiler.validation import validate_paths
from onceflow_operator.dev.localrun import LocalRun, LocalRunError
from onceflow_runner.contract.signing import signing_secret_problem
from onceflow_runner.gateway.signatures import SignatureConfig, SignatureError, sign, verify
from tests import cases

UNUSABLE = [
    ("hmac", ""),
    ("hmac", "  \t\n"),
    ("github", ""),
    ("shopify", " "),
    ("stripe", ""),
    ("standard-webhooks", ""),
    ("standard-webhooks", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
    ("standard-webhooks", "whsec_not base64!"),
    ("standard-webhooks", "whsec_"),
]


@pytest.mark.parametrize(("scheme", "secret"), UNUSABLE)
def test_empty_whitespace_and_malformed_secrets_are_named_unusable(scheme: str, secret: str) -> None:
    assert signing_secret_problem(scheme, secret)


@pytest.mark.parametrize("scheme", ["hmac", "github", "shopify", "stripe"])
def test_request_signed_with_an_empty_key_is_refused(scheme: str) -> None:
    config = SignatureConfig(scheme, header="X-Signature")
    body = b'{"forged": true}'
    headers = sign(config, "", body, delivery_id="f", timestamp=int(time.time()))
    with pytest.raises(SignatureError, match="empty"):
        verify(config, "", headers, body, time.time())
    with pytest.raises(SignatureError, match="empty"):
        verify(config, "   ", headers, body, time.time())


def _secret(value: str, name: str = "crm") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "labels": {CREDENTIALS_LABEL: "true"}},
        "stringData": {"secret": value},
    }


@pytest.mark.parametrize("value", ["", "   ", "whsec_!!", "plain-text-secret"])
def test_validate_refuses_a_webhook_connector_whose_secret_manifest_is_unusable(tmp_path: Path, value: str) -> None:
    path = tmp_path / "crm.yaml"
    path.write_text(yaml.safe_dump_all([cases.connector_webhook(), _secret(value)]))
    _, problems = validate_paths([path])
    assert [(p.kind, p.name, p.path) for p in problems] == [("Connector", "crm", "spec.webhook.signature.secretRef")]
    assert value.strip() not in str(problems[0]) or not value.strip()


def test_validate_says_it_on_the_command_line_without_printing_the_secret(tmp_path: Path) -> None:
    path = tmp_path / "crm.yaml"
    path.write_text(yaml.safe_dump_all([cases.connector_webhook(), _secret("plain-text-secret")]))
    result = CliRunner().invoke(main, ["validate", "-f", str(path)])
    assert result.exit_code != 0
    assert "spec.webhook.signature.secretRef" in result.output
    assert "plain-text-secret" not in result.output


def test_validate_accepts_a_well_formed_secret_and_leaves_external_secrets_unjudged(tmp_path: Path) -> None:
    path = tmp_path / "crm.yaml"
    other = cases.connector_webhook("other")
    other["spec"]["webhook"]["signature"]["secretRef"]["name"] = "elsewhere"
    path.write_text(
        yaml.safe_dump_all([cases.connector_webhook(), other, _secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")])
    )
    assert validate_paths([path], external=("Secret",)) == (2, [])


@pytest.mark.parametrize("value", ["", "whsec_!!"])
def test_local_run_refuses_an_unusable_signing_secret_before_start(tmp_path: Path, value: str) -> None:
    with pytest.raises(LocalRunError, match=r"^Connector/crm: spec\.webhook\.signature\.secretRef \(crm/secret\): "):
        LocalRun.from_documents(
            [cases.connector_webhook(), _secret(value)], namespace="t", nats_url="nats://127.0.0.1:1", workdir=tmp_path
        )


def test_local_run_without_the_secret_manifest_says_so_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "crm.yaml"
    path.write_text(yaml.safe_dump(cases.connector_webhook()))
    result = CliRunner().invoke(main, ["local", "run", "-f", str(path), "--nats", "nats://127.0.0.1:1"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "names Secret 'crm', which none of the given manifests defines" in lines[0]
