"""NATS identities the operator issues: one user per namespace, and one per Integration's runners.

In account mode (`clients/accounts.py`) each namespace's users belong to its own account and are
signed by that account's key; in user mode by the shared application account's signing key.

Why two: a namespace's gateways, EDI pollers and drift checks need its subjects and KV buckets
but no consumer; an Integration's runners need, on top of that, their own consumers. NATS
permissions match whole subject tokens, so "every consumer of this namespace" cannot be written
without listing each one, and a user listing every Integration's consumers would grow with the
namespace (a JWT is sent in every CONNECT). So the namespace's Secret `onceflow-nats` carries the
user without consumers, and `onceflow-nats-<integration>` (owned by the Integration, so it goes
with it) the user with that Integration's consumers only: a compromised runner reaches no other
Integration's queue either.

Every reconcile passes here first, so a Secret exists before the pods that read it. A Secret is
written only when the permissions it would carry differ from the ones it carries (an annotation
holds their digest), so a resync writes nothing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from onceflow_operator.api.names import GROUP, PART_OF_LABELS
from onceflow_operator.build.natsauth import Key, creds, namespace_permissions, user_jwt
from onceflow_operator.clients.kube import KubeClient
from onceflow_runner.contract import subjects
from onceflow_runner.contract.edi import EdiPartnerPlan
from onceflow_runner.contract.environment import NATS_CREDS_KEY

__all__ = ["NATS_SECRET", "PERMISSIONS_ANNOTATION", "IdentityError", "NamespaceIdentities", "integration_secret"]

#: The Secret of a namespace's NATS user (key `user.creds`): gateways, EDI pollers, drift checks.
NATS_SECRET = "onceflow-nats"
PERMISSIONS_ANNOTATION = f"{GROUP}/nats-permissions"


def integration_secret(integration: str) -> str:
    """The Secret of an Integration's runners' NATS user."""
    return f"{NATS_SECRET}-{integration}"


def edi_secret(connector: str) -> str:
    """The Secret of a sending EDI partner's pods' NATS user (the namespace's, plus its outbound consumer)."""
    return f"{NATS_SECRET}-edi-{connector}"


class IdentityError(ValueError):
    """The account signing key setting cannot be used; the message names the variable."""


@dataclass
class NamespaceIdentities:
    """Issues and keeps the `.creds` Secrets, signed by the application account's signing key."""

    signing: Key
    account: str
    #: Account mode: the namespace -> its account's key (which then signs its users); None in user mode.
    accounts: Callable[[str], Key] | None = None
    #: (namespace, Secret name) -> digest of the permissions that Secret carries.
    issued: dict[tuple[str, str], str] = field(default_factory=dict)

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> NamespaceIdentities | None:
        """From `ONCEFLOW_NATS_ACCOUNT_SIGNING_KEY` (seed) and `ONCEFLOW_NATS_ACCOUNT`; None when unset."""
        env = os.environ if env is None else env
        seed = env.get("ONCEFLOW_NATS_ACCOUNT_SIGNING_KEY", "").strip()
        if not seed:
            return None
        try:
            signing = Key.of(seed)
        except ValueError as exc:
            raise IdentityError(f"ONCEFLOW_NATS_ACCOUNT_SIGNING_KEY: {exc}") from None
        if not signing.seed.startswith("SA"):
            raise IdentityError("ONCEFLOW_NATS_ACCOUNT_SIGNING_KEY must be an account seed (it starts with SA)")
        account = env.get("ONCEFLOW_NATS_ACCOUNT", "").strip() or signing.public
        if not (account.startswith("A") and len(account) == 56):
            raise IdentityError(f"ONCEFLOW_NATS_ACCOUNT={account!r} is not an account public key (A..., 56 characters)")
        return cls(signing, account)

    async def ensure(
        self,
        kube: KubeClient,
        namespace: str,
        integration: Mapping[str, Any] | None = None,
        *,
        edi: EdiPartnerPlan | None = None,
    ) -> int:
        """Write the namespace's Secret, and the Integration's (given its body) or the sending EDI partner's.

        Each only where missing or changed; returns how many Secrets were written.
        """
        written = await self._ensure(kube, namespace, NATS_SECRET, [], None)
        if integration is not None:
            meta = integration["metadata"]
            owner = {
                "apiVersion": integration.get("apiVersion", f"{GROUP}/v1alpha1"),
                "kind": integration.get("kind", "Integration"),
                "name": meta["name"],
                "uid": meta["uid"],
            }
            written += await self._ensure(kube, namespace, integration_secret(meta["name"]), [meta["name"]], owner)
        if edi is not None:
            consumer = [subjects.edi_outbound_consumer(namespace, edi.connector)]
            written += await self._ensure(kube, namespace, edi_secret(edi.connector), [], None, consumers=consumer)
        return written

    async def _ensure(
        self,
        kube: KubeClient,
        namespace: str,
        name: str,
        integrations: list[str],
        owner: dict[str, Any] | None,
        *,
        consumers: list[str] | None = None,
    ) -> int:
        permissions = namespace_permissions(namespace, integrations, consumers or [])
        # Account mode: the namespace's own account signs (the same permissions still hold inside it).
        signer = self.accounts(namespace) if self.accounts is not None else self.signing
        account = signer.public if self.accounts is not None else self.account
        # The signer and account too: after a new signing key (or account) every Secret is issued
        # again; with permissions alone, old users the servers no longer accept would stay.
        signed = {"permissions": permissions, "signer": signer.public, "account": account}
        digest = hashlib.sha256(json.dumps(signed, sort_keys=True).encode()).hexdigest()[:32]
        key = (namespace, name)
        if key not in self.issued:
            current = await kube.get("v1", "Secret", namespace, name)
            annotations = ((current or {}).get("metadata") or {}).get("annotations") or {}
            self.issued[key] = str(annotations.get(PERMISSIONS_ANNOTATION, ""))
        if self.issued[key] == digest:
            return 0
        user = Key.new("user")
        token = user_jwt(signer, account, user.public, f"{namespace}/{name}", permissions)
        metadata: dict[str, Any] = {
            "name": name,
            "namespace": namespace,
            "labels": dict(PART_OF_LABELS),
            "annotations": {PERMISSIONS_ANNOTATION: digest},
        }
        if owner is not None:
            metadata["ownerReferences"] = [owner]
        await kube.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": metadata,
                "type": "Opaque",
                "data": {NATS_CREDS_KEY: base64.b64encode(creds(token, user.seed).encode()).decode()},
            }
        )
        self.issued[key] = digest
        return 1
