"""NATS identities (pure): nkeys, signed JWTs, `.creds` files and each namespace's permissions.

Why decentralized JWT auth (see docs/install.md, "NATS credentials"): the NATS server trusts an
operator key and preloaded account JWTs, and a user is whatever an account's signing key signs,
so the Onceflow operator can issue (and re-issue, as Integrations come and go) a least-privilege
user per namespace without editing or reloading the server's configuration. One application
account holds the shared streams (subjects are namespace-prefixed, `contract.subjects`); a
namespace's user reaches only its own subjects, its own consumers and its own KV buckets, has
no stream or consumer management rights, may not publish decisions (people decide, through the
review console's identity), and reads replies only under its own inbox prefix.

The JWT format is nats-io/jwt v2's: header `{"typ":"JWT","alg":"ed25519-nkey"}`, base64url
without padding, `jti` the base32 (no padding) SHA-512/256 of the claims with `jti` empty,
signed with the issuer's ed25519 nkey over `header.payload`.

Account isolation (`nats.isolation: account`, docs/install.md "Account per namespace"): NATS checks
a publisher's permissions on the subject it publishes to, never on the reply subject it names,
and JetStream answers (pub acks, API responses, direct gets) to whatever reply subject a request
names, inside the account. With one account the shared streams capture such answers, so no user
permission closes the reflection of one namespace's records into another's subjects. In account
mode each namespace gets an account of its own, holding its own copy of the Onceflow streams; the
account's key is derived from the operator signing key (`namespace_account_key`), so it is the
same after an operator restart without storing any state, and only the Onceflow operator (which
holds that seed) can sign the account or its users.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import nkeys

from onceflow_runner.contract import subjects

__all__ = [
    "CLAIMS_LOOKUP",
    "CLAIMS_UPDATE",
    "AccountLimits",
    "Bootstrap",
    "Key",
    "account_jwt",
    "bootstrap",
    "creds",
    "decode_jwt",
    "namespace_account_key",
    "namespace_consumers",
    "namespace_permissions",
    "operator_jwt",
    "user_jwt",
]

#: Where a system account user pushes an account JWT to every server of a full resolver.
CLAIMS_UPDATE = "$SYS.REQ.CLAIMS.UPDATE"
#: Where it reads the account JWT a server holds (the answer is the JWT, or nothing when unknown).
CLAIMS_LOOKUP = "$SYS.REQ.ACCOUNT.*.CLAIMS.LOOKUP"

_PREFIX = {
    "operator": nkeys.PREFIX_BYTE_OPERATOR,
    "account": nkeys.PREFIX_BYTE_ACCOUNT,
    "user": nkeys.PREFIX_BYTE_USER,
}
#: An account's limits: unlimited, JetStream on (an account JWT without them has no JetStream).
_UNLIMITED = {
    "subs": -1,
    "data": -1,
    "payload": -1,
    "imports": -1,
    "exports": -1,
    "wildcards": True,
    "conn": -1,
    "leaf": -1,
    "mem_storage": -1,
    "disk_storage": -1,
    "streams": -1,
    "consumer": -1,
}
#: Streams whose info a namespace's processes read when they bind (the gateway reads the duplicate window).
_BOUND_STREAMS = (subjects.IN_STREAM, subjects.EVENTS_STREAM)


@dataclass(frozen=True)
class Key:
    """An nkey: its seed (secret) and public key."""

    seed: str
    public: str

    @classmethod
    def new(cls, kind: str) -> Key:
        raw = os.urandom(32)
        seed = nkeys.encode_seed(raw, _PREFIX[kind]).decode()  # type: ignore[no-untyped-call]
        return cls.of(seed)

    @classmethod
    def of(cls, seed: str) -> Key:
        """The key of a seed; ValueError when it is not an nkey seed."""
        try:
            pair = nkeys.from_seed(bytearray(seed.strip().encode()))  # type: ignore[no-untyped-call]
        except Exception:
            raise ValueError("not an nkey seed (it starts with S and is 58 characters)") from None
        return cls(seed.strip(), pair.public_key.decode())

    def sign(self, data: bytes) -> bytes:
        pair = nkeys.from_seed(bytearray(self.seed.encode()))  # type: ignore[no-untyped-call]
        return bytes(pair.sign(data))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _encode(claims: dict[str, Any], signer: Key) -> str:
    """Sign claims as nats-io/jwt v2 does (see the module docstring)."""
    claims = {**claims, "iss": signer.public, "iat": int(time.time()), "jti": ""}
    data = {k: claims[k] for k in ("aud", "exp", "jti", "iat", "iss", "name", "nbf", "sub") if claims.get(k)}
    digest = hashlib.new("sha512_256", json.dumps(data, separators=(",", ":")).encode()).digest()
    claims["jti"] = base64.b32encode(digest).decode().rstrip("=")
    header = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}, separators=(",", ":")).encode())
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signature = _b64(signer.sign(f"{header}.{payload}".encode()))
    return f"{header}.{payload}.{signature}"


def decode_jwt(token: str) -> dict[str, Any]:
    """The claims of a JWT (not verified: for reading what was issued)."""
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return decoded


def operator_jwt(operator: Key, name: str, system_account: str, signing_keys: Iterable[str] = ()) -> str:
    """The operator JWT a server trusts (`operator:` in its configuration).

    `signing_keys` may sign account JWTs in the operator's stead: the Onceflow operator holds one
    (account mode), never the operator's identity key itself.
    """
    nats: dict[str, Any] = {"system_account": system_account, "type": "operator", "version": 2}
    if signing_keys:
        nats["signing_keys"] = sorted(signing_keys)
    return _encode({"sub": operator.public, "name": name, "nats": nats}, operator)


@dataclass(frozen=True)
class AccountLimits:
    """JetStream limits of one namespace's account (-1: no limit); the chart's `nats.accountLimits`."""

    disk_storage: int = -1
    mem_storage: int = -1
    streams: int = -1
    consumer: int = -1
    conn: int = -1


def account_jwt(
    operator: Key,
    account: str,
    name: str,
    signing_keys: Iterable[str] = (),
    *,
    jetstream: bool,
    limits: AccountLimits | None = None,
    revocations: Mapping[str, int] | None = None,
) -> str:
    """An account JWT signed by the operator (or an operator signing key); `jetstream` gives it JetStream.

    `limits` bounds the account (a namespace's storage, streams, consumers and connections);
    without it JetStream is unlimited. `revocations` (user public key -> Unix time) makes the
    servers refuse, and disconnect, that user's JWTs issued at or before that time.
    """
    bounds = dict(_UNLIMITED) if jetstream else {k: v for k, v in _UNLIMITED.items() if "storage" not in k}
    if not jetstream:
        bounds.update(mem_storage=0, disk_storage=0, streams=0, consumer=0)
    elif limits is not None:
        bounds.update(dataclasses.asdict(limits))
    nats: dict[str, Any] = {
        "limits": bounds,
        "signing_keys": sorted(signing_keys),
        "default_permissions": {"pub": {}, "sub": {}},
        "type": "account",
        "version": 2,
    }
    if revocations:
        nats["revocations"] = dict(sorted(revocations.items()))
    return _encode({"sub": account, "name": name, "nats": nats}, operator)


def user_jwt(
    signer: Key,
    account: str,
    user: str,
    name: str,
    permissions: Mapping[str, Any] | None = None,
    *,
    expires: int | None = None,
) -> str:
    """A user JWT signed by the account or one of its signing keys (then `issuer_account` names the account).

    `expires` (Unix seconds) ends it: the servers refuse it, and close its connections, after that.
    """
    nats: dict[str, Any] = {"subs": -1, "data": -1, "payload": -1, "type": "user", "version": 2}
    nats.update(permissions or {})
    if signer.public != account:
        nats["issuer_account"] = account
    claims: dict[str, Any] = {"sub": user, "name": name, "nats": nats}
    if expires is not None:
        claims["exp"] = expires
    return _encode(claims, signer)


def namespace_account_key(root: Key, namespace: str) -> Key:
    """The account of a namespace (account mode): derived from `root`'s seed, so stable without state.

    HMAC-SHA256 of the namespace under the seed is the account's 32 random bytes: nobody without
    the seed can compute an account's seed, and the same namespace always gets the same account
    (its streams survive an operator restart). Rotating `root` moves every namespace to a new,
    empty account (docs/install.md says how to keep the old one while migrating).
    """
    raw = hmac.new(root.seed.encode(), f"onceflow-account:{namespace}".encode(), hashlib.sha256).digest()
    seed = nkeys.encode_seed(raw, _PREFIX["account"]).decode()  # type: ignore[no-untyped-call]
    return Key.of(seed)


def creds(jwt: str, seed: str) -> str:
    """A `.creds` file: the user JWT and its nkey seed, as `nsc` writes it (and nats clients read it)."""
    return (
        f"-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n"
        "NKEYs are sensitive and should be treated as secrets.\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n"
        "*************************************************************\n"
    )


def namespace_consumers(namespace: str, integrations: Iterable[str]) -> list[str]:
    """The durable consumers (lanes and their advisory readers) of some of a namespace's Integrations.

    Consumer names carry the namespace (`subjects.consumer_name`), so a permission may leave the
    stream a wildcard: a consumer of that name in any stream is this namespace's.
    """
    found = []
    for integration in sorted(set(integrations)):
        main = subjects.consumer_name(namespace, integration)
        for lane in (main, f"{main}_canary"):
            found += [lane, f"{lane}_advisories"]
    return found


def namespace_permissions(
    namespace: str, integrations: Iterable[str] = (), consumers: Iterable[str] = ()
) -> dict[str, Any]:
    """The pub/sub permissions of a namespace's user, with the consumers of `integrations` (a runner's own).

    `consumers` adds other consumers of the namespace by name (a sending EDI partner's outbound one).

    Gateways, EDI pollers and drift checks get the namespace's user without consumers; each
    Integration's runners a user with its own consumers only (see `controller/identity.py`).
    """
    root = subjects.namespace_root(namespace)
    pub = [f"{root}.>"]
    pub += [f"$JS.API.STREAM.INFO.{stream}" for stream in _BOUND_STREAMS]
    # Split markers are read by subject (direct get): only this namespace's subjects.
    pub += [f"$JS.API.DIRECT.GET.{stream}.{root}.>" for stream in _BOUND_STREAMS]
    for consumer in [*namespace_consumers(namespace, integrations), *consumers]:
        pub += [
            f"$JS.API.CONSUMER.INFO.*.{consumer}",
            f"$JS.API.CONSUMER.MSG.NEXT.*.{consumer}",
            f"$JS.ACK.*.{consumer}.>",
        ]
    for bucket in (subjects.kv_bucket(namespace), subjects.poll_bucket(namespace), subjects.edi_bucket(namespace)):
        stream = subjects.kv_stream(bucket)
        pub += [
            f"$KV.{bucket}.>",
            f"$JS.API.STREAM.INFO.{stream}",
            f"$JS.API.STREAM.MSG.GET.{stream}",
            f"$JS.API.DIRECT.GET.{stream}",
            f"$JS.API.DIRECT.GET.{stream}.>",
        ]
    return {
        # Decisions are people's (the review console's identity), never a workload's.
        "pub": {"allow": pub, "deny": [f"{root}.decisions.>"]},
        "sub": {"allow": [f"{subjects.inbox_prefix(namespace)}.>", subjects.stats_subject(namespace, ">")]},
    }


@dataclass(frozen=True)
class Bootstrap:
    """A fresh NATS operator with a system and an application account, and the Onceflow operator's user.

    `server_config()` is what the NATS servers include; the application account's signing key
    and the operator's `.creds` go to the Onceflow operator (chart values `nats.jwt`). For account
    mode the Onceflow operator also gets the operator signing key (it signs each namespace's
    account) and `system_creds` (a system account user, to push account JWTs to the servers).
    """

    operator: Key
    system: Key
    account: Key
    signing: Key
    operator_creds: str
    jwts: Mapping[str, str]
    operator_signing: Key
    system_creds: str

    def server_config(self, resolver: str = "memory", directory: str = "/data/jwt") -> str:
        """The `operator`/`resolver` block of nats-server.conf.

        `memory`: accounts preloaded, fixed (user mode). `full`: the NATS-based resolver, which
        stores in `directory` the account JWTs pushed to it (`$SYS.REQ.CLAIMS.UPDATE`) and shares
        them across a cluster; account mode needs it, the operator adds an account per namespace.
        """
        preload = "\n".join(f"  {key}: {token}" for key, token in self.jwts.items() if key != self.operator.public)
        if resolver == "memory":
            block = "resolver: MEMORY\n"
        elif resolver == "full":
            # allow_delete false: a deleted namespace's account (and its streams) stays until an SRE removes it.
            block = f"resolver: {{\n  type: full\n  dir: {json.dumps(directory)}\n  allow_delete: false\n}}\n"
        else:
            raise ValueError(f"resolver {resolver!r} must be memory or full")
        # A client's CONNECT carries its user JWT, and a user's permissions make it a few KB: the
        # default 4 KB control line would refuse a runner whose namespace and Integration names are long.
        return (
            "max_control_line: 16384\n"
            f"operator: {self.jwts[self.operator.public]}\n"
            f"system_account: {self.system.public}\n"
            f"{block}"
            f"resolver_preload: {{\n{preload}\n}}\n"
        )


def bootstrap(name: str = "onceflow") -> Bootstrap:
    """New keys and JWTs for a NATS installation dedicated to Onceflow."""
    operator, system, account, signing = Key.new("operator"), Key.new("account"), Key.new("account"), Key.new("account")
    operator_signing = Key.new("operator")
    admin, system_user = Key.new("user"), Key.new("user")
    jwts = {
        operator.public: operator_jwt(operator, name, system.public, [operator_signing.public]),
        system.public: account_jwt(operator, system.public, "SYS", jetstream=False),
        account.public: account_jwt(operator, account.public, name, [signing.public], jetstream=True),
    }
    operator_creds = creds(user_jwt(signing, account.public, admin.public, f"{name}-operator"), admin.seed)
    # Least privilege: it may push and read account JWTs and get the answers, nothing else of the system account.
    pushes = {"pub": {"allow": [CLAIMS_UPDATE, CLAIMS_LOOKUP]}, "sub": {"allow": ["_INBOX.>"]}}
    system_jwt = user_jwt(system, system.public, system_user.public, f"{name}-system", pushes)
    system_creds = creds(system_jwt, system_user.seed)
    return Bootstrap(operator, system, account, signing, operator_creds, jwts, operator_signing, system_creds)
