"""Each namespace's secret key for hashing business keys in spans (docs/observability.md).

Why keyed: a plain SHA-256 of a business key hides it from someone reading traces, not from
someone who tries every value (every German VAT id takes minutes). An HMAC under a key nobody
outside the cluster has cannot be reversed that way. Why one key per namespace, derived from the
operator's: a tenant reads its own key (its runners need it), and must not be able to compute,
and so recognise, another tenant's hashes; the derivation needs no storage and gives the same
key after an operator restart or failover.

The key is written as the Secret `onceflow-trace` (key `hash-key`) into each namespace with
Integrations, before its runners start, and only when it differs from what is there, so a resync
writes nothing. What is there is read on every reconcile, not remembered: a Secret someone deleted
or emptied is written again within a reconcile interval (runner pods wait for it meanwhile; they
never fall back to the reversible unkeyed hash).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from onceflow_operator.api.names import GROUP, PART_OF_LABELS
from onceflow_operator.clients.kube import KubeClient
from onceflow_runner.contract.environment import TRACE_HASH_KEY_SECRET, TRACE_HASH_KEY_SECRET_KEY

__all__ = [
    "MASTER_KEY_ENV",
    "TraceKeyError",
    "TraceKeys",
    "namespace_hash_key",
]

#: The operator's variable holding the secret every namespace's key is derived from.
MASTER_KEY_ENV = "ONCEFLOW_TRACE_HASH_MASTER_KEY"
KEY_ANNOTATION = f"{GROUP}/hash-key-digest"
#: Shorter secrets are guessable; 32 characters of `openssl rand -hex 16` is the least.
MIN_MASTER_KEY_LENGTH = 32


class TraceKeyError(ValueError):
    """The master key setting cannot be used; the message names the variable and what to do."""


def namespace_hash_key(master: bytes, namespace: str) -> str:
    """The namespace's hash key: HMAC-SHA256 of its name under the master key, as hex."""
    return hmac.new(master, b"onceflow/trace-hash-key/" + namespace.encode(), hashlib.sha256).hexdigest()


@dataclass
class TraceKeys:
    """Writes each namespace's `onceflow-trace` Secret from the master key."""

    master: bytes
    #: How long a namespace's Secret, once read or written, is taken as it was (seconds).
    recheck_seconds: float = 30.0
    #: namespace -> when its Secret was last read or written as it should be (monotonic).
    checked: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> TraceKeys | None:
        """From `ONCEFLOW_TRACE_HASH_MASTER_KEY`; None when it is unset (spans then use plain SHA-256)."""
        env = os.environ if env is None else env
        master = env.get(MASTER_KEY_ENV, "").strip()
        if not master:
            return None
        if len(master) < MIN_MASTER_KEY_LENGTH:
            raise TraceKeyError(
                f"{MASTER_KEY_ENV} has {len(master)} characters; use at least {MIN_MASTER_KEY_LENGTH} "
                "(e.g. the output of `openssl rand -hex 32`)"
            )
        return cls(master.encode())

    async def ensure(self, kube: KubeClient, namespace: str) -> int:
        """Write the namespace's Secret where it is missing or holds another key; returns how many were written.

        Read at most once per `recheck_seconds` per namespace (every Integration reconcile passes
        here; a thousand Integrations must not mean a thousand Secret reads a resync), so a
        deleted or emptied Secret is written again within that time.
        """
        now = time.monotonic()
        if now - self.checked.get(namespace, -math.inf) < self.recheck_seconds:
            return 0
        key = namespace_hash_key(self.master, namespace)
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        encoded = base64.b64encode(key.encode()).decode()
        current = await kube.get("v1", "Secret", namespace, TRACE_HASH_KEY_SECRET) or {}
        annotations = (current.get("metadata") or {}).get("annotations") or {}
        if (current.get("data") or {}).get(TRACE_HASH_KEY_SECRET_KEY) == encoded and (
            annotations.get(KEY_ANNOTATION) == digest
        ):
            self.checked[namespace] = now
            return 0
        await kube.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": TRACE_HASH_KEY_SECRET,
                    "namespace": namespace,
                    "labels": dict(PART_OF_LABELS),
                    "annotations": {KEY_ANNOTATION: digest},
                },
                "type": "Opaque",
                "data": {TRACE_HASH_KEY_SECRET_KEY: encoded},
            }
        )
        self.checked[namespace] = now
        return 1
