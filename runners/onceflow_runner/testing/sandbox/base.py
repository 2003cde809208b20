"""What every sandbox shares: an aiohttp server on loopback, fault injection, effect books."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["Fault", "SandboxServer"]


@dataclass
class Fault:
    """Answer the next `times` matching requests with `status` (and Retry-After), or slowly.

    A 2xx status only delays the real answer; a 3xx answers with `location` (default: the same
    path on https), as an http->https or session-expiry redirect would.
    """

    status: int = 503
    times: int = 1
    retry_after: float | None = None
    delay_seconds: float = 0.0
    path_prefix: str = "/"
    body: dict[str, Any] = field(default_factory=dict)
    location: str = ""


class SandboxServer:
    """Base of the sandboxes. Subclasses add their routes in `routes()`."""

    name = "sandbox"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, honour_idempotency_key: bool = True) -> None:
        self.host, self.port = host, port
        #: False: behave like most ERPs, which ignore `Idempotency-Key` (every create is a new effect,
        #: still counted under the key it carried, so a test sees the double).
        self.honour_idempotency_key = honour_idempotency_key
        self.faults: list[Fault] = []
        self.effects: Counter[str] = Counter()
        #: Wall-clock time of each key's first effect, for end-to-end latency measurements.
        self.effect_times: dict[str, float] = {}
        self.requests = 0
        self._idempotent: dict[str, tuple[int, Any]] = {}
        self._runner: web.AppRunner | None = None
        self.lock = asyncio.Lock()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        app = web.Application(middlewares=[self._faults_middleware])
        app.router.add_post("/_sandbox/faults", self._add_fault)
        app.router.add_delete("/_sandbox/faults", self._clear_faults)
        app.router.add_get("/_sandbox/state", self._state)
        app.router.add_get("/healthz", self._healthz)
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def state(self) -> dict[str, Any]:
        return {"effects": dict(self.effects), "requests": self.requests}

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _state(self, request: web.Request) -> web.Response:
        """The books; `?times=1` adds each key's first effect time, `?prefix=P` keeps keys starting with P.

        The prefix lets a benchmark poll its own run's keys without the whole ledger every time.
        """
        state = self.state()
        prefix = request.query.get("prefix")
        if prefix:
            state["effects"] = {k: n for k, n in state["effects"].items() if k.startswith(prefix)}
        if request.query.get("times"):
            times = self.effect_times
            state["effectTimes"] = {k: t for k, t in times.items() if k.startswith(prefix)} if prefix else times
        return web.json_response(state)

    async def _add_fault(self, request: web.Request) -> web.Response:
        raw = await request.json()
        fault = Fault(
            status=int(raw.get("status", 503)),
            times=int(raw.get("times", 1)),
            retry_after=raw.get("retryAfter"),
            delay_seconds=float(raw.get("delaySeconds", 0)),
            path_prefix=str(raw.get("pathPrefix", "/")),
            body=dict(raw.get("body", {})),
            location=str(raw.get("location", "")),
        )
        self.faults.append(fault)
        return web.json_response({"queued": len(self.faults)})

    async def _clear_faults(self, _: web.Request) -> web.Response:
        self.faults.clear()
        return web.json_response({"queued": 0})

    @web.middleware
    async def _faults_middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/_sandbox") or request.path == "/healthz":
            return await handler(request)  # type: ignore[no-any-return]
        self.requests += 1
        fault = next((f for f in self.faults if request.path.startswith(f.path_prefix) and f.times > 0), None)
        if fault is not None:
            fault.times -= 1
            if fault.delay_seconds:
                await asyncio.sleep(fault.delay_seconds)
            if fault.status < 300:
                return await handler(request)  # type: ignore[no-any-return]
            if fault.status < 400:
                location = fault.location or str(request.url.with_scheme("https"))
                return web.Response(status=fault.status, headers={"Location": location})
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            body = fault.body or {"exc_type": "ServiceUnavailable", "_server_messages": "injected fault"}
            return web.json_response(body, status=fault.status, headers=headers)
        return await handler(request)  # type: ignore[no-any-return]

    async def once(self, request: web.Request, effect_key: str, create: Any, *, is_effect: Any = None) -> web.Response:
        """Run `create()` once per Idempotency-Key; replays get the first answer, no new effect.

        Unless `honour_idempotency_key` is False: then every request runs `create()`. `is_effect`
        (status, body) -> bool says which answers made an effect (default: a status below 300; a
        JSON-RPC endpoint answers 200 to failures too).
        """
        key = request.headers.get("Idempotency-Key")
        async with self.lock:
            if key and self.honour_idempotency_key and key in self._idempotent:
                status, body = self._idempotent[key]
                return web.json_response(body, status=status, headers={"Idempotent-Replayed": "true"})
            status, body = await create()
            if is_effect(status, body) if is_effect is not None else status < 300:
                self.effects[key or effect_key] += 1
                self.effect_times.setdefault(key or effect_key, time.time())
                if key:
                    self._idempotent[key] = (status, body)
            return web.json_response(body, status=status)

    @staticmethod
    async def json_body(request: web.Request) -> Any:
        try:
            return json.loads(await request.read() or b"null")
        except ValueError:
            return None
