"""A webhook request signed the way one Webhook Connector's sender signs it (pure).

`onceflow send` puts a record through a gateway as a CRM, a shop or a 3PL would. To be sure the
CLI signs exactly as the gateway verifies, the Connector is compiled into the same gateway plan
the operator writes (`planner.gateway_plan`), the signature settings are read from that plan as
the gateway reads them, and the headers come from the gateway package's own `sign`. Nothing about
a scheme is restated here; what is here is what a person sending by hand can get wrong (a REST
Connector, a missing Secret key, an unusable secret, an event the Connector cannot take), each
answered in one line that names the field.

The secret's value never appears in a message.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from onceflow_operator.api import Connector
from onceflow_operator.api.connector import WebhookConnector
from onceflow_operator.compiler.planner import gateway_plan
from onceflow_runner.contract.plan import GatewayPlan
from onceflow_runner.contract.signing import SECRET_FIELD, signing_secret_problem
from onceflow_runner.gateway.signatures import SignatureConfig, SignatureError, sign

__all__ = [
    "SignedWebhook",
    "WebhookRequestError",
    "connector_from_manifest",
    "secret_values",
    "signed_webhook",
    "signing_secret",
]


class WebhookRequestError(ValueError):
    """The request cannot be signed as the Connector says; the message names the field and what to do."""


@dataclass(frozen=True)
class SignedWebhook:
    """What to POST: the gateway's path for the Connector and the headers its sender adds."""

    plan: GatewayPlan
    headers: dict[str, str]

    @property
    def path(self) -> str:
        return self.plan.path


def connector_from_manifest(doc: Mapping[str, Any]) -> Connector:
    """The Connector model of a manifest (or of an object read from the API server)."""
    name = (doc.get("metadata") or {}).get("name", "?")
    try:
        # Only what the sender needs: the status an API server adds is the operator's business.
        return Connector.model_validate({k: v for k, v in doc.items() if k != "status"})
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in error["loc"])
        raise WebhookRequestError(f"Connector/{name}: {where}: {error['msg']}") from None


def secret_values(doc: Mapping[str, Any]) -> dict[str, str]:
    """A Secret's values as text: `data` (base64, as the API server returns it) and `stringData`."""
    name = (doc.get("metadata") or {}).get("name", "?")
    try:
        values = {
            str(k): base64.b64decode(str(v), validate=True).decode("utf-8", "surrogateescape")
            for k, v in (doc.get("data") or {}).items()
        }
    except binascii.Error:
        raise WebhookRequestError(
            f"Secret/{name}: a value under data is not base64 (use stringData for plain text)"
        ) from None
    return values | {str(k): str(v) for k, v in (doc.get("stringData") or {}).items()}


def _webhook(connector: Connector) -> WebhookConnector:
    """The Connector's webhook block; a REST Connector has no gateway to send to."""
    if connector.spec.type != "Webhook" or connector.spec.webhook is None:
        raise WebhookRequestError(
            f"Connector/{connector.metadata.get('name')}: spec.type is {connector.spec.type}, not Webhook: "
            "it has no gateway to send to"
        )
    return connector.spec.webhook


def signing_secret(connector: Connector, secrets: Mapping[str, Mapping[str, Any]], *, where: str) -> str:
    """The signing key the Connector names, from `secrets` (Secret name -> manifest or API object).

    `where` says where the Secrets were looked for (e.g. "namespace demo"), for the message when
    the Secret is not among them.
    """
    name = connector.metadata.get("name")
    ref = _webhook(connector).signature.secret_ref
    if ref.name not in secrets:
        raise WebhookRequestError(
            f"Connector/{name}: {SECRET_FIELD} names Secret {ref.name!r}, which is not in {where}"
        )
    value = secret_values(secrets[ref.name]).get(ref.key)
    if value is None:
        raise WebhookRequestError(f"Connector/{name}: Secret {ref.name!r} has no key {ref.key!r} ({SECRET_FIELD})")
    return value


def _event_headers(plan: GatewayPlan, event: str | None, body: bytes) -> dict[str, str]:
    """The header that names the event, when the Connector reads it from one; refuse what cannot work."""
    if event is None:
        return {}
    if plan.event_header:
        return {plan.event_header: event}
    where = (
        f"the body's field {plan.event_body_field!r}"
        if plan.event_body_field
        else f"nowhere: every request is event {plan.event_default!r}"
    )
    if plan.event_body_field:
        try:
            document = json.loads(body)
        except ValueError:
            document = None
        if isinstance(document, dict) and document.get(plan.event_body_field) == event:
            return {}
    raise WebhookRequestError(
        f"Connector/{plan.connector}: spec.webhook.event reads the event from {where}; "
        f"--event {event!r} cannot be sent (drop --event{', put it in the body' if plan.event_body_field else ''})"
    )


def signed_webhook(
    connector: Connector,
    secret: str,
    body: bytes,
    *,
    namespace: str,
    delivery_id: str,
    now: int,
    event: str | None = None,
) -> SignedWebhook:
    """Headers that make `body` pass the Connector's gateway, as its sender would sign it at `now`."""
    name = str(connector.metadata.get("name"))
    _webhook(connector)
    plan = gateway_plan(connector, namespace=namespace)
    sig = plan.signature
    problem = signing_secret_problem(sig.scheme, secret)
    if problem is not None:
        raise WebhookRequestError(f"Connector/{name}: {SECRET_FIELD} ({sig.secret.name}/{sig.secret.key}): {problem}")
    # The gateway builds the same SignatureConfig from the same plan (gateway/server.py).
    config = SignatureConfig(sig.scheme, sig.header, sig.algorithm, sig.encoding, sig.prefix, sig.tolerance_seconds)
    try:
        headers = sign(config, secret.strip(), body, delivery_id=delivery_id, timestamp=now)
    except SignatureError as exc:
        raise WebhookRequestError(f"Connector/{name}: spec.webhook.signature.scheme: {exc}") from None
    return SignedWebhook(plan, headers | _event_headers(plan, event, body))
