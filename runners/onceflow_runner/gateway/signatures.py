"""Webhook signature schemes: check a request before anything is stored.

Each scheme is a pure function of (secret, headers, body, now) that either returns the
delivery id the sender gave the request (the dedupe key) or raises `SignatureError` saying why.
Comparisons are constant-time. Schemes: github, stripe, shopify, standard-webhooks, and a
generic hmac (header, algorithm, hex or base64, optional prefix). The secret is checked with the
contract's `signing_secret_problem` first: an empty key is a key everyone knows.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass

from onceflow_runner.contract.signing import signing_secret_problem

__all__ = ["SignatureConfig", "SignatureError", "sign", "verify"]


class SignatureError(Exception):
    """The request is not signed as the Connector says; the message is safe to log."""


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
    return hmac.new(key, message, algorithm).digest()


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:
        lowered = {k.lower(): v for k, v in headers.items()}
        value = lowered.get(name.lower())
    if not value:
        raise SignatureError(f"missing header {name}")
    return value


def _check_time(timestamp: str, now: float, tolerance: int) -> None:
    try:
        sent = int(timestamp)
    except ValueError:
        raise SignatureError("timestamp is not an integer") from None
    if abs(now - sent) > tolerance:
        raise SignatureError(f"timestamp outside the {tolerance}s tolerance (replay or clock skew)")


def _standard_webhooks_key(secret: str) -> bytes:
    raw = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(raw, validate=True)
    except binascii.Error:
        raise SignatureError("the configured standard-webhooks secret is not whsec_<base64>") from None


def _fallback_delivery_id(headers: Mapping[str, str], body: bytes) -> str:
    for name in ("Idempotency-Key", "X-Request-Id", "X-Delivery-Id"):
        try:
            return _header(headers, name)
        except SignatureError:
            continue
    return "sha256:" + hashlib.sha256(body).hexdigest()


def verify(config: SignatureConfig, secret: str, headers: Mapping[str, str], body: bytes, now: float) -> str:
    """Return the request's delivery id when its signature is valid; raise SignatureError if not."""
    scheme = config.scheme
    problem = signing_secret_problem(scheme, secret)
    if problem is not None:
        raise SignatureError(problem)
    if scheme == "github":
        given = _header(headers, "X-Hub-Signature-256").encode()
        expected = b"sha256=" + _mac(secret.encode(), body).hex().encode()
        if not hmac.compare_digest(given, expected):
            raise SignatureError("X-Hub-Signature-256 does not match the body")
        return (
            _header(headers, "X-GitHub-Delivery")
            if _has(headers, "X-GitHub-Delivery")
            else _fallback_delivery_id(headers, body)
        )
    if scheme == "shopify":
        given = _header(headers, "X-Shopify-Hmac-Sha256").encode()
        expected = base64.b64encode(_mac(secret.encode(), body))
        if not hmac.compare_digest(given, expected):
            raise SignatureError("X-Shopify-Hmac-Sha256 does not match the body")
        if _has(headers, "X-Shopify-Webhook-Id"):
            return _header(headers, "X-Shopify-Webhook-Id")
        return _fallback_delivery_id(headers, body)
    if scheme == "stripe":
        parts = [p.split("=", 1) for p in _header(headers, "Stripe-Signature").split(",") if "=" in p]
        timestamp = next((v for k, v in parts if k == "t"), "")
        candidates = [v.encode() for k, v in parts if k == "v1"]
        if not timestamp or not candidates:
            raise SignatureError("Stripe-Signature lacks t= or v1=")
        _check_time(timestamp, now, config.tolerance_seconds)
        expected = _mac(secret.encode(), timestamp.encode() + b"." + body).hex().encode()
        if not any(hmac.compare_digest(c, expected) for c in candidates):
            raise SignatureError("no v1 signature in Stripe-Signature matches the body")
        try:
            event_id = json.loads(body).get("id")
        except (ValueError, AttributeError):
            event_id = None
        return str(event_id) if event_id else _fallback_delivery_id(headers, body)
    if scheme == "standard-webhooks":
        msg_id = _header(headers, "webhook-id")
        timestamp = _header(headers, "webhook-timestamp")
        _check_time(timestamp, now, config.tolerance_seconds)
        expected = base64.b64encode(_mac(_standard_webhooks_key(secret), f"{msg_id}.{timestamp}.".encode() + body))
        offered = [
            s.split(",", 1)[1].encode() for s in _header(headers, "webhook-signature").split() if s.startswith("v1,")
        ]
        if not any(hmac.compare_digest(o, expected) for o in offered):
            raise SignatureError("no v1 signature in webhook-signature matches the body")
        return msg_id
    if scheme == "hmac":
        value = _header(headers, config.header)
        if config.prefix and not value.startswith(config.prefix):
            raise SignatureError(f"{config.header} does not start with {config.prefix!r}")
        digest = _mac(secret.encode(), body, config.algorithm)
        encoded = digest.hex() if config.encoding == "hex" else base64.b64encode(digest).decode()
        if not hmac.compare_digest(value[len(config.prefix) :].encode(), encoded.encode()):
            raise SignatureError(f"{config.header} does not match the body")
        return _fallback_delivery_id(headers, body)
    raise SignatureError(f"unknown signature scheme {scheme!r}")


def _has(headers: Mapping[str, str], name: str) -> bool:
    try:
        _header(headers, name)
    except SignatureError:
        return False
    return True


def sign(config: SignatureConfig, secret: str, body: bytes, *, delivery_id: str, timestamp: int) -> dict[str, str]:
    """Return the headers a sender of this scheme would add; used by the sandboxes and tests."""
    scheme = config.scheme
    if scheme == "github":
        return {
            "X-Hub-Signature-256": "sha256=" + _mac(secret.encode(), body).hex(),
            "X-GitHub-Delivery": delivery_id,
        }
    if scheme == "shopify":
        return {
            "X-Shopify-Hmac-Sha256": base64.b64encode(_mac(secret.encode(), body)).decode(),
            "X-Shopify-Webhook-Id": delivery_id,
        }
    if scheme == "stripe":
        sig = _mac(secret.encode(), str(timestamp).encode() + b"." + body).hex()
        return {"Stripe-Signature": f"t={timestamp},v1={sig}"}
    if scheme == "standard-webhooks":
        mac = _mac(_standard_webhooks_key(secret), f"{delivery_id}.{timestamp}.".encode() + body)
        return {
            "webhook-id": delivery_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": "v1," + base64.b64encode(mac).decode(),
        }
    if scheme == "hmac":
        digest = _mac(secret.encode(), body, config.algorithm)
        encoded = digest.hex() if config.encoding == "hex" else base64.b64encode(digest).decode()
        return {config.header: config.prefix + encoded, "X-Delivery-Id": delivery_id}
    raise SignatureError(f"unknown signature scheme {scheme!r}")
