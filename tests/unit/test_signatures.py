"""Signature schemes against published test vectors, round trips, and mutations."""

from __future__ import annotations

import hashlib

import pytest

from onceflow_runner.gateway.signatures import SignatureConfig, SignatureError, sign, verify

NOW = 1_800_000_000


def test_github_published_vector() -> None:
    # From GitHub's "Validating webhook deliveries" documentation.
    headers = {"X-Hub-Signature-256": "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"}
    delivery = verify(SignatureConfig("github"), "It's a Secret to Everybody", headers, b"Hello, World!", NOW)
    assert delivery.startswith("sha256:")


def test_standard_webhooks_published_vector() -> None:
    # From the Standard Webhooks reference libraries' tests.
    headers = {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }
    body = b'{"test": 2432232314}'
    config = SignatureConfig("standard-webhooks")
    assert (
        verify(config, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", headers, body, 1614265330)
        == "msg_p5jXN8AQM9LWM0D4loKWxJek"
    )


def test_standard_webhooks_accepts_any_of_several_signatures_for_rotation() -> None:
    config = SignatureConfig("standard-webhooks")
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    headers = sign(config, secret, b"{}", delivery_id="msg_1", timestamp=NOW)
    headers["webhook-signature"] = "v1,b2xkLXNpZ25hdHVyZQ== " + headers["webhook-signature"]
    assert verify(config, secret, headers, b"{}", NOW) == "msg_1"


CONFIGS = [
    (SignatureConfig("github"), "gh-secret"),
    (SignatureConfig("shopify"), "shpss_secret"),
    (SignatureConfig("stripe"), "whsec_stripe"),
    (SignatureConfig("standard-webhooks"), "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
    (SignatureConfig("hmac", header="X-Signature", encoding="hex"), "hmac-secret"),
    (SignatureConfig("hmac", header="X-Sig", algorithm="sha512", encoding="base64", prefix="sha512="), "hmac-secret"),
]
BODY = b'{"id":"evt_1","type":"order.created","total":"10.00"}'


BODY_ID = "sha256:" + hashlib.sha256(BODY).hexdigest()


@pytest.mark.parametrize(("config", "secret"), CONFIGS, ids=lambda c: getattr(c, "scheme", ""))
def test_round_trip_gives_the_signed_delivery_id(config: SignatureConfig, secret: str) -> None:
    # Only what the scheme signs names the delivery: Standard Webhooks' webhook-id, Stripe's event id
    # in the body, and for schemes that sign only the body, the body's hash.
    headers = sign(config, secret, BODY, delivery_id="d-1", timestamp=NOW)
    delivery = verify(config, secret, headers, BODY, NOW)
    expected = {"stripe": "evt_1", "standard-webhooks": "d-1"}.get(config.scheme, BODY_ID)
    assert delivery == expected


@pytest.mark.parametrize(("config", "secret"), CONFIGS, ids=lambda c: getattr(c, "scheme", ""))
def test_a_captured_request_replayed_under_a_new_id_header_keeps_its_delivery_id(
    config: SignatureConfig, secret: str
) -> None:
    headers = sign(config, secret, BODY, delivery_id="d-1", timestamp=NOW)
    original = verify(config, secret, headers, BODY, NOW)
    for name in ("X-GitHub-Delivery", "X-Shopify-Webhook-Id", "X-Delivery-Id", "Idempotency-Key"):
        replayed = {**headers, name: "forged-new-id"}
        assert verify(config, secret, replayed, BODY, NOW) == original


def test_standard_webhooks_id_is_signed_so_a_new_id_header_breaks_the_signature() -> None:
    config, secret = CONFIGS[3]
    headers = sign(config, secret, BODY, delivery_id="d-1", timestamp=NOW)
    with pytest.raises(SignatureError):
        verify(config, secret, {**headers, "webhook-id": "d-2"}, BODY, NOW)


@pytest.mark.parametrize(("config", "secret"), CONFIGS, ids=lambda c: getattr(c, "scheme", ""))
def test_any_mutation_is_refused(config: SignatureConfig, secret: str) -> None:
    headers = sign(config, secret, BODY, delivery_id="d-1", timestamp=NOW)
    with pytest.raises(SignatureError):
        verify(config, secret, headers, BODY.replace(b"10.00", b"99.00"), NOW)
    with pytest.raises(SignatureError):
        verify(config, secret + "x", headers, BODY, NOW)
    for name in list(headers):
        if name in {
            "X-GitHub-Delivery",
            "X-Shopify-Webhook-Id",
            "X-Delivery-Id",
            "webhook-id",
        } and config.scheme not in {"standard-webhooks"}:
            continue
        stripped = {k: v for k, v in headers.items() if k != name}
        with pytest.raises(SignatureError):
            verify(config, secret, stripped, BODY, NOW)


@pytest.mark.parametrize("scheme", ["stripe", "standard-webhooks"])
def test_replays_outside_the_tolerance_are_refused(scheme: str) -> None:
    config = SignatureConfig(scheme, tolerance_seconds=300)
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    headers = sign(config, secret, BODY, delivery_id="d", timestamp=NOW - 301)
    with pytest.raises(SignatureError, match="tolerance"):
        verify(config, secret, headers, BODY, NOW)
    assert verify(config, secret, sign(config, secret, BODY, delivery_id="d", timestamp=NOW - 299), BODY, NOW)


def test_header_names_are_case_insensitive() -> None:
    config = SignatureConfig("standard-webhooks")
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    headers = {k.upper(): v for k, v in sign(config, secret, BODY, delivery_id="w-9", timestamp=NOW).items()}
    assert verify(config, secret, headers, BODY, NOW) == "w-9"


def test_hmac_without_delivery_header_uses_a_content_hash_so_resends_dedupe() -> None:
    config = SignatureConfig("hmac", header="X-Signature")
    headers = sign(config, "hmac-secret", BODY, delivery_id="x", timestamp=NOW)
    del headers["X-Delivery-Id"]
    assert verify(config, "hmac-secret", headers, BODY, NOW) == verify(config, "hmac-secret", headers, BODY, NOW + 60)
