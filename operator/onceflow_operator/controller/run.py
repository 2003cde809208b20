"""Start the operator process: metrics server, the registered handlers, Kopf's loop.

The CLI calls `run_operator`; this keeps kopf an import of the controller package alone. With
`elect`, the process first waits for the Lease (`controller.election`) and runs the handlers only
while it holds it; a standby answers its liveness probe meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from urllib.parse import urlsplit

import kopf
from aiohttp import web
from prometheus_client import start_http_server

from onceflow_operator.clients.accounts import AccountError, AccountSettings
from onceflow_operator.clients.topology import TopologyError, TopologySettings
from onceflow_operator.controller import handlers  # noqa: F401  (importing it registers the handlers)
from onceflow_operator.controller.election import LeaderElection, LeaseTerms
from onceflow_operator.controller.identity import IdentityError, NamespaceIdentities

__all__ = ["LEASE_NAME", "run_operator"]

#: The Lease the replicas of one installation compete for, in the operator's namespace.
LEASE_NAME = "onceflow-operator"
log = logging.getLogger("onceflow.operator")


def run_operator(
    *,
    namespaces: list[str],
    all_namespaces: bool,
    liveness: str,
    metrics_port: int,
    metrics_host: str = "0.0.0.0",
    elect: bool = False,
    lease_namespace: str = "",
    identity: str = "",
    terms: LeaseTerms | None = None,
) -> None:
    """Serve /metrics on `metrics_host` (127.0.0.1 for the embedded system), then run the handlers until stopped."""
    try:  # read here so that a bad NATS setting is one line at start, not a traceback in a handler
        TopologySettings.from_environment()
        NamespaceIdentities.from_environment()
        AccountSettings.from_environment()
    except (TopologyError, IdentityError, AccountError) as exc:
        sys.exit(f"error: {exc}")
    start_http_server(metrics_port, addr=metrics_host)
    if not elect:
        kopf.run(standalone=True, clusterwide=all_namespaces, namespaces=namespaces, liveness_endpoint=liveness)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    lost = asyncio.run(
        _run_elected(
            namespaces=namespaces,
            all_namespaces=all_namespaces,
            liveness=liveness,
            lease_namespace=lease_namespace or os.environ.get("POD_NAMESPACE", "") or "default",
            identity=identity or os.environ.get("POD_NAME", "") or f"{socket.gethostname()}-{os.getpid()}",
            terms=terms or LeaseTerms(),
        )
    )
    if lost:
        sys.exit(1)  # the Deployment starts it again, as a standby


async def _standby_liveness(liveness: str) -> web.AppRunner:
    """Answer the liveness probe while waiting for the Lease (Kopf's own endpoint starts with the handlers)."""
    url = urlsplit(liveness)
    app = web.Application()

    async def alive(_: web.Request) -> web.Response:
        return web.json_response({"standby": True})

    app.router.add_get(url.path or "/", alive)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, url.hostname or "0.0.0.0", url.port or 80).start()
    return runner


async def _run_elected(
    *,
    namespaces: list[str],
    all_namespaces: bool,
    liveness: str,
    lease_namespace: str,
    identity: str,
    terms: LeaseTerms,
) -> bool:
    """Wait for the Lease, run the handlers while it is held; True when it was lost (not a clean stop)."""
    from onceflow_operator.clients.kube import KubeClient

    kube = KubeClient.from_environment()
    election = LeaderElection(kube, lease_namespace, LEASE_NAME, identity, terms)
    stop = asyncio.Event()
    try:
        standby = await _standby_liveness(liveness)
        log.info("%s waits for the lease %s/%s", identity, lease_namespace, LEASE_NAME)
        try:
            await election.acquire()
        finally:
            await standby.cleanup()
        log.info("%s holds the lease %s/%s: running the handlers", identity, lease_namespace, LEASE_NAME)
        keeping = asyncio.create_task(election.keep(stop))
        try:
            await kopf.operator(
                standalone=True,
                clusterwide=all_namespaces,
                namespaces=namespaces,
                liveness_endpoint=liveness,
                stop_flag=stop,
            )
        finally:
            stop.set()
            await keeping
            if not election.lost:
                await election.release()
        return election.lost
    finally:
        await kube.close()
