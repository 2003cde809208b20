"""`onceflow rollout`: see an Integration's rollout (status, history) and steer it (promote, abort, ...).

The text comes from `rollout_text` (pure); the verbs are an annotation the operator consumes.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from onceflow_operator.cli.cluster import Cluster, cluster_options
from onceflow_operator.cli.output import emit_rows, output_option

__all__ = ["rollout"]


@click.group()
def rollout() -> None:
    """See and steer an Integration's rollout: status, history, promote, abort, retry, pause, resume.

    Verbs are an annotation the operator consumes, never a spec edit, so Argo CD's self-heal
    does not undo them.
    """


async def _integration_and_revisions(
    kube: Any, namespace: str, name: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    obj = await kube.get("onceflow.io/v1alpha1", "Integration", namespace, name)
    if obj is None:
        raise click.ClickException(f"Integration {name} not found in namespace {namespace}")
    revisions = await kube.list("apps/v1", "ControllerRevision", namespace, selector=f"onceflow.io/integration={name}")
    return obj, revisions


@rollout.command("status")
@click.argument("name")
@cluster_options
@click.option("-w", "--watch", is_flag=True, help="Print again on every change until the rollout settles.")
@click.option("--timeout", default=600.0, show_default=True, help="Seconds --watch waits at most.")
def rollout_status(name: str, cluster: Cluster, watch: bool, timeout: float) -> None:
    """Revisions, weight, canary steps (✔ done, ▶ current), analysis and conditions.

    With --watch, exit 0 when Ready, 1 when the rollout is aborted or stalled, 2 on timeout.
    """
    import asyncio
    import time

    from onceflow_operator.cli.rollout_text import render_status

    namespace = cluster.namespace

    async def show(kube: Any) -> int:
        shown, deadline = "", time.monotonic() + timeout
        while True:
            obj, revisions = await _integration_and_revisions(kube, namespace, name)
            numbers = {r["metadata"]["name"]: int(r["revision"]) for r in revisions}
            text = render_status(obj, numbers)
            if text != shown:
                click.echo(("\n" if shown else "") + text)
                shown = text
            if not watch:
                return 0
            conditions = {c["type"]: c for c in (obj.get("status") or {}).get("conditions", [])}
            current = (obj.get("status") or {}).get("observedGeneration") == obj["metadata"].get("generation")
            if current and conditions.get("Ready", {}).get("status") == "True":
                return 0
            if current and "Stalled" in conditions:
                return 1
            if time.monotonic() > deadline:
                return 2
            await asyncio.sleep(1.0)

    sys.exit(cluster.run(show))


@rollout.command("history")
@click.argument("name")
@cluster_options
@output_option
def rollout_history(name: str, cluster: Cluster, output: str) -> None:
    """The Integration's revisions (ControllerRevisions), newest first."""
    from onceflow_operator.cli.rollout_text import history_rows

    namespace = cluster.namespace

    async def collect(kube: Any) -> list[dict[str, Any]]:
        obj, revisions = await _integration_and_revisions(kube, namespace, name)
        return history_rows(obj, revisions)

    emit_rows(cluster.run(collect), output, ["revision", "name", "version", "created", "status"])


def _verb(action: str, summary: str) -> None:
    @rollout.command(action, help=summary)
    @click.argument("name")
    @cluster_options
    def command(name: str, cluster: Cluster) -> None:
        from onceflow_operator.api.names import ACTION_ANNOTATION

        namespace = cluster.namespace

        async def send(kube: Any) -> None:
            from onceflow_operator.clients.kube import KubeError
            from onceflow_operator.rollout.decisions import verb_refusal

            obj = await kube.get("onceflow.io/v1alpha1", "Integration", namespace, name)
            if obj is None:
                raise click.ClickException(f"Integration {name} not found in namespace {namespace}")
            refusal = verb_refusal(action, name, obj.get("status") or {})
            if refusal is not None:
                raise click.ClickException(f"{refusal}; see `onceflow rollout status {name} -n {namespace}`")
            try:
                await kube.annotate("onceflow.io/v1alpha1", "Integration", namespace, name, {ACTION_ANNOTATION: action})
            except KubeError as exc:
                if exc.status != 404:
                    raise
                raise click.ClickException(f"Integration {name} not found in namespace {namespace}") from None

        cluster.run(send)
        click.echo(
            f"integration.onceflow.io/{name} {action} requested; "
            f"`onceflow rollout status {name} -n {namespace} -w` to follow"
        )


for _verb_name, _verb_summary in (
    ("promote", "Finish the current pause or analysis step and go on with the next."),
    ("promote-full", "Skip the remaining steps: the canary revision becomes stable now."),
    ("abort", "Stop the canary: weight 0, the stable revision serves and finishes the canary's records."),
    ("retry", "Start an aborted revision's canary again from the first step."),
    ("pause", "Hold the rollout at its current step (records keep flowing at the current weight)."),
    ("resume", "Continue a paused rollout (also re-measures an inconclusive analysis)."),
):
    _verb(_verb_name, _verb_summary)
