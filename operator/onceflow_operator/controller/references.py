"""What an object references: the Secrets a Connector or plan reads (the Connectors come from `controller.view`)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from onceflow_operator.api.names import CREDENTIALS_LABEL
from onceflow_operator.build.pods import secrets_checksum_of
from onceflow_operator.clients.kube import KubeClient
from onceflow_operator.compiler.references import secret_refs
from onceflow_runner.contract.signing import SECRET_FIELD, signing_secret_problem

__all__ = ["check_secrets", "is_usable_secret", "secret_refs", "secrets_checksum", "unusable_secrets"]


def is_usable_secret(secret: Mapping[str, Any]) -> bool:
    """True when the Secret's owner let Onceflow use it (label `onceflow.io/credentials: "true"`)."""
    labels = (secret.get("metadata") or {}).get("labels") or {}
    return bool(labels.get(CREDENTIALS_LABEL) == "true")


def _value(secret: Mapping[str, Any], key: str) -> str:
    """A Secret key's value as text (stringData as given, data base64-decoded); "" when unreadable."""
    if key in (secret.get("stringData") or {}):
        return str(secret["stringData"][key])
    try:
        return base64.b64decode(str((secret.get("data") or {}).get(key, "")), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return ""


def _not_usable(name: str, path: str) -> str:
    return (
        f"Secret {name} (from {path}) is not labelled {CREDENTIALS_LABEL}=true; Onceflow only sends Secrets "
        f"labelled so: kubectl label secret {name} {CREDENTIALS_LABEL}=true"
    )


async def check_secrets(
    kube: KubeClient, namespace: str, refs: list[tuple[str, str, str]], *, signing_scheme: str = ""
) -> tuple[list[tuple[str, str]], str]:
    """Return the problems as (reason, message) and the checksum of the Secrets' resourceVersions.

    Reasons: SecretNotFound (no Secret, or no such key), SecretNotUsable (not labelled for Onceflow)
    and SigningSecretUnusable (a webhook's signing secret the gateway would refuse: empty, too
    short, or not `whsec_<base64>` for Standard Webhooks; `signing_scheme` names the scheme). A
    message never contains a secret value.
    """
    problems: list[tuple[str, str]] = []
    versions: dict[str, str] = {}
    for path, name, key in refs:
        secret = await kube.get("v1", "Secret", namespace, name)
        if secret is None:
            problems.append(
                ("SecretNotFound", f"Secret {name} (key {key}, from {path}) does not exist in {namespace}; create it")
            )
        elif key not in (secret.get("data") or {}) and key not in (secret.get("stringData") or {}):
            problems.append(
                ("SecretNotFound", f"Secret {name} has no key {key} (from {path}); add the key or fix {path}.key")
            )
        elif not is_usable_secret(secret):
            problems.append(("SecretNotUsable", _not_usable(name, path)))
        elif path == SECRET_FIELD and (problem := signing_secret_problem(signing_scheme, _value(secret, key))):
            problems.append(
                (
                    "SigningSecretUnusable",
                    f"Secret {name} key {key} (from {path}) {problem}; store a non-empty secret "
                    "(standard-webhooks: whsec_<base64>)",
                )
            )
        else:
            versions[name] = secret["metadata"].get("resourceVersion", "")
    return problems, secrets_checksum_of(versions)


async def secret_values(
    kube: KubeClient, namespace: str, refs: list[tuple[str, str, str]]
) -> dict[tuple[str, str], str] | None:
    """The values of the Secret keys a Connector reads, for its credentialed probe; None if any is not usable.

    Only Secrets labelled for Onceflow are read (as the runners would mount them); the values stay
    in memory for one probe and are never logged or written anywhere.
    """
    values: dict[tuple[str, str], str] = {}
    for _, name, key in refs:
        secret = await kube.get("v1", "Secret", namespace, name)
        if secret is None or not is_usable_secret(secret):
            return None
        if key not in (secret.get("data") or {}) and key not in (secret.get("stringData") or {}):
            return None
        values[(name, key)] = _value(secret, key).strip()
    return values


async def unusable_secrets(kube: KubeClient, namespace: str, names: list[str], what: str) -> list[str]:
    """Problems for Secrets a plan mounts that exist but are not labelled for Onceflow's use.

    A missing Secret is not a problem here: its Connector is Stalled with SecretNotFound, and the
    pods wait for it, as pods do for any Secret volume.
    """
    problems = []
    for name in names:
        secret = await kube.get("v1", "Secret", namespace, name)
        if secret is not None and not is_usable_secret(secret):
            problems.append(_not_usable(name, what))
    return problems


async def secrets_checksum(kube: KubeClient, namespace: str, names: list[str]) -> str:
    """Changes when any Secret a pod mounts changes, so the pod template (and the pods) roll."""
    versions: dict[str, str] = {}
    for name in names:
        secret = await kube.get("v1", "Secret", namespace, name)
        versions[name] = (secret or {}).get("metadata", {}).get("resourceVersion", "missing")
    return secrets_checksum_of(versions)
