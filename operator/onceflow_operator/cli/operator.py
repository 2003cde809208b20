"""`onceflow operator`: the control plane's process, started through the controller (the only kopf importer)."""

from __future__ import annotations

import click

__all__ = ["operator"]


@click.command()
@click.option("-n", "--namespace", "namespaces", multiple=True, help="Watch this namespace (repeatable).")
@click.option("-A", "--all-namespaces", is_flag=True, help="Watch every namespace (needs the ClusterRole).")
@click.option("--liveness", default="http://0.0.0.0:8081/healthz", show_default=True, help="Kopf liveness endpoint.")
@click.option("--metrics-port", default=8080, show_default=True, help="Port for Prometheus /metrics.")
@click.option(
    "--metrics-host",
    default="0.0.0.0",
    show_default=True,
    help="Address for /metrics: every address in a pod (Prometheus scrapes the pod IP); 127.0.0.1 on a workstation.",
)
@click.option(
    "--leader-elect",
    is_flag=True,
    help="Run the handlers only while holding the Lease onceflow-operator (replicas > 1: one active, others standby).",
)
@click.option(
    "--lease-namespace",
    default="",
    help="Namespace of the Lease (default: $POD_NAMESPACE, else default).",
)
@click.option(
    "--lease-duration",
    type=float,
    default=15.0,
    show_default=True,
    help="Seconds a standby waits after the last renewal before it takes the Lease (failover after a crash).",
)
@click.option("--lease-renew", type=float, default=5.0, show_default=True, help="Seconds between renewals.")
@click.option("--lease-retry", type=float, default=2.0, show_default=True, help="Seconds between a standby's tries.")
def operator(
    namespaces: tuple[str, ...],
    all_namespaces: bool,
    liveness: str,
    metrics_port: int,
    metrics_host: str,
    leader_elect: bool,
    lease_namespace: str,
    lease_duration: float,
    lease_renew: float,
    lease_retry: float,
) -> None:
    """Run the operator: one replica, or several with --leader-elect (one active, failover within seconds)."""
    if not namespaces and not all_namespaces:
        raise click.UsageError("give --namespace NS (repeatable) or --all-namespaces")
    if not 0 < lease_retry < lease_renew < lease_duration:
        # A renewal slower than the lease lets a standby take it from a live leader: two active.
        raise click.UsageError(
            "--lease-retry < --lease-renew < --lease-duration, all above 0 "
            f"(given {lease_retry:g} < {lease_renew:g} < {lease_duration:g})"
        )
    from onceflow_operator.controller.election import LeaseTerms
    from onceflow_operator.controller.run import run_operator

    run_operator(
        namespaces=list(namespaces),
        all_namespaces=all_namespaces,
        liveness=liveness,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        elect=leader_elect,
        lease_namespace=lease_namespace,
        terms=LeaseTerms(duration=lease_duration, renew_every=lease_renew, retry=lease_retry),
    )
