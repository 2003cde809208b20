"""A sandbox for the systems that only receive (WMS, shop admin API, portal, accounting).

It accepts any JSON request, keeps it, answers like a typical REST API, honours
`Idempotency-Key`, and serves an OAuth2 client-credentials token endpoint. A GET lists what was
written to its path; asked for a `limit`, it pages the way Shopify does (a `Link` header).
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

    def _list(self, request: web.Request) -> web.Response:
        """What was written to this path; with `limit`, one page and a Shopify-style `Link` to the next.

        Shopify pages its Admin REST lists by cursor: `limit` rows, and a `Link: <...page_info=...>;
        rel="next"` header while more remain. Here the cursor is the offset, opaque to the caller.
        """
        rows = [b for m, p, _, b in self.received if p == request.path and m != "GET"]
        if "limit" not in request.query:
            return web.json_response({"data": rows})
        try:
            limit, start = int(request.query["limit"]), int(request.query.get("page_info", "0"))
        except ValueError:
            return web.json_response({"errors": "limit and page_info must be numbers"}, status=400)
        if not 1 <= limit <= 250 or start < 0:
            return web.json_response({"errors": "limit must be between 1 and 250"}, status=400)
        headers = {}
        if start + limit < len(rows):
            following = request.url.with_query({"limit": str(limit), "page_info": str(start + limit)})
            headers["Link"] = f'<{following}>; rel="next"'
        return web.json_response({"data": rows[start : start + limit]}, headers=headers)

    async def _any(self, request: web.Request) -> web.Response:
        if request.method == "GET":
            return self._list(request)
        body = await self.json_body(request)

        async def write() -> tuple[int, Any]:
            self.received.append((request.method, request.path, request.headers.get("Idempotency-Key"), body))
            return 201, {"id": next(self._ids), "received": True}

        return await self.once(request, f"{request.method} {request.path}", write)
