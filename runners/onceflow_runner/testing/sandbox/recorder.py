"""A sandbox for the systems that only receive (WMS, shop admin API, portal, accounting).

It accepts any JSON request, keeps it, answers like a typical REST API, honours
`Idempotency-Key`, and serves an OAuth2 client-credentials token endpoint.
"""

from __future__ import annotations

import itertools
from typing import Any

from aiohttp import web

from onceflow_runner.testing.sandbox.base import SandboxServer

__all__ = ["RecorderSandbox"]


class RecorderSandbox(SandboxServer):
    """Records every write; `received` holds (method, path, idempotency key, body)."""

    def __init__(self, name: str = "recorder", **kw: Any) -> None:
        super().__init__(**kw)
        self.name = name
        self.received: list[tuple[str, str, str | None, Any]] = []
        self._ids = itertools.count(1)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/oauth/token", self._token)
        app.router.add_route("*", "/{tail:.*}", self._any)

    def state(self) -> dict[str, Any]:
        return {**super().state(), "received": len(self.received)}

    async def _token(self, _: web.Request) -> web.Response:
        return web.json_response(
            {"access_token": f"sandbox-{next(self._ids)}", "token_type": "Bearer", "expires_in": 3600}
        )

    async def _any(self, request: web.Request) -> web.Response:
        if request.method == "GET":
            return web.json_response({"data": [b for m, p, _, b in self.received if p == request.path and m != "GET"]})
        body = await self.json_body(request)

        async def write() -> tuple[int, Any]:
            self.received.append((request.method, request.path, request.headers.get("Idempotency-Key"), body))
            return 201, {"id": next(self._ids), "received": True}

        return await self.once(request, f"{request.method} {request.path}", write)
