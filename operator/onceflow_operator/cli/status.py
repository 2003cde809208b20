"""`onceflow status`: one row per Connector, Integration and SyncPolicy, read from the Kubernetes API."""

from __future__ import annotations

from typing import Any

import click

from onceflow_operator.cli.output import emit_rows, kubeconfig_option, output_option

__all__ = ["status"]


@click.command()
@click.option("-n", "--namespace", default=None, help="Namespace (default: all namespaces).")
@output_option
@kubeconfig_option
def status(namespace: str | None, output: str, kubeconfig: str | None) -> None:
    """Every Connector, Integration and SyncPolicy: Ready, revision, rollout, business figures."""
    import asyncio

    from onceflow_operator.clients.kube import KubeClient

    async def collect() -> list[dict[str, Any]]:
        kube = KubeClient.from_environment(kubeconfig)
        rows = []
        try:
            for kind in ("Connector", "Integration", "SyncPolicy"):
                for obj in await kube.list("onceflow.io/v1alpha1", kind, namespace):
                    st = obj.get("status") or {}
                    ready: dict[str, Any] = next((c for c in st.get("conditions", []) if c["type"] == "Ready"), {})
                    figures = st.get("figures") or {}
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
                        }
                    )
        finally:
            await kube.close()
        return rows

    emit_rows(
        asyncio.run(collect()),
        output,
        [
            "kind",
            "namespace",
            "name",
            "ready",
            "reason",
            "revision",
            "phase",
            "processed",
            "failed",
            "exceptions",
            "waiting",
            "deadLettered",
            "lag",
            "drift",
        ],
    )
