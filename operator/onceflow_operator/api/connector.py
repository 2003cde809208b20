"""The Connector kind: how Onceflow reaches one external system.

A Connector is either outbound REST (the ERP, WMS, service desk that runners call) or inbound
webhooks (the CRM, shop or 3PL that post to a gateway). It is a discriminated union on `type`, as
Kubernetes APIs do it, so a reader sees at once which half applies. Credentials are always Secret
references: an object in Git must never carry a secret value.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from onceflow_operator.api._base import (
    DURATION,
    ApiModel,
    Condition,
    SecretKeyRef,
    cel_rules,
    conditions_field,
    forbidden_inline_secret,
)
from onceflow_runner.contract.subjects import DUPLICATE_WINDOW_SECONDS

__all__ = [
    "ApiKeyAuth",
    "BasicAuth",
    "BearerAuth",
    "Connector",
    "ConnectorSpec",
    "ConnectorStatus",
    "ErpNextTokenAuth",
    "OAuth2ClientCredentials",
    "RateLimit",
    "RestAuth",
    "RestConnector",
    "RetryPolicy",
    "Timeouts",
    "WebhookConnector",
    "WebhookEventSource",
    "WebhookSignature",
]

SignatureScheme = Literal["github", "stripe", "shopify", "standard-webhooks", "hmac"]


class BearerAuth(ApiModel):
    """`Authorization: Bearer <token>` with the token read from a Secret."""

    model_config = {"json_schema_extra": forbidden_inline_secret("token", "tokenRef")}

    token_ref: SecretKeyRef = Field(description="Secret key holding the bearer token.")
    token: str | None = Field(
        default=None, description="Never set: refused so that tokens stay in Secrets.", max_length=4096
    )


class BasicAuth(ApiModel):
    """HTTP basic authentication with both parts read from Secrets."""

    model_config = {"json_schema_extra": forbidden_inline_secret("password", "passwordRef")}

    username_ref: SecretKeyRef = Field(description="Secret key holding the user name.")
    password_ref: SecretKeyRef = Field(description="Secret key holding the password.")
    password: str | None = Field(
        default=None, description="Never set: refused so that passwords stay in Secrets.", max_length=4096
    )


class ApiKeyAuth(ApiModel):
    """An API key sent in a header of your choice, e.g. `X-API-Key`."""

    model_config = {"json_schema_extra": forbidden_inline_secret("value", "valueRef")}

    header: str = Field(
        default="X-API-Key",
        description="Header that carries the key.",
        pattern=r"^[A-Za-z0-9-]+$",
        max_length=128,
    )
    value_ref: SecretKeyRef = Field(description="Secret key holding the API key.")
    value: str | None = Field(
        default=None, description="Never set: refused so that keys stay in Secrets.", max_length=4096
    )


class ErpNextTokenAuth(ApiModel):
    """ERPNext / Frappe token auth: `Authorization: token <api_key>:<api_secret>`."""

    model_config = {"json_schema_extra": forbidden_inline_secret("apiSecret", "apiSecretRef")}

    api_key_ref: SecretKeyRef = Field(description="Secret key holding the API key.")
    api_secret_ref: SecretKeyRef = Field(description="Secret key holding the API secret.")
    api_secret: str | None = Field(
        default=None, description="Never set: refused so that secrets stay in Secrets.", max_length=4096
    )


class OAuth2ClientCredentials(ApiModel):
    """OAuth 2.0 client-credentials grant; the token is fetched and refreshed by the runner."""

    model_config = {"json_schema_extra": forbidden_inline_secret("clientSecret", "clientSecretRef")}

    token_url: str = Field(
        alias="tokenURL",
        description="Token endpoint, http(s) URL.",
        pattern=r"^https?://[^\s]+$",
        max_length=2048,
    )
    client_id_ref: SecretKeyRef = Field(description="Secret key holding the client id.")
    client_secret_ref: SecretKeyRef = Field(description="Secret key holding the client secret.")
    scopes: list[Annotated[str, Field(max_length=256)]] = Field(
        default_factory=list,
        description="Scopes to request.",
        max_length=32,
    )
    client_secret: str | None = Field(
        default=None, description="Never set: refused so that secrets stay in Secrets.", max_length=4096
    )


class RestAuth(ApiModel):
    """How to authenticate outbound calls; set `type` and the matching block."""

    model_config = {
        "json_schema_extra": cel_rules(
            (
                "self.type == 'None' || "
                "(self.type == 'Bearer' && has(self.bearer)) || "
                "(self.type == 'Basic' && has(self.basic)) || "
                "(self.type == 'APIKey' && has(self.apiKey)) || "
                "(self.type == 'ERPNextToken' && has(self.erpnextToken)) || "
                "(self.type == 'OAuth2ClientCredentials' && has(self.oauth2))",
                "auth.type names a block that is missing: Bearer needs bearer, Basic needs basic, "
                "APIKey needs apiKey, ERPNextToken needs erpnextToken, "
                "OAuth2ClientCredentials needs oauth2",
            ),
            (
                "[has(self.bearer), has(self.basic), has(self.apiKey), has(self.erpnextToken), "
                "has(self.oauth2)].filter(x, x).size() <= 1",
                "set only the auth block that auth.type names",
            ),
        )
    }

    type: Literal["None", "Bearer", "Basic", "APIKey", "ERPNextToken", "OAuth2ClientCredentials"] = Field(
        default="None", description="Authentication scheme."
    )
    bearer: BearerAuth | None = Field(default=None, description="For type Bearer.")
    basic: BasicAuth | None = Field(default=None, description="For type Basic.")
    api_key: ApiKeyAuth | None = Field(default=None, description="For type APIKey.")
    erpnext_token: ErpNextTokenAuth | None = Field(
        default=None, alias="erpnextToken", description="For type ERPNextToken."
    )
    oauth2: OAuth2ClientCredentials | None = Field(default=None, description="For type OAuth2ClientCredentials.")


class RateLimit(ApiModel):
    """Client-side rate limit shared by all runner replicas of one revision (token bucket each)."""

    requests_per_second: float = Field(
        default=50, description="Sustained requests per second per runner pod.", gt=0, le=100000
    )
    burst: int = Field(default=10, description="Requests allowed at once above the rate.", ge=1, le=10000)


class Timeouts(ApiModel):
    """Timeouts for one outbound call."""

    connect: str = Field(default="5s", description="Time to open a connection.", pattern=DURATION, max_length=32)
    read: str = Field(
        default="30s", description="Time to wait for each read of the answer.", pattern=DURATION, max_length=32
    )
    total: str = Field(
        default="60s",
        description=(
            "Time for one whole call, connection to last byte; beyond it the call is a transient failure "
            "(a target trickling bytes never trips the read timeout)."
        ),
        pattern=DURATION,
        max_length=32,
    )


class RetryPolicy(ApiModel):
    """In-call retries for idempotent requests before a message is handed back to JetStream."""

    attempts: int = Field(default=3, description="Attempts per delivery, including the first.", ge=1, le=10)
    initial_backoff: str = Field(
        default="200ms",
        description="Delay before the second attempt; doubles each time, with jitter.",
        pattern=DURATION,
        max_length=32,
    )
    max_backoff: str = Field(
        default="10s",
        description="Upper bound of the delay between attempts.",
        pattern=DURATION,
        max_length=32,
    )


class RestConnector(ApiModel):
    """An outbound REST endpoint that runners call."""

    model_config = {
        "json_schema_extra": cel_rules(
            (
                "!self.baseURL.matches('^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*@')",
                "rest.baseURL must not carry credentials (user:password@host): a URL is stored in Git and "
                "shown in status and logs; put them in a Secret and reference it from rest.auth",
                ".baseURL",
            ),
        )
    }

    base_url: str = Field(
        alias="baseURL",
        description="Base URL every path is joined to, e.g. https://erp.example.com.",
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        max_length=2048,
    )
    auth: RestAuth = Field(default_factory=RestAuth, description="How to authenticate.")
    rate_limit: RateLimit = Field(default_factory=RateLimit, description="Client-side rate limit.")
    timeouts: Timeouts = Field(default_factory=Timeouts, description="Connect and read timeouts.")
    retry: RetryPolicy = Field(default_factory=RetryPolicy, description="In-call retries.")
    max_response_bytes: int = Field(
        default=10485760,
        description="Longest answer body read; a longer one is dropped unread as a transient failure.",
        ge=1024,
        le=1073741824,
    )
    on_redirect: Literal["Fail", "Retry"] = Field(
        default="Fail",
        description=(
            "What a 3xx answer means. Redirects are never followed (they would carry the Connector's "
            "credentials elsewhere). Fail: the record goes to the exception queue with the Location, "
            "so you can fix baseURL. Retry: a transient failure, for targets that redirect briefly "
            "(maintenance pages, session renewal)."
        ),
    )
    health_path: str = Field(
        default="/",
        description="Path the operator probes with GET to report reachability.",
        pattern=r"^/[^\s]*$",
        max_length=1024,
    )
    probe_interval_seconds: int = Field(default=60, description="Seconds between reachability probes.", ge=10, le=3600)


class WebhookSignature(ApiModel):
    """How a sender signs its webhooks. Checked before anything is stored."""

    model_config = {
        "json_schema_extra": cel_rules(
            (
                "self.scheme != 'hmac' || has(self.header)",
                "signature.header is required for scheme hmac: name the header that carries the signature",
            ),
        )
    }

    scheme: SignatureScheme = Field(
        description=(
            "github (X-Hub-Signature-256), stripe (Stripe-Signature), shopify (X-Shopify-Hmac-Sha256), "
            "standard-webhooks (webhook-id/-timestamp/-signature), or hmac (generic, see header)."
        )
    )
    secret_ref: SecretKeyRef = Field(
        description="Secret key holding the signing secret (for standard-webhooks the whsec_ value)."
    )
    header: str | None = Field(
        default=None,
        description="For hmac: the header carrying the signature.",
        pattern=r"^[A-Za-z0-9-]+$",
        max_length=128,
    )
    algorithm: Literal["sha256", "sha1", "sha512"] = Field(default="sha256", description="For hmac: the HMAC digest.")
    encoding: Literal["hex", "base64"] = Field(default="hex", description="For hmac: how the digest is written.")
    prefix: str = Field(default="", description="For hmac: text before the digest, e.g. `sha256=`.", max_length=32)
    tolerance_seconds: int = Field(
        default=300,
        description="For stripe and standard-webhooks: how old a timestamp may be before it is refused "
        "(at most the streams' 600 s duplicate window, so a replay within it is always stored once).",
        ge=1,
        le=DUPLICATE_WINDOW_SECONDS,
    )


class WebhookEventSource(ApiModel):
    """Where the gateway reads the event name that becomes the last subject token."""

    header: str | None = Field(
        default=None,
        description="Header holding the event name, e.g. X-Shopify-Topic or X-GitHub-Event.",
        pattern=r"^[A-Za-z0-9-]+$",
        max_length=128,
    )
    body_field: str | None = Field(
        default=None,
        description="Top-level JSON field holding the event name, e.g. `type` for Standard Webhooks.",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        max_length=128,
    )
    default: str = Field(
        default="received",
        description="Event name when neither header nor body field is present.",
        pattern=r"^[a-z0-9][a-z0-9_/-]*$",
        max_length=128,
    )


class WebhookConnector(ApiModel):
    """Inbound webhooks, served by a gateway Deployment the operator creates."""

    path: str = Field(
        default="/",
        description="URL path the gateway serves for this connector.",
        pattern=r"^/[A-Za-z0-9/_.-]*$",
        max_length=256,
    )
    signature: WebhookSignature = Field(description="Signature scheme and secret.")
    event: WebhookEventSource = Field(
        default_factory=WebhookEventSource, description="Where the event name comes from."
    )
    max_body_bytes: int = Field(
        default=1048576, description="Larger bodies are refused with 413.", ge=1024, le=16777216
    )
    replicas: int = Field(default=1, description="Gateway pods.", ge=0, le=50)


class ConnectorSpec(ApiModel):
    """Desired state of a Connector."""

    model_config = {
        "json_schema_extra": cel_rules(
            (
                "(self.type == 'REST' && has(self.rest) && !has(self.webhook)) || "
                "(self.type == 'Webhook' && has(self.webhook) && !has(self.rest))",
                "type REST needs a rest block and type Webhook a webhook block (and not the other)",
            ),
        )
    }

    type: Literal["REST", "Webhook"] = Field(description="REST for outbound calls, Webhook for inbound.")
    system: str = Field(
        default="",
        description="What is on the other side, for people and dashboards, e.g. erpnext, shopify.",
        max_length=63,
    )
    rest: RestConnector | None = Field(default=None, description="For type REST.")
    webhook: WebhookConnector | None = Field(default=None, description="For type Webhook.")


class ConnectorStatus(ApiModel):
    """Observed state of a Connector, written only by the operator."""

    observed_generation: int | None = Field(default=None, description="Generation last reconciled.", ge=0)
    conditions: list[Condition] = conditions_field()
    endpoint: str | None = Field(
        default=None, description="Base URL called, or the webhook URL served.", max_length=2048
    )
    last_probe_time: datetime | None = Field(
        default=None,
        description=(
            "When a probe last changed what the status says (reachable or not, HTTP status, reason); "
            "the probes between are counted in metrics only."
        ),
    )
    last_probe_latency_ms: int | None = Field(
        default=None,
        description=(
            "Latency of the probe at lastProbeTime (every probe's latency: metric onceflow_connector_probe_seconds)."
        ),
        ge=0,
    )
    last_http_status: int | None = Field(
        default=None, description="HTTP status of the last probe (a change is written at once).", ge=0
    )


class Connector(ApiModel):
    """How Onceflow reaches one external system (outbound REST or inbound webhooks)."""

    api_version: Literal["onceflow.io/v1alpha1"] = Field(default="onceflow.io/v1alpha1", alias="apiVersion")
    kind: Literal["Connector"] = "Connector"
    metadata: dict[str, object] = Field(default_factory=dict)
    spec: ConnectorSpec
    status: ConnectorStatus | None = None
