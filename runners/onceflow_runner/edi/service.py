"""The `onceflow edi-inbound` process: the poller plus /healthz, /readyz and /metrics for its pod.

Readiness tells an SRE (and the Connector's Ready condition, through the Deployment) whether the
partner's files are moving: not ready until the first pass over the SFTP folders worked, and not
ready, with the reason in one line, while the server cannot be reached or refuses us. Liveness
fails only when the NATS connection is closed for good, which a restart fixes.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from aiohttp import web
from nats.aio.client import Client
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from onceflow_runner.adapters import natsio
from onceflow_runner.contract.edi import EdiPartnerPlan
from onceflow_runner.edi.poller import EdiInbound

__all__ = ["EdiService"]

log = logging.getLogger("onceflow.edi")


class EdiService:
    """One partner's poller with its operations endpoints."""

    def __init__(self, plan: EdiPartnerPlan, *, nats_url: str, secrets_dir: Path, host: str, port: int) -> None:
        self.plan, self.nats_url, self.secrets_dir = plan, nats_url, secrets_dir
        self.host, self.port = host, port
        self.nc: Client | None = None
        self.poller: EdiInbound | None = None
        self._operations: web.AppRunner | None = None

    def not_ready_reason(self) -> str | None:
        """Why files are not moving now, in one line; None when they are."""
        if self.nc is None or not self.nc.is_connected:
            return "NATS not connected"
        if self.poller is None or self.poller.passes == 0:
            return "first pass over the SFTP folders not done yet"
        return self.poller.last_error

    async def healthz(self, _: web.Request) -> web.Response:
        if self.nc is not None and self.nc.is_closed:
            return web.Response(status=500, text="NATS connection closed")
        return web.Response(text="ok")

    async def readyz(self, _: web.Request) -> web.Response:
        reason = self.not_ready_reason()
        return web.Response(status=503 if reason else 200, text=reason or "ready")

    async def metrics(self, _: web.Request) -> web.Response:
        body = generate_latest(self.poller.metrics.registry) if self.poller is not None else b""
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def run(self, stop: asyncio.Event) -> None:
        """Serve the operations endpoints and poll until `stop` is set."""
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics)
        self._operations = web.AppRunner(app, access_log=None)
        await self._operations.setup()
        site = web.TCPSite(self._operations, self.host, self.port)
        await site.start()
        try:
            self.nc = await natsio.connect(self.nats_url, name=f"onceflow-edi/{self.plan.connector}")
            self.poller = EdiInbound(self.plan, nc=self.nc, secrets_dir=self.secrets_dir)
            log.info(
                "edi inbound polling",
                extra={"connector": self.plan.connector, "sftp": f"{self.plan.sftp.host}:{self.plan.sftp.port}"},
            )
            await self.poller.run(stop)
        finally:
            if self.nc is not None:
                await self.nc.drain()
            await self._operations.cleanup()
