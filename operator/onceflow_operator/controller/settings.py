"""Settings of one operator process, read from its environment once at start."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from onceflow_operator.clients.topology import TopologySettings
from onceflow_operator.controller.identity import NATS_SECRET, NamespaceIdentities

__all__ = ["OperatorConfig"]


@dataclass(frozen=True)
class OperatorConfig:
    """What the operator stamps into the pods it creates."""

    image: str = "ghcr.io/onceflow/onceflow:0.1.0"
    nats_url: str = "nats://nats.nats.svc:4222"
    #: A Secret (keys user + password, or token) that every runner, gateway and job reads from its
    #: own namespace for NATS credentials; empty when NATS needs none.
    nats_auth_secret: str = ""
    #: The JetStream topology the operator creates and keeps (streams, buckets): `ONCEFLOW_STREAM_*`.
    topology: TopologySettings = field(default_factory=TopologySettings)
    #: Issues each namespace's NATS user (`onceflow-nats` Secret) when the account signing key is set;
    #: then the pods read that Secret and `nats_auth_secret` is ignored.
    identities: NamespaceIdentities | None = None

    @classmethod
    def from_environment(cls) -> OperatorConfig:
        identities = NamespaceIdentities.from_environment()
        return cls(
            image=os.environ.get("ONCEFLOW_IMAGE", cls.image),
            nats_url=os.environ.get("ONCEFLOW_NATS_URL", cls.nats_url),
            nats_auth_secret=NATS_SECRET if identities else os.environ.get("ONCEFLOW_NATS_AUTH_SECRET", ""),
            topology=TopologySettings.from_environment(),
            identities=identities,
        )
