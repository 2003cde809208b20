"""`onceflow console`: serve the review web page (`review.console`) with the cluster's RBAC deciding access."""

from __future__ import annotations

from typing import Literal

import click

from onceflow_operator.cli.cluster import Cluster, cluster_options
from onceflow_operator.cli.output import nats_option

__all__ = ["console"]


@click.command()
@click.option(
    "--auth",
    type=click.Choice(["token", "proxy"]),
    default="token",
    show_default=True,
    help="token: Kubernetes bearer tokens (TokenReview). proxy: trust X-Forwarded-User/-Groups from an OIDC proxy.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve on.")
@click.option("--port", default=8088, show_default=True, help="Port to serve on.")
@cluster_options
@nats_option
def console(auth: str, host: str, port: int, cluster: Cluster, nats_url: str) -> None:
    """The review web page: exceptions waiting, one record with its candidates, and the decisions.

    Access follows the cluster's RBAC: `get` / `update` on `exceptions.onceflow.io` in the
    record's namespace (checked with a SubjectAccessReview per request). In a pod without a
    kubeconfig the console uses its service account; `-n` is the namespace it opens on.
    """
    from onceflow_operator.clients.accounts import AccountError, operator_signing_from_environment
    from onceflow_operator.clients.kube import KubeClient, KubeconfigError
    from onceflow_operator.clients.kubeconfig import kubeconfig_files
    from onceflow_operator.review.console import Console, serve

    mode: Literal["token", "proxy"] = "proxy" if auth == "proxy" else "token"
    try:  # account isolation: the console reads each namespace in its own account
        account_signing = operator_signing_from_environment()
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    has_kubeconfig = bool(cluster.kubeconfig or cluster.context)
    if not has_kubeconfig:
        try:
            has_kubeconfig = bool(kubeconfig_files())
        except KubeconfigError:
            has_kubeconfig = False  # in a pod: the service account, checked on its first request
    if has_kubeconfig:
        # Every request is authorised by the API server: one that cannot be reached (or does not
        # know these credentials) is one line and exit 1 now, not a page that fails each visitor.
        cluster.run(lambda kube: kube.who_am_i())
    try:
        kube = KubeClient.from_environment(cluster.kubeconfig, context=cluster.context)
    except KubeconfigError as exc:
        raise click.ClickException(str(exc)) from None
    app = Console(
        nats_url, kube, auth=mode, default_namespace=cluster.namespace_or_default(), account_signing=account_signing
    )
    click.echo(f"onceflow console on http://{host}:{port} (auth: {auth})")
    serve(app, host, port)
