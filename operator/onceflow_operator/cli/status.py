"""`onceflow status`: one row per Connector, Integration and SyncPolicy, read from the Kubernetes API."""

from __future__ import annotations

from typing import Any

import click

from onceflow_operator.cli.cluster import Cluster, all_namespaces_option, cluster_options
from onceflow_operator.cli.output import emit_rows, output_option

__all__ = ["status"]


@click.command()
@cluster_options
@all_namespaces_option
@output_option
def status(cluster: Cluster, all_namespaces: bool, output: str) -> None:
    """Every Connector, Integration and SyncPolicy of the namespace (or of all, with -A).

    Ready, revision, rollout phase and business figures; `-o wide` adds the canary weight, a
    schedule trigger's watermark and failed polls, and the Ready message.
    """
    namespace = None if all_namespaces else cluster.namespace

    async def collect(kube: Any) -> list[dict[str, Any]]:
        rows = []
        for kind in ("Connector", "Integration", "SyncPolicy"):
            for obj in await kube.list("onceflow.io/v1alpha1", kind, namespace):
                st = obj.get("status") or {}
                ready: dict[str, Any] = next((c for c in st.get("conditions", []) if c["type"] == "Ready"), {})
                figures = st.get("figures") or {}
                polled = figures.get("poll") or {}
                rows.append(
                    {
                        "kind": kind,
                        "namespace": obj["metadata"]["namespace"],
                        "name": obj["metadata"]["name"],
                        "ready": ready.get("status", "Unknown"),
                        "reason": ready.get("reason", ""),
                        "revision": st.get("revision", ""),
                        "phase": st.get("phase", ""),
                        "weight": st.get("canaryWeight", ""),
                        "processed": figures.get("processed", ""),
                        "failed": figures.get("failed", ""),
                        "exceptions": figures.get("exceptions", ""),
                        "waiting": figures.get("exceptionsWaiting", ""),
                        "deadLettered": figures.get("deadLettered", ""),
                        "lag": figures.get("consumerLag", ""),
                        "drift": (st.get("drift") or {}).get("total", ""),
                        "watermark": polled.get("watermark", ""),
                        "pollErrors": polled.get("errors", ""),
                        "message": ready.get("message", ""),
                    }
                )
        return rows

    # NAMESPACE first with -A, as `kubectl get -A` prints it.
    columns = [*(["namespace"] if all_namespaces else []), "kind", "name", "ready", "reason", "revision", "phase"]
    figures = ["processed", "failed", "exceptions", "waiting", "deadLettered", "lag", "drift"]
    emit_rows(cluster.run(collect), output, [*columns, *figures], ["weight", "watermark", "pollErrors", "message"])
