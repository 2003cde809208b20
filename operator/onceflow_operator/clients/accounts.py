"""Which NATS connection the operator uses for a namespace: the shared one, or one into its account.

Two isolation modes (operator setting `ONCEFLOW_NATS_ISOLATION`, chart value `nats.isolation`):

- `user`: one application account holds the shared streams; each namespace has a user with
  subject permissions (`controller/identity.py`). The operator uses one connection for all.
- `account`: each namespace has an account of its own (docs/install.md, "Account per namespace"),
  holding its own copy of the Onceflow streams and buckets under the same names, so pods change
  nothing but their `.creds`. NATS never checks a reply subject, and JetStream answers into
  whatever reply subject a request names *inside the account*: with an account per namespace
  there is nothing of another namespace in reach to answer into, and no stream to read
  another namespace's subjects from.

In account mode the operator signs each namespace's account JWT with the operator signing key,
pushes it to the servers as a system account user (`$SYS.REQ.CLAIMS.UPDATE`, which a full
resolver stores and shares across the cluster), and mints itself an admin user of that account.
`NatsLinks` routes every operator-side NATS use of a namespace (topology, lanes, split markers,
heartbeats, stored-record lookups, drift results, exceptions) to that namespace's connection,
made on first use and closed with `forget`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from nats.aio.client import Client
from nats.js import JetStreamContext

from onceflow_operator.build.natsauth import (
    CLAIMS_LOOKUP,
    CLAIMS_UPDATE,
    AccountLimits,
    Key,
    account_jwt,
    creds,
    decode_jwt,
    namespace_account_key,
    user_jwt,
)
from onceflow_operator.clients.jetstream import JetStreamLink, LaneState
from onceflow_operator.clients.topology import TopologySettings
from onceflow_runner.adapters import natsio
from onceflow_runner.contract import subjects
from onceflow_runner.contract.edi import EdiPartnerPlan
from onceflow_runner.contract.messages import DriftResult
from onceflow_runner.contract.plan import Plan
from onceflow_runner.contract.split import Lane

__all__ = [
    "AccountError",
    "AccountSettings",
    "Accounts",
    "Isolation",
    "NatsLinks",
    "namespace_user_creds",
    "operator_signing_from_environment",
]

Isolation = Literal["user", "account"]
ISOLATION_ENV = "ONCEFLOW_NATS_ISOLATION"
#: Chart value -> variable of each account's JetStream limit (-1 or unset: no limit).
LIMIT_ENV = {
    "disk_storage": "ONCEFLOW_NATS_ACCOUNT_MAX_DISK",
    "mem_storage": "ONCEFLOW_NATS_ACCOUNT_MAX_MEMORY",
    "streams": "ONCEFLOW_NATS_ACCOUNT_MAX_STREAMS",
    "consumer": "ONCEFLOW_NATS_ACCOUNT_MAX_CONSUMERS",
    "conn": "ONCEFLOW_NATS_ACCOUNT_MAX_CONNECTIONS",
}


class AccountError(ValueError):
    """An account-mode setting that cannot be used, or a push the servers refused; names what to do."""


@dataclass(frozen=True)
class AccountSettings:
    """What account mode needs: the operator signing key, a system account user, the limits."""

    #: Signs each namespace's account JWT; its seed also derives the accounts' keys (`namespace_account_key`).
    signing: Key
    #: A system account user's `.creds` (may push and look up account JWTs only).
    system_creds: str
    #: None: keep the limits the servers hold (`nats-auth revoke`, which is not told them).
    limits: AccountLimits | None = field(default_factory=AccountLimits)

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> AccountSettings | None:
        """None in user mode (`ONCEFLOW_NATS_ISOLATION` unset or `user`); AccountError names a bad variable."""
        env = os.environ if env is None else env
        signing = operator_signing_from_environment(env)
        if signing is None:
            return None
        system = env.get("ONCEFLOW_NATS_SYSTEM_CREDS", "").strip()
        path = env.get("ONCEFLOW_NATS_SYSTEM_CREDS_FILE", "").strip()
        if not system and path:
            try:
                with open(path) as file:
                    system = file.read()
            except OSError as exc:
                raise AccountError(f"ONCEFLOW_NATS_SYSTEM_CREDS_FILE={path}: {exc.strerror}") from None
        if "BEGIN NATS USER JWT" not in system:
            raise AccountError(
                f"{ISOLATION_ENV}=account needs ONCEFLOW_NATS_SYSTEM_CREDS (a system account user's .creds,"
                " system.creds from `onceflow nats-auth init`)"
            )
        limits: dict[str, int] = {}
        for name, variable in LIMIT_ENV.items():
            text = env.get(variable, "").strip()
            if not text:
                continue
            try:
                limits[name] = int(text)
            except ValueError:
                raise AccountError(f"{variable}={text!r} is not a whole number (-1: no limit)") from None
            if limits[name] < -1:
                raise AccountError(f"{variable}={text} must be -1 (no limit) or more")
        return cls(signing, system, AccountLimits(**limits))


def operator_signing_from_environment(env: Mapping[str, str] | None = None) -> Key | None:
    """The operator signing key in account mode, None in user mode; AccountError names a bad variable."""
    env = os.environ if env is None else env
    mode = env.get(ISOLATION_ENV, "").strip().lower() or "user"
    if mode not in ("user", "account"):
        raise AccountError(f"{ISOLATION_ENV}={mode!r} must be user or account")
    if mode == "user":
        return None
    seed = env.get("ONCEFLOW_NATS_OPERATOR_SIGNING_KEY", "").strip()
    if not seed:
        raise AccountError(
            f"{ISOLATION_ENV}=account needs ONCEFLOW_NATS_OPERATOR_SIGNING_KEY (an operator signing seed,"
            " SO..., from `onceflow nats-auth init`)"
        )
    try:
        signing = Key.of(seed)
    except ValueError as exc:
        raise AccountError(f"ONCEFLOW_NATS_OPERATOR_SIGNING_KEY: {exc}") from None
    if not signing.seed.startswith("SO"):
        raise AccountError("ONCEFLOW_NATS_OPERATOR_SIGNING_KEY must be an operator seed (it starts with SO)")
    return signing


def namespace_user_creds(signing: Key, namespace: str, who: str) -> str:
    """A fresh user with every right in the namespace's account (the operator's and the console's connections)."""
    account = namespace_account_key(signing, namespace)
    user = Key.new("user")
    return creds(user_jwt(account, account.public, user.public, f"{who}/{namespace}"), user.seed)


class Accounts:
    """Issues namespaces' accounts: signs, pushes to the servers (once per process), mints users."""

    def __init__(self, url: str, settings: AccountSettings) -> None:
        self.url = url
        self.settings = settings
        self._system: Client | None = None
        self._lock = asyncio.Lock()
        #: Namespaces whose account this process pushed (a push is idempotent; once is enough).
        self._pushed: set[str] = set()

    def key(self, namespace: str) -> Key:
        """The namespace's account key (it signs the namespace's users)."""
        return namespace_account_key(self.settings.signing, namespace)

    def account_jwt(
        self, namespace: str, revocations: Mapping[str, int] | None = None, limits: AccountLimits | None = None
    ) -> str:
        return account_jwt(
            self.settings.signing,
            self.key(namespace).public,
            f"onceflow-{namespace}",
            jetstream=True,
            limits=limits or self.settings.limits,
            revocations=revocations,
        )

    async def _connection(self) -> Client:
        if self._system is None or self._system.is_closed:
            self._system = await natsio.connect(
                self.url, name="onceflow-operator-accounts", credentials=self.settings.system_creds
            )
        return self._system

    async def current(self, namespace: str) -> dict[str, Any]:
        """The `nats` claims of the account JWT the servers hold for the namespace ({} when it is unknown)."""
        system = await self._connection()
        subject = CLAIMS_LOOKUP.replace("*", self.key(namespace).public)
        reply = await system.request(subject, b"", timeout=10)
        if not reply.data:
            return {}
        try:
            claims: dict[str, Any] = decode_jwt(reply.data.decode()).get("nats") or {}
        except (ValueError, IndexError):  # not a JWT: nothing to keep
            return {}
        return claims

    async def push(self, namespace: str, revoke: Mapping[str, int] | None = None) -> None:
        """Make the servers know the namespace's account (current limits, revocations kept); AccountError when refused.

        `revoke` adds revocations (user public key -> Unix time). Without it, a namespace already
        pushed by this process is not pushed again.
        """
        async with self._lock:
            if namespace in self._pushed and not revoke:
                return
            system = await self._connection()
            # The servers are where revocations live (no state in the operator): read them back, or
            # a push would let revoked users in again. Limits too when this process was given none.
            current = await self.current(namespace)
            kept = {str(user): int(at) for user, at in (current.get("revocations") or {}).items()}
            limits = self.settings.limits
            if limits is None:
                held = current.get("limits") or {}
                fields = {f.name for f in dataclasses.fields(AccountLimits)}
                limits = AccountLimits(**{k: int(v) for k, v in held.items() if k in fields})
            token = self.account_jwt(namespace, {**kept, **(revoke or {})}, limits)
            reply = await system.request(CLAIMS_UPDATE, token.encode(), timeout=10)
            answer = json.loads(reply.data or b"{}")
            if "error" in answer or (answer.get("data") or {}).get("code") != 200:
                error = answer.get("error") or answer.get("data") or {}
                raise AccountError(
                    f"NATS refused the account of namespace {namespace}: {error.get('description') or error}"
                    " (are the servers on a full resolver with this operator, and is the signing key in its JWT?)"
                )
            self._pushed.add(namespace)

    async def revoke(self, namespace: str, users: list[str]) -> None:
        """Revoke users of the namespace's account: the servers refuse them and close their connections."""
        now = int(time.time())
        await self.push(namespace, {user: now for user in users})

    def admin_creds(self, namespace: str) -> str:
        """A fresh user of the namespace's account with every right in it: the operator's own connection there."""
        return namespace_user_creds(self.settings.signing, namespace, "onceflow-operator")

    async def close(self) -> None:
        if self._system is not None and not self._system.is_closed:
            await self._system.close()


class NatsLinks:
    """The operator's NATS connections by namespace: the shared one (user mode) or one per account.

    Controllers call the same methods in both modes; each routes by the namespace of its plan or
    subject. In account mode a namespace's connection is made on first use (after its account is
    pushed) and kept until `forget` (namespace cleanup) or `close`.
    """

    def __init__(
        self,
        url: str,
        on_heartbeat: Callable[..., None],
        settings: TopologySettings | None = None,
        on_streams: Callable[..., None] | None = None,
        accounts: AccountSettings | None = None,
    ) -> None:
        self.url = url
        self._on_heartbeat = on_heartbeat
        self._settings = settings
        self._on_streams = on_streams
        self.accounts = Accounts(url, accounts) if accounts is not None else None
        if accounts is not None and accounts.limits is not None and accounts.limits.consumer > 0:
            # A stream's consumer cap may not exceed its account's consumer limit (JetStream refuses the stream).
            self._settings = dataclasses.replace(settings or TopologySettings(), max_consumers=accounts.limits.consumer)
        #: User mode: the one connection. Account mode: None.
        self.shared = None if accounts is not None else JetStreamLink(url, on_heartbeat, settings, on_streams)
        self._links: dict[str, JetStreamLink] = {}
        self._lock = asyncio.Lock()

    @property
    def isolation(self) -> Isolation:
        return "user" if self.accounts is None else "account"

    async def link(self, namespace: str) -> JetStreamLink:
        """The connection that reaches `namespace`'s streams (made, and its account pushed, on first use)."""
        if self.shared is not None:
            return self.shared
        assert self.accounts is not None
        async with self._lock:
            found = self._links.get(namespace)
            if found is None:
                await self.accounts.push(namespace)
                found = JetStreamLink(
                    self.url,
                    self._on_heartbeat,
                    self._settings,
                    None if self._on_streams is None else functools.partial(self._on_streams, namespace=namespace),
                    credentials=self.accounts.admin_creds(namespace),
                    namespace=namespace,
                )
                self._links[namespace] = found
        return found

    def links(self) -> list[JetStreamLink]:
        """The connections made so far (the stream watcher's round)."""
        return [self.shared] if self.shared is not None else list(self._links.values())

    async def jetstream(self, namespace: str) -> JetStreamContext:
        return await (await self.link(namespace)).jetstream()

    def namespace_ensured(self, namespace: str) -> bool:
        found = self.shared or self._links.get(namespace)
        return found is not None and found.namespace_ensured(namespace)

    async def ensure_namespace(self, namespace: str) -> None:
        await (await self.link(namespace)).ensure_namespace(namespace)

    async def ensure_edi_outbound(self, plan: EdiPartnerPlan) -> None:
        await (await self.link(plan.namespace)).ensure_edi_outbound(plan)

    async def observe_lanes(self, plan: Plan) -> LaneState:
        return await (await self.link(plan.namespace)).observe_lanes(plan)

    async def provision(self, plan: Plan) -> None:
        await (await self.link(plan.namespace)).provision(plan)

    async def apply_split(self, lanes: LaneState, main: Plan, canary: Plan | None, weight: int) -> int:
        return await (await self.link(main.namespace)).apply_split(lanes, main, canary, weight)

    async def remove_lane(self, plan: Plan, lane: Lane) -> bool:
        return await (await self.link(plan.namespace)).remove_lane(plan, lane)

    async def remove_consumer(self, namespace: str, stream: str, consumer: str) -> bool:
        return await (await self.link(namespace)).remove_consumer(stream, consumer)

    async def last_drift(self, subject: str) -> DriftResult | None:
        """The newest drift result on `subject`, read in the account of the subject's namespace."""
        try:
            found = await self.link(subjects.namespace_of(subject))
        except Exception:  # no account yet, or NATS away: status keeps what it had
            return None
        return await found.last_drift(subject)

    async def forget(self, namespace: str) -> None:
        """Close a namespace's connection (account mode; its account and streams stay on the servers)."""
        found = self._links.pop(namespace, None)
        if found is not None:
            await found.close()

    async def close(self) -> None:
        for found in self.links():
            await found.close()
        self._links.clear()
        if self.accounts is not None:
            await self.accounts.close()
