"""Webhook signature schemes: check a request before anything is stored.

Each scheme is a pure function of (secret, headers, body, now) that either returns the request's
*trusted* delivery id (the dedupe key) or raises `SignatureError` saying why. `SignatureError` is
the only exception `verify` raises, whatever the input (a property test holds it to that).

What each scheme signs decides what the gateway may trust (docs/operations.md has the table):

- standard-webhooks signs `id.timestamp.body`: the id and the timestamp are the sender's own, so
  the id is the delivery id and a replay outside the tolerance is refused.
- stripe signs `timestamp.body`; the event id is the body's `id`, so it is signed too.
- github, shopify and hmac sign the body only. Their delivery-id and event headers are not
  signed, so a captured request could be replayed under a new id: the delivery id is therefore
  the SHA-256 of the body, and a replay under any id header is a duplicate of the original. The
  sender's claimed id is kept for tracing only (`claimed_delivery_id`).

Comparisons are constant-time. The secret is checked with the contract's `signing_secret_problem`
first: an empty key is a key everyone knows.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass

from multidict import CIMultiDict, CIMultiDictProxy

from onceflow_runner.contract.signing import signing_key, signing_secret_problem

__all__ = ["SignatureConfig", "SignatureError", "body_delivery_id", "claimed_delivery_id", "sign", "verify"]

#: Headers a sender may name its delivery with when the scheme has none of its own (never trusted).
_CLAIMED_ID_HEADERS = {
    "github": ("X-GitHub-Delivery",),
    "shopify": ("X-Shopify-Webhook-Id",),
    "standard-webhooks": ("webhook-id",),
}
_GENERIC_ID_HEADERS = ("Idempotency-Key", "X-Request-Id", "X-Delivery-Id")
_CASE_INSENSITIVE = (CIMultiDict, CIMultiDictProxy)
#: A Unix time in seconds has at most this many digits for the next few thousand years.
_MAX_TIMESTAMP_DIGITS = 12


class SignatureError(Exception):
    """The request is not signed as the Connector says; the message is safe to log, not to send back."""


@dataclass(frozen=True)
class SignatureConfig:
    """How one Connector's sender signs its requests."""

    scheme: str
    header: str = ""
    algorithm: str = "sha256"
    encoding: str = "hex"
    prefix: str = ""
    tolerance_seconds: int = 300


def _mac(key: bytes, message: bytes, algorithm: str = "sha256") -> bytes:
    try:
        return hmac.new(key, message, algorithm).digest()
    except ValueError:
        raise SignatureError(f"unsupported HMAC algorithm {algorithm!r}") from None


def _find(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None and not isinstance(headers, _CASE_INSENSITIVE):
        # A plain dict (tests, the sandboxes): look the name up in any case. An HTTP server's
        # headers (multidict's) already did, so a missing header costs no scan of every header.
        value = next((v for k, v in headers.items() if k.lower() == name.lower()), None)
    return value or None


def _header(headers: Mapping[str, str], name: str) -> str:
    value = _find(headers, name)
    if value is None:
        raise SignatureError(f"missing header {name}")
    return value


def _ascii(text: str, what: str) -> bytes:
    try:
        return text.encode("ascii")
    except UnicodeEncodeError:
        raise SignatureError(f"{what} is not ASCII") from None


def _check_time(timestamp: str, now: float, tolerance: int) -> None:
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= _MAX_TIMESTAMP_DIGITS):
        raise SignatureError("timestamp is not a Unix time in seconds")
    if abs(now - int(timestamp)) > tolerance:
        raise SignatureError(f"timestamp outside the {tolerance}s tolerance (replay or clock skew)")


def _key(scheme: str, secret: str) -> bytes:
    problem = signing_secret_problem(scheme, secret)
    if problem is not None:
        raise SignatureError(problem)
    return signing_key(scheme, secret.strip())


def body_delivery_id(body: bytes) -> str:
    """The delivery id of a scheme that signs only the body: the body's SHA-256."""
    return "sha256:" + hashlib.sha256(body).hexdigest()


def claimed_delivery_id(config: SignatureConfig, headers: Mapping[str, str]) -> str | None:
    """The delivery id the sender put in a header, for tracing only: unsigned for most schemes."""
    for name in (*_CLAIMED_ID_HEADERS.get(config.scheme, ()), *_GENERIC_ID_HEADERS):
        value = _find(headers, name)
        if value is not None:
            return value
    return None


def _stripe_event_id(body: bytes) -> str | None:
    try:
        event_id = json.loads(body).get("id")
    except (ValueError, AttributeError, RecursionError):
        return None
    return event_id if isinstance(event_id, str) and event_id else None


def verify(config: SignatureConfig, secret: str, headers: Mapping[str, str], body: bytes, now: float) -> str:
    """Return the request's trusted delivery id when its signature is valid; raise SignatureError if not."""
    scheme = config.scheme
    if scheme not in {"github", "shopify", "stripe", "standard-webhooks", "hmac"}:
        raise SignatureError(f"unknown signature scheme {scheme!r}")
    key = _key(scheme, secret)
    if scheme == "github":
        given = _ascii(_header(headers, "X-Hub-Signature-256"), "X-Hub-Signature-256")
        if not hmac.compare_digest(given, b"sha256=" + _mac(key, body).hex().encode()):
            raise SignatureError("X-Hub-Signature-256 does not match the body")
        return body_delivery_id(body)
    if scheme == "shopify":
        given = _ascii(_header(headers, "X-Shopify-Hmac-Sha256"), "X-Shopify-Hmac-Sha256")
        if not hmac.compare_digest(given, base64.b64encode(_mac(key, body))):
            raise SignatureError("X-Shopify-Hmac-Sha256 does not match the body")
        return body_delivery_id(body)
    if scheme == "stripe":
        parts = [p.split("=", 1) for p in _header(headers, "Stripe-Signature").split(",") if "=" in p]
        timestamp = next((v for k, v in parts if k == "t"), "")
        candidates = [v.encode("ascii", "replace") for k, v in parts if k == "v1"]
        if not timestamp or not candidates:
            raise SignatureError("Stripe-Signature lacks t= or v1=")
        _check_time(timestamp, now, config.tolerance_seconds)
        expected = _mac(key, timestamp.encode() + b"." + body).hex().encode()
        if not any(hmac.compare_digest(c, expected) for c in candidates):
            raise SignatureError("no v1 signature in Stripe-Signature matches the body")
        return _stripe_event_id(body) or body_delivery_id(body)
    if scheme == "standard-webhooks":
        msg_id = _header(headers, "webhook-id")
        timestamp = _header(headers, "webhook-timestamp")
        _check_time(timestamp, now, config.tolerance_seconds)
        signed = msg_id.encode("utf-8", "surrogatepass") + f".{timestamp}.".encode() + body
        expected = base64.b64encode(_mac(key, signed))
        offered = [
            s.split(",", 1)[1].encode("ascii", "replace")
            for s in _header(headers, "webhook-signature").split()
            if s.startswith("v1,")
        ]
        if not any(hmac.compare_digest(o, expected) for o in offered):
            raise SignatureError("no v1 signature in webhook-signature matches the body")
        return msg_id
    value = _header(headers, config.header) if config.header else ""
    if not value:
        raise SignatureError("the hmac scheme names no signature header")
    if config.prefix and not value.startswith(config.prefix):
        raise SignatureError(f"{config.header} does not start with the configured prefix")
    digest = _mac(key, body, config.algorithm)
    encoded = digest.hex() if config.encoding == "hex" else base64.b64encode(digest).decode()
    given = value[len(config.prefix) :].encode("ascii", "replace")
    if not hmac.compare_digest(given, encoded.encode()):
        raise SignatureError(f"{config.header} does not match the body")
    return body_delivery_id(body)


def sign(config: SignatureConfig, secret: str, body: bytes, *, delivery_id: str, timestamp: int) -> dict[str, str]:
    """Return the headers a sender of this scheme would add; used by the sandboxes and tests."""
    scheme = config.scheme
    if scheme == "github":
        return {
            "X-Hub-Signature-256": "sha256=" + _mac(signing_key(scheme, secret), body).hex(),
            "X-GitHub-Delivery": delivery_id,
        }
    if scheme == "shopify":
        return {
            "X-Shopify-Hmac-Sha256": base64.b64encode(_mac(signing_key(scheme, secret), body)).decode(),
            "X-Shopify-Webhook-Id": delivery_id,
        }
    if scheme == "stripe":
        sig = _mac(signing_key(scheme, secret), str(timestamp).encode() + b"." + body).hex()
        return {"Stripe-Signature": f"t={timestamp},v1={sig}"}
    if scheme == "standard-webhooks":
        try:
            key = signing_key(scheme, secret)
        except ValueError as exc:
            raise SignatureError(f"the standard-webhooks secret {exc}") from None
        mac = _mac(key, f"{delivery_id}.{timestamp}.".encode() + body)
        return {
            "webhook-id": delivery_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": "v1," + base64.b64encode(mac).decode(),
        }
    if scheme == "hmac":
        digest = _mac(signing_key(scheme, secret), body, config.algorithm)
        encoded = digest.hex() if config.encoding == "hex" else base64.b64encode(digest).decode()
        return {config.header: config.prefix + encoded, "X-Delivery-Id": delivery_id}
    raise SignatureError(f"unknown signature scheme {scheme!r}")
