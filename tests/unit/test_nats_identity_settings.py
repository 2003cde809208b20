"""The operator's NATS identity settings and the JWTs it signs (pure)."""

from __future__ import annotations

import pytest

from onceflow_operator.build.natsauth import Key, decode_jwt, namespace_permissions, user_jwt
from onceflow_operator.controller.identity import IdentityError, NamespaceIdentities


def test_no_signing_key_means_no_issued_identities() -> None:
    assert NamespaceIdentities.from_environment({}) is None


def test_a_signing_key_setting_that_is_not_an_account_seed_is_one_line_naming_the_variable() -> None:
    with pytest.raises(IdentityError, match="ONCEFLOW_NATS_ACCOUNT_SIGNING_KEY: not an nkey seed"):
        NamespaceIdentities.from_environment({"ONCEFLOW_NATS_ACCOUNT_SIGNING_KEY": "hunter2"})
    with pytest.raises(IdentityError, match="must be an account seed"):
        NamespaceIdentities.from_environment({"ONCEFLOW_NATS_ACCOUNT_SIGNING_KEY": Key.new("user").seed})
    signing = Key.new("account")
    with pytest.raises(IdentityError, match="ONCEFLOW_NATS_ACCOUNT='nope' is not an account public key"):
        NamespaceIdentities.from_environment(
            {"ONCEFLOW_NATS_ACCOUNT_SIGNING_KEY": signing.seed, "ONCEFLOW_NATS_ACCOUNT": "nope"}
        )
    found = NamespaceIdentities.from_environment({"ONCEFLOW_NATS_ACCOUNT_SIGNING_KEY": signing.seed})
    assert found is not None
    assert found.account == signing.public


def test_a_namespace_user_reaches_its_own_subjects_consumers_and_keys_and_manages_nothing() -> None:
    perms = namespace_permissions("sales", ["orders"])
    pub = perms["pub"]["allow"]
    assert "onceflow.sales.>" in pub
    assert perms["pub"]["deny"] == ["onceflow.sales.decisions.>"]
    assert "$JS.API.CONSUMER.MSG.NEXT.*.sales_orders" in pub
    assert "$JS.ACK.*.sales_orders_advisories.>" in pub
    assert not [p for p in namespace_permissions("sales")["pub"]["allow"] if "CONSUMER" in p]
    assert "$KV.onceflow-keys-sales.>" in pub
    assert not [p for p in pub if any(w in p for w in ("CREATE", "DELETE", "UPDATE", "onceflow.*", "$JS.API.>"))]
    assert perms["sub"]["allow"] == ["_INBOX_sales.>", "onceflow.sales.stats.>"]


def test_a_user_jwt_is_signed_by_the_signing_key_and_names_its_account() -> None:
    account, signing, user = Key.new("account"), Key.new("account"), Key.new("user")
    token = user_jwt(signing, account.public, user.public, "ns", namespace_permissions("ns", []))
    header, _, _ = token.split(".")
    claims = decode_jwt(token)
    assert (claims["iss"], claims["sub"], claims["nats"]["issuer_account"]) == (
        signing.public,
        user.public,
        account.public,
    )
    assert claims["nats"]["type"] == "user"
    assert len(claims["jti"]) == 52  # base32 of a 256-bit digest, unpadded
    assert "=" not in header
