"""OAuth 2.0 client credentials with a signed JWT (RFC 7523), as NetSuite's machine-to-machine flow wants.

The token endpoint is played through httpx's MockTransport; it verifies the assertion with the
public key, as the real one does with the uploaded certificate.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from onceflow_runner.adapters.client_assertion import ASSERTION_TYPE
from onceflow_runner.adapters.outbound import HttpCaller
from onceflow_runner.contract.plan import ConnectorPlan
from onceflow_runner.errors import CredentialsRefused, PlanError

TOKEN_URL = "https://acct.suitetalk.test/services/rest/auth/oauth2/v1/token"


def b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def verify(token: str, public: Any, algorithm: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check the JWS signature as a token endpoint would; return header and claims."""
    head, body, sig = token.split(".")
    data, signature = f"{head}.{body}".encode(), b64url_decode(sig)
    if algorithm == "PS256":
        public.verify(signature, data, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
    elif algorithm == "RS256":
        public.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    else:
        r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        public.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))
    return json.loads(b64url_decode(head)), json.loads(b64url_decode(body))


def caller(tmp_path: Path, key_pem: str, algorithm: str, handler: Any) -> HttpCaller:
    (tmp_path / "ns").mkdir(exist_ok=True)
    (tmp_path / "ns" / "client-id").write_text("client-123")
    (tmp_path / "ns" / "key").write_text(key_pem)
    auth = {
        "type": "OAuth2ClientCredentials",
        "client_id": {"name": "ns", "key": "client-id"},
        "token_url": TOKEN_URL,
        "scopes": ["rest_webservices"],
        "assertion_key": {"name": "ns", "key": "key"},
        "assertion_key_id": "cert-42",
        "assertion_algorithm": algorithm,
    }
    plan = ConnectorPlan.model_validate(
        {"name": "netsuite", "base_url": "https://acct.suitetalk.test/services/rest", "auth": auth}
    )
    return HttpCaller({"netsuite": plan}, tmp_path, transport=httpx.MockTransport(handler))


@pytest.mark.parametrize("algorithm", ["PS256", "RS256", "ES256"])
async def test_the_token_request_carries_an_assertion_the_public_key_verifies(tmp_path: Path, algorithm: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1()) if algorithm == "ES256" else rsa.generate_private_key(65537, 2048)
    seen: dict[str, Any] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        if str(request.url) == TOKEN_URL:
            form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
            seen["form"], seen["authorization"] = form, request.headers.get("Authorization")
            seen["header"], seen["claims"] = verify(form["client_assertion"], key.public_key(), algorithm)
            return httpx.Response(200, json={"access_token": "ns-token", "expires_in": 3600, "token_type": "bearer"})
        seen["api"] = request.headers.get("Authorization")
        return httpx.Response(200, json={"items": []})

    c = caller(tmp_path, pem(key), algorithm, handler)
    await c.request(
        "netsuite", "GET", "/record/v1/customer", query={}, body=None, idempotency_key=None, headers={}, step="s"
    )
    assert seen["form"]["grant_type"] == "client_credentials"
    assert seen["form"]["client_assertion_type"] == ASSERTION_TYPE
    assert seen["authorization"] is None  # no client secret anywhere
    assert seen["header"] == {"alg": algorithm, "typ": "JWT", "kid": "cert-42"}
    claims = seen["claims"]
    assert (claims["iss"], claims["aud"], claims["scope"]) == ("client-123", TOKEN_URL, ["rest_webservices"])
    assert 0 < claims["exp"] - claims["iat"] <= 300
    assert seen["api"] == "Bearer ns-token"


async def test_a_refused_client_is_credentials_refused_naming_the_token_endpoint(tmp_path: Path) -> None:
    key = rsa.generate_private_key(65537, 2048)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": "invalid_client"})

    c = caller(tmp_path, pem(key), "PS256", handler)
    with pytest.raises(CredentialsRefused, match=r"token endpoint .* refused the client with 401: invalid_client"):
        await c.request(
            "netsuite", "GET", "/record/v1/customer", query={}, body=None, idempotency_key=None, headers={}, step="s"
        )


def test_a_key_that_is_not_a_pem_or_not_for_the_algorithm_is_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="does not hold an unencrypted PEM private key"):
        caller(tmp_path, "not a key", "PS256", lambda r: httpx.Response(200))
    with pytest.raises(PlanError, match="ES256 needs an EC P-256 private key"):
        caller(tmp_path, pem(rsa.generate_private_key(65537, 2048)), "ES256", lambda r: httpx.Response(200))
