"""What Onceflow manifests name of each other, and which names the given manifests leave unresolved.

Why: an Integration that names a Connector nobody applies, or a Connector whose Secret is
missing, is only found by the operator after `kubectl apply` (a Stalled condition). When the
manifests are reviewed together (`onceflow validate -f dir/` in CI), the same gap is visible
before: every Connector, SyncPolicy and Secret an object names must be among them, in its
namespace, and of the right type. Objects that live elsewhere (a Secret from a vault, a shared
Connector already in the cluster) are declared with `--external KIND`, so the check stays offline
and says exactly what it did not check.

`secret_refs` is the one list of the Secrets a Connector reads; the controller checks the same
references against the cluster.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from onceflow_operator.api import Connector, Integration, SyncPolicy
from onceflow_operator.api.names import CREDENTIALS_LABEL, GROUP
from onceflow_operator.compiler.steps import REQUEST_KINDS
from onceflow_runner.contract.signing import SECRET_FIELD

__all__ = ["REFERENCED_KINDS", "Reference", "manifest_references", "reference_problems", "secret_refs"]

#: The kinds an Onceflow object can name, i.e. what `--external` accepts.
REFERENCED_KINDS = ("Connector", "SyncPolicy", "Secret")


@dataclass(frozen=True)
class Reference:
    """One name an object gives: at `field`, an object of `kind` called `name` (with `key`, for a Secret)."""

    field: str
    kind: str
    name: str
    #: The Connector type the reference needs (REST for calls, Webhook for a trigger), if any.
    connector_type: str = ""
    key: str = ""


def secret_refs(connector: Connector) -> list[tuple[str, str, str]]:
    """(field path, secret, key) for every Secret a Connector reads."""
    spec = connector.spec
    out: list[tuple[str, str, str]] = []
    if spec.webhook:
        ref = spec.webhook.signature.secret_ref
        out.append((SECRET_FIELD, ref.name, ref.key))
    if spec.edi:
        sftp = spec.edi.sftp
        for attr in ("user_ref", "password_ref", "private_key_ref", "known_hosts_ref"):
            value = getattr(sftp, attr)
            if value is not None:
                alias = type(sftp).model_fields[attr].alias or attr
                out.append((f"spec.edi.sftp.{alias}", value.name, value.key))
    if spec.rest:
        auth = spec.rest.auth
        for block_name in ("bearer", "basic", "api_key", "erpnext_token", "oauth2"):
            block = getattr(auth, block_name)
            if block is None:
                continue
            block_alias = type(auth).model_fields[block_name].alias or block_name
            for attr, info in type(block).model_fields.items():
                value = getattr(block, attr)
                if attr.endswith("_ref") and value is not None:
                    alias = info.alias or attr
                    out.append((f"spec.rest.auth.{block_alias}.{alias}", value.name, value.key))
        if auth.oauth2 is not None and auth.oauth2.client_assertion is not None:
            ref = auth.oauth2.client_assertion.private_key_ref
            out.append(("spec.rest.auth.oauth2.clientAssertion.privateKeyRef", ref.name, ref.key))
        if auth.session_login is not None:
            for name, ref in auth.session_login.secrets.items():
                out.append((f"spec.rest.auth.sessionLogin.secrets.{name}", ref.name, ref.key))
    return out


def manifest_references(obj: Connector | Integration | SyncPolicy) -> Iterator[Reference]:
    """Every Connector, SyncPolicy and Secret one object names."""
    if isinstance(obj, Integration):
        spec = obj.spec
        if spec.trigger.connector:
            yield Reference("spec.trigger.connector.name", "Connector", spec.trigger.connector.name, "Webhook")
        if spec.trigger.schedule:
            polled = spec.trigger.schedule.poll.connector
            yield Reference("spec.trigger.schedule.poll.connector", "Connector", polled, "REST")
        for i, step in enumerate(spec.steps):
            for kind in REQUEST_KINDS:
                block = getattr(step, kind)
                if block is not None:
                    yield Reference(f"spec.steps[{i}].{kind}.connector", "Connector", block.connector, "REST")
            if step.send_edi is not None:
                yield Reference(f"spec.steps[{i}].sendEdi.connector", "Connector", step.send_edi.connector, "EDI")
        if spec.sync_policy_ref:
            yield Reference("spec.syncPolicyRef.name", "SyncPolicy", spec.sync_policy_ref.name)
    elif isinstance(obj, SyncPolicy) and obj.spec.reconcile is not None:
        for side in ("left", "right"):
            endpoint = getattr(obj.spec.reconcile, side)
            yield Reference(f"spec.reconcile.{side}.connector", "Connector", endpoint.connector, "REST")
    elif isinstance(obj, Connector):
        for field, name, key in secret_refs(obj):
            yield Reference(field, "Secret", name, key=key)


def _namespace(doc: dict[str, Any], default: str | None) -> str | None:
    metadata = doc.get("metadata") or {}
    given = metadata.get("namespace") if isinstance(metadata, dict) else None
    return str(given) if given else default


def _name(doc: dict[str, Any]) -> str:
    metadata = doc.get("metadata") or {}
    return str(metadata.get("name", "")) if isinstance(metadata, dict) else ""


def _secret_keys(doc: dict[str, Any]) -> set[str]:
    return {str(k) for field in ("data", "stringData") for k in (doc.get(field) or {})}


def reference_problems(
    given: Iterable[tuple[str, dict[str, Any]]],
    valid: Iterable[tuple[str, Connector | Integration | SyncPolicy]],
    *,
    namespace: str | None = None,
    external: Collection[str] = (),
) -> Iterator[tuple[str, str, str, str, str]]:
    """Yield (source, kind, name, field, message) for each name the given manifests do not resolve.

    `given` is every (source, manifest) read, so an object with its own problems still counts as
    present; `valid` are the Onceflow objects that parsed, whose references are checked. A
    manifest without a namespace (and no `namespace`, i.e. `-n`) matches any. References to a
    kind in `external` that is not among the manifests are assumed to exist elsewhere.
    """
    present: dict[tuple[str, str], list[tuple[str | None, dict[str, Any]]]] = {}
    for _, doc in given:
        kind = str(doc.get("kind", ""))
        group = str(doc.get("apiVersion", "")).rpartition("/")[0]
        if kind in REFERENCED_KINDS and group == ("" if kind == "Secret" else GROUP) and _name(doc):
            present.setdefault((kind, _name(doc)), []).append((_namespace(doc, namespace), doc))
    for source, obj in valid:
        where = _namespace({"metadata": obj.metadata}, namespace)
        owner = type(obj).__name__
        name = str(obj.metadata.get("name", "<no name>"))
        for ref in manifest_references(obj):
            found = [doc for ns, doc in present.get((ref.kind, ref.name), []) if ns is None or where in (None, ns)]
            if not found:
                if ref.kind not in external:
                    yield source, owner, name, ref.field, _missing(ref, where)
                continue
            message = _mismatch(ref, found[0])
            if message:
                yield source, owner, name, ref.field, message


def _missing(ref: Reference, namespace: str | None) -> str:
    inside = f" in namespace {namespace}" if namespace else ""
    return (
        f"names {ref.kind} {ref.name!r}, which none of the given manifests defines{inside}; add its file "
        f"with -f, or pass --external {ref.kind} if it already exists another way (in the cluster, from a vault)"
    )


def _mismatch(ref: Reference, doc: dict[str, Any]) -> str:
    """What is wrong with a referenced object that is present ("" when nothing)."""
    if ref.kind == "Connector" and ref.connector_type:
        actual = str((doc.get("spec") or {}).get("type", ""))
        # An EDI Connector's records (one per transaction set) trigger Integrations as webhooks' do.
        inbound = ref.connector_type == "Webhook" and actual == "EDI"
        if actual and actual != ref.connector_type and not inbound:
            needs = {
                "Webhook": "a trigger needs a Webhook or EDI Connector",
                "EDI": "sendEdi needs an EDI Connector",
            }.get(ref.connector_type, "calls need REST")
            return f"Connector {ref.name!r} is {actual}; {needs}"
    if ref.kind == "Secret":
        labels = (doc.get("metadata") or {}).get("labels") or {}
        if labels.get(CREDENTIALS_LABEL) != "true":
            return (
                f'Secret {ref.name!r} is not labelled {CREDENTIALS_LABEL}: "true", so Onceflow will not use it; '
                "add the label to its manifest"
            )
        if ref.field != SECRET_FIELD and ref.key not in _secret_keys(doc):
            # The signing secret's key is checked with its value (validation.signing_secret_problems).
            return f"Secret {ref.name!r} has no key {ref.key!r}"
    return ""
