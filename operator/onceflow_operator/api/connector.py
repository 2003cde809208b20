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
    IDENTIFIER,
    ApiModel,
    Condition,
    SecretKeyRef,
    cel_rules,
    conditions_field,
    forbidden_inline_secret,
)
from onceflow_operator.api.edi import EdiConnector
from onceflow_operator.api.types import Cel, StaticHeaders
from onceflow_runner.contract.subjects import DUPLICATE_WINDOW_SECONDS

__all__ = [
    "ApiKeyAuth",
    "BasicAuth",
    "BearerAuth",
    "Connector",
    "ConnectorSpec",
    "ConnectorStatus",
    "ErpNextTokenAuth",
    "OAuth2ClientAssertion",
    "OAuth2ClientCredentials",
    "RateLimit",
    "RestAuth",
    "RestConnector",
    "RetryPolicy",
    "SessionLoginAuth",
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


class OAuth2ClientAssertion(ApiModel):
    """A signed JWT that proves the client instead of a secret (RFC 7523, `private_key_jwt`).

    For token endpoints that take no client secret in the client-credentials grant, such as
    NetSuite's OAuth 2.0 machine-to-machine flow: the runner signs a short-lived JWT (issuer the
    client id, audience the token URL, `scope` claim the scopes, header `kid` the key id) with the
    private key from a Secret and sends it as `client_assertion`.
    """

    private_key_ref: SecretKeyRef = Field(description="Secret key holding the PEM private key (RSA, or EC P-256).")
    key_id: str = Field(
        description="Sent as the JWT header kid: the id the token endpoint knows the public key by "
        "(NetSuite: the certificate ID of the client-credentials mapping).",
        min_length=1,
        max_length=256,
    )
    algorithm: Literal["PS256", "RS256", "ES256"] = Field(
        default="PS256", description="JWT signature algorithm; NetSuite accepts PS256 (and ES256 with an EC key)."
    )


class OAuth2ClientCredentials(ApiModel):
    """OAuth 2.0 client-credentials grant; the token is fetched and refreshed by the runner.

    The client proves itself with a secret (HTTP basic auth at the token endpoint) or, with
    `clientAssertion`, with a JWT signed by its private key.
    """

    model_config = {
        "json_schema_extra": cel_rules(
            (
                "!has(self.clientSecret)",
                "inline secret values are not accepted in clientSecret; store it in a Secret and "
                "reference it with clientSecretRef (name and key)",
                ".clientSecret",
            ),
            (
                "has(self.clientSecretRef) != has(self.clientAssertion)",
                "oauth2 needs exactly one of clientSecretRef (a client secret) or clientAssertion "
                "(a signed JWT, e.g. NetSuite machine-to-machine)",
            ),
        )
    }

    token_url: str = Field(
        alias="tokenURL",
        description="Token endpoint, http(s) URL.",
        pattern=r"^https?://[^\s]+$",
        max_length=2048,
    )
    client_id_ref: SecretKeyRef = Field(description="Secret key holding the client id.")
    client_secret_ref: SecretKeyRef | None = Field(
        default=None, description="Secret key holding the client secret (or set clientAssertion)."
    )
    client_assertion: OAuth2ClientAssertion | None = Field(
        default=None, description="Prove the client with a JWT signed by its private key instead of a secret."
    )
    scopes: list[Annotated[str, Field(max_length=256)]] = Field(
        default_factory=list,
        description="Scopes to request.",
        max_length=32,
    )
    client_secret: str | None = Field(
        default=None, description="Never set: refused so that secrets stay in Secrets.", max_length=4096
    )


class SessionLoginAuth(ApiModel):
    """Log in with a request, keep the session it returns, send it on every call.

    For systems whose API is reached through a login call rather than a static key: SAP Business
    One Service Layer (`POST /b1s/v1/Login` answers `SessionId` and the `B1SESSION` cookie,
    `SessionTimeout` in minutes), Odoo (`POST /web/session/authenticate`, `session_id` cookie),
    Frappe/ERPNext (`POST /api/method/login`, `sid` cookie). The runner logs in once per process
    before the first call, shares the session between its concurrent calls, logs in again before
    the session expires when the system says when (`expiresIn`) and once when an answer says the
    session is gone (401, 403 or `expiredWhen`). The session and the Secret values are never logged.
    """

    model_config = {
        "json_schema_extra": cel_rules(
            (
                "self.secrets.all(k, k.matches('^[a-z][a-zA-Z0-9_]*$'))",
                "sessionLogin.secrets names are CEL identifiers (e.g. user, password, companyDB): "
                "body and headerValue read them as secrets.<name>",
            ),
            (
                "self.sendAs != 'Header' || has(self.header)",
                "sessionLogin.sendAs Header needs sessionLogin.header: name the header that carries the session",
            ),
            (
                "self.sendAs != 'Header' || has(self.session) || has(self.headerValue)",
                "sessionLogin.sendAs Header needs sessionLogin.session (CEL picking the session from the login "
                "answer) or sessionLogin.headerValue",
            ),
        )
    }

    method: Literal["POST", "PUT", "GET"] = Field(default="POST", description="HTTP method of the login request.")
    path: str = Field(
        description="Login path under the Connector's baseURL, e.g. /b1s/v1/Login or /web/session/authenticate.",
        pattern=r"^/[^\s?#]*$",
        max_length=1024,
    )
    secrets: dict[Annotated[str, Field(pattern=IDENTIFIER, max_length=63)], SecretKeyRef] = Field(
        description="Name -> Secret key; the values are `secrets.<name>` in body and headerValue, never logged.",
        min_length=1,
        max_length=8,
    )
    body: Cel | None = Field(
        default=None,
        description=(
            "CEL over `secrets` giving the JSON login body, e.g. "
            "{'CompanyDB': secrets.company, 'UserName': secrets.user, 'Password': secrets.password}."
        ),
    )
    session: Cel | None = Field(
        default=None,
        description=(
            "CEL picking the session from the login answer: `response` (its JSON body), `cookies` (cookies it "
            "set, by name), `headers` (lowercase names), e.g. response.SessionId or cookies.sid. Empty: the "
            "cookies the login set are the session."
        ),
    )
    expires_in: Cel | None = Field(
        default=None,
        description=(
            "CEL giving the session's lifetime in seconds from the login answer, e.g. "
            "response.SessionTimeout * 60 for SAP Business One. Empty: lifetime (or until refused)."
        ),
    )
    lifetime: str | None = Field(
        default=None,
        description="Lifetime to assume when expiresIn is empty, e.g. 25m; empty: until the system refuses it.",
        pattern=DURATION,
        max_length=32,
    )
    refresh_before: str = Field(
        default="30s",
        description="Log in again this long before the session is due to expire.",
        pattern=DURATION,
        max_length=32,
    )
    send_as: Literal["Cookies", "Header"] = Field(
        default="Cookies",
        description=(
            "Cookies: every call carries the cookies the login set (SAP B1SESSION and ROUTEID, Odoo session_id, "
            "Frappe sid). Header: every call carries `header` with headerValue."
        ),
    )
    header: str | None = Field(
        default=None,
        description="For sendAs Header: the header, e.g. Authorization or X-Session-Id.",
        pattern=r"^[A-Za-z0-9-]+$",
        max_length=128,
    )
    header_value: Cel | None = Field(
        default=None,
        description=(
            "For sendAs Header: CEL over `session` and `secrets` giving the header's value, e.g. "
            "'Session ' + base64.encode(secrets.login + ':' + session). Empty: the session itself."
        ),
    )
    expired_when: Cel | None = Field(
        default=None,
        description=(
            "CEL over `status`, `response` and `headers` of any answer: true when it says the session is gone "
            "although it is not a 401 or 403, e.g. Odoo's HTTP 200 JSON-RPC error "
            "response.error.data.name == 'odoo.http.SessionExpiredException'."
        ),
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
                "(self.type == 'OAuth2ClientCredentials' && has(self.oauth2)) || "
                "(self.type == 'SessionLogin' && has(self.sessionLogin))",
                "auth.type names a block that is missing: Bearer needs bearer, Basic needs basic, "
                "APIKey needs apiKey, ERPNextToken needs erpnextToken, "
                "OAuth2ClientCredentials needs oauth2, SessionLogin needs sessionLogin",
            ),
            (
                "[has(self.bearer), has(self.basic), has(self.apiKey), has(self.erpnextToken), "
                "has(self.oauth2), has(self.sessionLogin)].filter(x, x).size() <= 1",
                "set only the auth block that auth.type names",
            ),
        )
    }

    type: Literal["None", "Bearer", "Basic", "APIKey", "ERPNextToken", "OAuth2ClientCredentials", "SessionLogin"] = (
        Field(default="None", description="Authentication scheme.")
    )
    bearer: BearerAuth | None = Field(default=None, description="For type Bearer.")
    basic: BasicAuth | None = Field(default=None, description="For type Basic.")
    api_key: ApiKeyAuth | None = Field(default=None, description="For type APIKey.")
    erpnext_token: ErpNextTokenAuth | None = Field(
        default=None, alias="erpnextToken", description="For type ERPNextToken."
    )
    oauth2: OAuth2ClientCredentials | None = Field(default=None, description="For type OAuth2ClientCredentials.")
    session_login: SessionLoginAuth | None = Field(
        default=None, alias="sessionLogin", description="For type SessionLogin."
    )


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
    headers: StaticHeaders = Field(
        default_factory=dict,
        description=(
            "Headers sent on every call, e.g. Accept, a tenant or company header (BC's company, NetSuite's "
            "Prefer). Credentials belong in auth; connection headers are the client's."
        ),
    )
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
    max_backlog: int = Field(
        default=100000,
        description="Records accepted but not yet settled by the slowest Integration reading this Connector "
        "(its consumer lag, as its runners report it) at which the gateway answers 429 with Retry-After "
        "instead of storing more; senders retry later. 0: no limit.",
        ge=0,
        le=100000000,
    )
    max_pending_publishes: int = Field(
        default=1024,
        description="Webhooks one gateway pod may have waiting for JetStream's acknowledgement at once; "
        "more are answered 503 with Retry-After.",
        ge=1,
        le=65536,
    )
    replicas: int = Field(default=1, description="Gateway pods.", ge=0, le=50)
    processes_per_pod: int = Field(
        default=1,
        description="Gateway processes in each pod, serving the webhook port together (SO_REUSEPORT); one "
        "process uses about one core at its peak. Give the pod that many cores.",
        ge=1,
        le=16,
    )


class ConnectorSpec(ApiModel):
    """Desired state of a Connector."""

    model_config = {
        "json_schema_extra": cel_rules(
            (
                "(self.type == 'REST' && has(self.rest) && !has(self.webhook) && !has(self.edi)) || "
                "(self.type == 'Webhook' && has(self.webhook) && !has(self.rest) && !has(self.edi)) || "
                "(self.type == 'EDI' && has(self.edi) && !has(self.rest) && !has(self.webhook))",
                "type REST needs a rest block, type Webhook a webhook block and type EDI an edi block (and no other)",
            ),
        )
    }

    type: Literal["REST", "Webhook", "EDI"] = Field(
        description="REST for outbound calls, Webhook for inbound, EDI for a trading partner over SFTP."
    )
    system: str = Field(
        default="",
        description="What is on the other side, for people and dashboards, e.g. erpnext, shopify.",
        max_length=63,
    )
    rest: RestConnector | None = Field(default=None, description="For type REST.")
    webhook: WebhookConnector | None = Field(default=None, description="For type Webhook.")
    edi: EdiConnector | None = Field(default=None, description="For type EDI (docs/edi.md).")


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
