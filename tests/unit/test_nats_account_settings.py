"""Account isolation settings and the account JWTs the operator signs (pure)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from onceflow_operator.build.natsauth import AccountLimits, Key, account_jwt, decode_jwt, namespace_account_key
from onceflow_operator.clients.accounts import AccountError, AccountSettings, NatsLinks
from onceflow_operator.controller.identity import NATS_SECRET
from onceflow_operator.controller.settings import OperatorConfig
from onceflow_runner.contract.environment import NATS_CREDS_KEY

SYSTEM_CREDS = "-----BEGIN NATS USER JWT-----\nx\n------END NATS USER JWT------\n"


def test_user_mode_is_the_default_and_needs_nothing() -> None:
    assert AccountSettings.from_environment({}) is None
    assert AccountSettings.from_environment({"ONCEFLOW_NATS_ISOLATION": "user"}) is None


def test_each_bad_account_setting_is_one_line_naming_the_variable() -> None:
    with pytest.raises(AccountError, match="ONCEFLOW_NATS_ISOLATION='tenant' must be user or account"):
        AccountSettings.from_environment({"ONCEFLOW_NATS_ISOLATION": "tenant"})
    with pytest.raises(AccountError, match="needs ONCEFLOW_NATS_OPERATOR_SIGNING_KEY"):
        AccountSettings.from_environment({"ONCEFLOW_NATS_ISOLATION": "account"})
    env = {"ONCEFLOW_NATS_ISOLATION": "account", "ONCEFLOW_NATS_OPERATOR_SIGNING_KEY": Key.new("account").seed}
    with pytest.raises(AccountError, match="must be an operator seed"):
        AccountSettings.from_environment(env)
    env["ONCEFLOW_NATS_OPERATOR_SIGNING_KEY"] = Key.new("operator").seed
    with pytest.raises(AccountError, match="needs ONCEFLOW_NATS_SYSTEM_CREDS"):
        AccountSettings.from_environment(env)
    env["ONCEFLOW_NATS_SYSTEM_CREDS"] = SYSTEM_CREDS
    env["ONCEFLOW_NATS_ACCOUNT_MAX_DISK"] = "10G"
    with pytest.raises(AccountError, match="ONCEFLOW_NATS_ACCOUNT_MAX_DISK='10G' is not a whole number"):
        AccountSettings.from_environment(env)
    env["ONCEFLOW_NATS_ACCOUNT_MAX_DISK"] = "-2"
    with pytest.raises(AccountError, match="must be -1"):
        AccountSettings.from_environment(env)
    env["ONCEFLOW_NATS_ACCOUNT_MAX_DISK"] = str(10 << 30)
    found = AccountSettings.from_environment(env)
    assert found is not None
    assert found.limits == AccountLimits(disk_storage=10 << 30)


def test_a_namespaces_account_is_stable_per_seed_and_differs_between_namespaces_and_seeds() -> None:
    root = Key.new("operator")
    alpha = namespace_account_key(root, "alpha")
    assert alpha == namespace_account_key(root, "alpha")  # an operator restart finds the same account
    assert alpha.public.startswith("A")
    assert alpha.seed.startswith("SA")
    assert alpha.public != namespace_account_key(root, "beta").public
    assert alpha.public != namespace_account_key(Key.new("operator"), "alpha").public


def test_an_account_jwt_carries_its_jetstream_limits() -> None:
    signer, account = Key.new("operator"), Key.new("account")
    limits = AccountLimits(disk_storage=1 << 30, mem_storage=0, streams=20, consumer=500, conn=100)
    claims = decode_jwt(account_jwt(signer, account.public, "n", jetstream=True, limits=limits))
    assert claims["iss"] == signer.public
    assert claims["sub"] == account.public
    found = claims["nats"]["limits"]
    assert (found["disk_storage"], found["mem_storage"], found["streams"], found["consumer"], found["conn"]) == (
        1 << 30,
        0,
        20,
        500,
        100,
    )
    unlimited = decode_jwt(account_jwt(signer, account.public, "n", jetstream=True))["nats"]["limits"]
    assert unlimited["disk_storage"] == -1


class _Secrets:
    """Just enough of KubeClient for NamespaceIdentities: Secrets by (namespace, name)."""

    def __init__(self) -> None:
        self.applied: dict[tuple[str, str], dict[str, Any]] = {}

    async def get(self, _version: str, _kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.applied.get((namespace, name))

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.applied[obj["metadata"]["namespace"], obj["metadata"]["name"]] = obj
        return obj


def _issuer(secret: dict[str, Any]) -> dict[str, Any]:
    text = base64.b64decode(secret["data"][NATS_CREDS_KEY]).decode()
    return decode_jwt(text.split("-----BEGIN NATS USER JWT-----\n")[1].split("\n")[0])


async def test_in_account_mode_each_namespaces_users_are_signed_by_its_own_account(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    signing = Key.new("operator")
    env = {
        "ONCEFLOW_NATS_ISOLATION": "account",
        "ONCEFLOW_NATS_OPERATOR_SIGNING_KEY": signing.seed,
        "ONCEFLOW_NATS_SYSTEM_CREDS": SYSTEM_CREDS,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = OperatorConfig.from_environment()
    assert config.accounts is not None
    assert config.identities is not None
    kube = _Secrets()
    for namespace in ("alpha", "beta"):
        assert await config.identities.ensure(kube, namespace) == 1  # type: ignore[arg-type]
        claims = _issuer(kube.applied[namespace, NATS_SECRET])
        assert claims["iss"] == namespace_account_key(signing, namespace).public
        assert "issuer_account" not in claims["nats"]  # the account's own key signs
        assert f"onceflow.{namespace}.>" in claims["nats"]["pub"]["allow"]  # the same narrow permissions
    assert await config.identities.ensure(kube, "alpha") == 0  # a resync writes nothing


async def test_user_mode_routes_every_namespace_to_the_one_shared_connection() -> None:
    links = NatsLinks("nats://127.0.0.1:1", lambda *_: None)
    assert links.isolation == "user"
    assert await links.link("alpha") is await links.link("beta")
    assert links.links() == [links.shared]
    await links.forget("alpha")  # nothing per namespace to close
    assert links.links() == [links.shared]
