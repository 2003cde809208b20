"""`onceflow send`: post one signed webhook to a Connector's gateway, as its sender would.

A person trying a workflow should not have to write HMAC code: the Connector (from manifests with
`-f`, else from the cluster) says the path, the signature scheme and the Secret; the key comes
from that Secret; `compiler.webhooks` signs with the gateway's own code. The gateway's URL is
`--to`, or, while `onceflow dev up` runs, the one it started for the Connector. The answer is one
line: the HTTP status, the delivery id the gateway trusts and whether it stored the record or
already had it. Every failure is one line naming what to fix; the secret is never printed.
"""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from onceflow_operator.cli.cluster import Cluster, cluster_options
from onceflow_operator.cli.output import expand_paths, manifests_option

__all__ = ["send"]


def _body(data: str) -> bytes:
    """`--data` as curl reads it: the text itself, `@FILE`, or `@-` for stdin."""
    if not data.startswith("@"):
        return data.encode()
    if data == "@-":
        return sys.stdin.buffer.read()
    try:
        return Path(data[1:]).read_bytes()
    except OSError as exc:
        raise click.BadParameter(f"cannot read {data[1:]}: {exc.strerror}", param_hint="-d/--data") from None


def _from_manifests(files: tuple[Path, ...], name: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]], str]:
    """The Connector named `name` and every Secret among the manifests, and where they came from."""
    import yaml

    from onceflow_operator.compiler.validation import load_manifests

    connector: dict[str, Any] | None = None
    secrets: dict[str, dict[str, Any]] = {}
    for path in expand_paths(files):
        try:
            docs = list(load_manifests(path))
        except (OSError, yaml.YAMLError) as exc:
            raise click.ClickException(f"cannot read {path}: {exc}") from None
        for doc in docs:
            doc_name = str((doc.get("metadata") or {}).get("name", ""))
            if doc.get("kind") == "Connector" and doc_name == name:
                connector = doc
            elif doc.get("kind") == "Secret":
                secrets[doc_name] = doc
    if connector is None:
        raise click.ClickException(f"no Connector named {name!r} in the given manifests (-f)")
    return connector, secrets, "the given manifests (add its manifest with -f)"


def _from_cluster(cluster: Cluster, namespace: str, name: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]], str]:
    """The Connector and the Secret it names, read from the API server (one line when it cannot be reached)."""
    from onceflow_operator.clients.kube import KubeClient

    async def read(kube: KubeClient) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        connector = await kube.get("onceflow.io/v1alpha1", "Connector", namespace, name)
        if connector is None:
            return None, None
        ref = ((connector.get("spec") or {}).get("webhook") or {}).get("signature", {}).get("secretRef") or {}
        secret = await kube.get("v1", "Secret", namespace, str(ref["name"])) if ref.get("name") else None
        return connector, secret

    connector, secret = cluster.run(read)
    if connector is None:
        raise click.ClickException(f"Connector {name} not found in namespace {namespace} (give -n, or -f manifests)")
    secrets = {} if secret is None else {str(secret["metadata"]["name"]): secret}
    return connector, secrets, f"namespace {namespace} (or give the manifests with -f)"


def _gateway_url(to: str | None, connector: str, namespace: str, path: str) -> str:
    """`--to` (its path filled in from the Connector when it has none), else what `dev up` started."""
    if to:
        parts = urlsplit(to)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise click.BadParameter(f"{to!r} is not an http(s) URL", param_hint="--to")
        return to.rstrip("/") + path if parts.path in {"", "/"} else to
    from onceflow_operator.dev.devenv import default_state, running

    info = running(default_state())
    if info is None:
        raise click.UsageError(
            "no gateway URL: give --to URL (the gateway's Service or Ingress), or start onceflow dev up"
        )
    gateway = (info.get("gateways") or {}).get(connector)
    if info.get("namespace") != namespace or not isinstance(gateway, dict):
        raise click.UsageError(
            f"onceflow dev up runs no gateway for Connector {connector} in namespace {namespace} "
            f"(it serves namespace {info.get('namespace')}); give --to URL"
        )
    return str(gateway["url"])


def _answer(connector: str, status: int, reason: str, payload: Any, secret: str) -> str:
    """The gateway's answer in one line; an error names the likely cause."""
    document = payload if isinstance(payload, dict) else {}
    if 200 <= status < 300:
        stored = (
            f"a duplicate of stream sequence {document.get('sequence')}: not stored again"
            if document.get("duplicate")
            else f"stored (stream sequence {document.get('sequence')})"
        )
        return f"{connector}: {status} {reason}, delivery id {document.get('id')}, {stored}"
    error = document.get("error") or reason
    hint = {
        401: f"; the gateway's signing secret differs from {secret}, or the clocks differ by more than the tolerance",
        404: "; the URL's path is not the Connector's spec.webhook.path",
        413: "; the body is larger than spec.webhook.maxBodyBytes allows",
        503: "; the gateway cannot store records now (NATS, or an unusable signing secret): see its readiness",
    }.get(status, "")
    return f"{connector}: {status} {error}{hint}"


@click.command()
@click.argument("connector")
@click.option(
    "-d",
    "--data",
    required=True,
    help="The body: text, @FILE, or @- for stdin (as curl reads it).",
)
@cluster_options
@manifests_option(
    "Read the Connector and its Secret from these manifests instead of the cluster (repeatable).", required=False
)
@click.option("--to", help="The gateway's URL (default: the one onceflow dev up started); a bare host gets the path.")
@click.option("--event", help="The event, for Connectors that read it from a header (e.g. X-Shopify-Topic).")
@click.option("--id", "delivery_id", help="Delivery id (default: a new one); send the same id to play a retry.")
@click.option("--content-type", default="application/json", show_default=True, help="Content-Type of the body.")
def send(
    connector: str,
    data: str,
    cluster: Cluster,
    files: tuple[Path, ...],
    to: str | None,
    event: str | None,
    delivery_id: str | None,
    content_type: str,
) -> None:
    """Sign a body as CONNECTOR's sender would (its scheme, the key from its Secret) and POST it to its gateway.

    Prints the gateway's answer in one line: status, delivery id, stored or duplicate. Exit 1 when
    the gateway did not accept the record.
    """
    import httpx

    from onceflow_operator.compiler.webhooks import (
        WebhookRequestError,
        connector_from_manifest,
        signed_webhook,
        signing_secret,
    )

    body = _body(data)
    namespace = cluster.namespace_or_default() if files else cluster.namespace
    doc, secrets, where = _from_manifests(files, connector) if files else _from_cluster(cluster, namespace, connector)
    try:
        model = connector_from_manifest(doc)
        request = signed_webhook(
            model,
            signing_secret(model, secrets, where=where),
            body,
            namespace=namespace,
            delivery_id=delivery_id or f"onceflow-send-{uuid.uuid4().hex[:12]}",
            now=int(time.time()),
            event=event,
        )
    except WebhookRequestError as exc:
        raise click.ClickException(str(exc)) from None
    url = _gateway_url(to, connector, namespace, request.path)
    try:
        response = httpx.post(url, content=body, headers=request.headers | {"Content-Type": content_type}, timeout=15)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach the gateway at {url} ({type(exc).__name__}); check --to") from None
    try:
        payload = response.json()
    except ValueError:
        payload = None
    secret = request.plan.signature.secret
    line = _answer(
        connector, response.status_code, response.reason_phrase, payload, f"Secret {secret.name}/{secret.key}"
    )
    if not response.is_success:
        raise click.ClickException(line)
    click.echo(line)
