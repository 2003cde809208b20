"""Signed JWT client assertions (RFC 7523) for OAuth 2.0 token endpoints that take no client secret.

Why: some ERPs' machine-to-machine OAuth 2.0 (NetSuite's client-credentials flow) authenticate
the client by a JWT it signs with a private key whose certificate was uploaded to the ERP, not
by a client secret. The runner signs one short-lived assertion per token request here, with the
`cryptography` library the project already depends on (no JWT library needed for three
algorithms). The key is read from a Secret at start and never logged.

Claims: `iss` and `sub` the client id, `aud` the token URL, `iat`, `exp` (5 minutes later: the
assertion only has to reach the token endpoint), `jti` (a random id, so an intercepted
assertion cannot be replayed where the server remembers them) and, when scopes are given,
`scope` as a list (NetSuite reads the scopes from the assertion, not from the form).
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Literal

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from onceflow_runner.errors import PlanError

__all__ = ["ASSERTION_TYPE", "AssertionSigner"]

#: RFC 7523's client_assertion_type for a JWT.
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: Seconds an assertion is valid.
LIFETIME = 300


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class AssertionSigner:
    """Signs client assertions with one private key (loaded once, checked against the algorithm)."""

    def __init__(self, pem: str, *, key_id: str, algorithm: Literal["PS256", "RS256", "ES256"], connector: str) -> None:
        try:
            key = serialization.load_pem_private_key(pem.encode(), password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise PlanError(
                f"Connector {connector}: oauth2.clientAssertion.privateKeyRef does not hold an unencrypted PEM "
                "private key"
            ) from None
        wants_ec = algorithm == "ES256"
        if wants_ec and not (isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"):
            raise PlanError(f"Connector {connector}: ES256 needs an EC P-256 private key")
        if not wants_ec and not isinstance(key, rsa.RSAPrivateKey):
            raise PlanError(f"Connector {connector}: {algorithm} needs an RSA private key")
        self._key = key
        self.key_id = key_id
        self.algorithm = algorithm

    def assertion(self, *, client_id: str, audience: str, scopes: tuple[str, ...], now: float | None = None) -> str:
        """A compact JWT proving `client_id` to the token endpoint at `audience`."""
        issued = int(time.time() if now is None else now)
        header = {"alg": self.algorithm, "typ": "JWT", "kid": self.key_id}
        claims: dict[str, object] = {
            "iss": client_id,
            "sub": client_id,
            "aud": audience,
            "iat": issued,
            "exp": issued + LIFETIME,
            "jti": secrets.token_hex(16),
        }
        if scopes:
            claims["scope"] = list(scopes)
        signing_input = ".".join(
            _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
        ).encode()
        return signing_input.decode() + "." + _b64url(self._sign(signing_input))

    def _sign(self, data: bytes) -> bytes:
        key = self._key
        if isinstance(key, ec.EllipticCurvePrivateKey):
            r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")  # JWS wants r||s, not DER
        assert isinstance(key, rsa.RSAPrivateKey)
        if self.algorithm == "PS256":
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=hashes.SHA256.digest_size)
            return key.sign(data, pss, hashes.SHA256())
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
