"""Settings of one operator process, read from its environment once at start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from onceflow_operator.build.natsauth import namespace_account_key
from onceflow_operator.clients.accounts import AccountSettings
from onceflow_operator.clients.topology import TopologySettings
from onceflow_operator.controller.identity import NATS_SECRET, NamespaceIdentities
from onceflow_operator.controller.tracekeys import TraceKeys

#: The operator's own variables it hands to runner and gateway pods: the standard OpenTelemetry
#: ones (the chart sets OTEL_EXPORTER_OTLP_ENDPOINT from `tracing.otlpEndpoint`) and whether spans
#: hash business keys. The operator itself exports no spans.
TRACING_PREFIX = "OTEL_"
TRACE_HASH_KEYS_ENV = "ONCEFLOW_TRACE_HASH_KEYS"
#: Never handed on: headers (every signal's, `OTEL_EXPORTER_OTLP_*HEADERS`) often carry a hosted
#: backend's API key, which would then be readable in every runner and gateway Deployment. A
#: collector in the cluster holds such keys instead.
CREDENTIAL_SUFFIX = "HEADERS"

__all__ = ["OperatorConfig", "tracing_env_of"]


@dataclass(frozen=True)
class OperatorConfig:
    """What the operator stamps into the pods it creates."""

    image: str = "ghcr.io/onceflow/onceflow:0.1.0"
    nats_url: str = "nats://nats.nats.svc:4222"
    #: A Secret (keys user + password, or token) that every runner, gateway and job reads from its
    #: own namespace for NATS credentials; empty when NATS needs none.
    nats_auth_secret: str = ""
    #: Environment variables set on runner and gateway pods so they export spans (sorted by name).
    tracing_env: tuple[tuple[str, str], ...] = ()
    #: The JetStream topology the operator creates and keeps (streams, buckets): `ONCEFLOW_STREAM_*`.
    topology: TopologySettings = field(default_factory=TopologySettings)
    #: Issues each namespace's NATS user (`onceflow-nats` Secret) when the account signing key is set;
    #: then the pods read that Secret and `nats_auth_secret` is ignored.
    identities: NamespaceIdentities | None = None
    #: Account isolation (`ONCEFLOW_NATS_ISOLATION=account`): an account per namespace; None in user mode.
    accounts: AccountSettings | None = None
    #: Writes each namespace's secret key for hashing business keys in spans, when spans hash
    #: them and `ONCEFLOW_TRACE_HASH_MASTER_KEY` is set; runners then read it.
    trace_keys: TraceKeys | None = None

    @classmethod
    def from_environment(cls) -> OperatorConfig:
        accounts = AccountSettings.from_environment()
        if accounts is not None:  # each namespace's users are signed by its own account's key
            signing = accounts.signing
            identities: NamespaceIdentities | None = NamespaceIdentities(
                signing, "", accounts=lambda namespace: namespace_account_key(signing, namespace)
            )
        else:
            identities = NamespaceIdentities.from_environment()
        tracing_env = tracing_env_of(os.environ)
        return cls(
            image=os.environ.get("ONCEFLOW_IMAGE", cls.image),
            nats_url=os.environ.get("ONCEFLOW_NATS_URL", cls.nats_url),
            nats_auth_secret=NATS_SECRET if identities else os.environ.get("ONCEFLOW_NATS_AUTH_SECRET", ""),
            topology=TopologySettings.from_environment(),
            identities=identities,
            accounts=accounts,
            tracing_env=tracing_env,
            trace_keys=TraceKeys.from_environment() if _hashes_keys(os.environ) else None,
        )


def tracing_env_of(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The `OTEL_*` variables (and ONCEFLOW_TRACE_HASH_KEYS) of `env` that are set, sorted by name.

    Headers are left out, and a user or password in an endpoint URL is cut from it: a pod's plain
    environment is no place for a key.
    """
    return tuple(
        sorted(
            (k, _without_userinfo(v) if k.endswith("_ENDPOINT") else v)
            for k, v in env.items()
            if v and (k.startswith(TRACING_PREFIX) or k == TRACE_HASH_KEYS_ENV) and not k.endswith(CREDENTIAL_SUFFIX)
        )
    )


def _hashes_keys(env: Mapping[str, str]) -> bool:
    """Whether the runners will hash business keys (they read the variable the same way)."""
    return env.get(TRACE_HASH_KEYS_ENV, "").strip().lower() in {"1", "true", "yes"}


def _without_userinfo(url: str) -> str:
    """`scheme://user:password@host/path` as `scheme://host/path`; anything else as it is."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
