"""A sandbox ERP speaking ERPNext's REST shape (SCENARIOS.md): resources, token auth, errors."""

from __future__ import annotations

import itertools
import json
from typing import Any, Literal

from aiohttp import web

from onceflow_runner.testing.sandbox.base import SandboxServer

__all__ = ["ErpSandbox"]

_SERIES = {"Customer": "CUST", "Sales Order": "SAL-ORD", "Sales Invoice": "ACC-SINV", "Delivery Note": "MAT-DN"}
_MANDATORY = {
    "Customer": ["customer_name"],
    "Sales Order": ["customer", "items"],
    "Item Price": ["item_code", "price_list", "price_list_rate"],
}


def _error(status: int, exc_type: str, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"exc_type": exc_type, "_server_messages": json.dumps([json.dumps({"message": message})])}


class ErpSandbox(SandboxServer):
    """`GET|POST /api/resource/{DocType}`, `GET|PUT /api/resource/{DocType}/{name}`."""

    name = "erp"

    def __init__(
        self,
        *,
        api_key: str = "sandbox-key",
        api_secret: str = "sandbox-secret",
        customer_naming: Literal["Customer Name", "Naming Series"] = "Customer Name",
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        #: ERPNext's Selling Settings "Customer Naming By": by name (a second create of the same
        #: name is a 409 DuplicateEntryError) or by naming series (every create is a new customer).
        self.customer_naming = customer_naming
        self.token = f"token {api_key}:{api_secret}"
        self.docs: dict[str, dict[str, dict[str, Any]]] = {}
        self._numbers = itertools.count(1)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/method/ping", self._ping)
        app.router.add_get("/api/resource/{doctype}", self._list)
        app.router.add_post("/api/resource/{doctype}", self._create)
        app.router.add_get("/api/resource/{doctype}/{name}", self._get)
        app.router.add_put("/api/resource/{doctype}/{name}", self._update)

    def seed(self, doctype: str, doc: dict[str, Any]) -> None:
        """Put an existing record in place (e.g. a customer the dedupe step must find)."""
        self.docs.setdefault(doctype, {})[str(doc["name"])] = {"doctype": doctype, "docstatus": 0, **doc}

    def state(self) -> dict[str, Any]:
        return {**super().state(), "documents": {k: len(v) for k, v in self.docs.items()}}

    def _authorised(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != self.token:
            status, body = _error(401, "AuthenticationError", "Invalid token")
            return web.json_response(body, status=status)
        return None

    async def _ping(self, request: web.Request) -> web.Response:
        return self._authorised(request) or web.json_response({"message": "pong"})

    async def _list(self, request: web.Request) -> web.Response:
        if (denied := self._authorised(request)) is not None:
            return denied
        docs = list(self.docs.get(request.match_info["doctype"], {}).values())
        try:
            filters = json.loads(request.query.get("filters", "[]"))
            fields = json.loads(request.query.get("fields", '["name"]'))
        except ValueError:
            status, body = _error(417, "ValidationError", "filters and fields must be JSON")
            return web.json_response(body, status=status)
        if isinstance(filters, dict):
            filters = [[k, "=", v] for k, v in filters.items()]
        for field, op, value in filters:
            if op == "=":
                docs = [d for d in docs if d.get(field) == value]
            elif op == "like":
                needle = str(value).strip("%").lower()
                docs = [d for d in docs if needle in str(d.get(field, "")).lower()]
        rows = [d if fields == ["*"] else {f: d.get(f) for f in fields} for d in docs]
        return web.json_response({"data": rows})

    async def _get(self, request: web.Request) -> web.Response:
        if (denied := self._authorised(request)) is not None:
            return denied
        doctype, name = request.match_info["doctype"], request.match_info["name"]
        doc = self.docs.get(doctype, {}).get(name)
        if doc is None:
            status, body = _error(404, "DoesNotExistError", f"{doctype} {name} not found")
            return web.json_response(body, status=status)
        return web.json_response({"data": doc})

    async def _create(self, request: web.Request) -> web.Response:
        if (denied := self._authorised(request)) is not None:
            return denied
        doctype = request.match_info["doctype"]
        payload = await self.json_body(request)

        async def create() -> tuple[int, Any]:
            if not isinstance(payload, dict):
                return _error(417, "ValidationError", "body must be a JSON object")
            missing = [f for f in _MANDATORY.get(doctype, []) if not payload.get(f)]
            if missing:
                return _error(417, "ValidationError", f"{doctype}: {', '.join(missing)} is mandatory")
            name = (
                str(payload["customer_name"])
                if doctype == "Customer" and self.customer_naming == "Customer Name"
                else (f"{_SERIES.get(doctype, doctype.upper()[:6])}-{next(self._numbers):05d}")
            )
            if name in self.docs.get(doctype, {}):
                return _error(409, "DuplicateEntryError", f"{doctype} {name} already exists")
            doc = {"name": name, "doctype": doctype, "docstatus": 0, **payload}
            self.docs.setdefault(doctype, {})[name] = doc
            return 200, {"data": doc}

        return await self.once(
            request, f"{doctype}/{payload.get('name', '') if isinstance(payload, dict) else ''}", create
        )

    async def _update(self, request: web.Request) -> web.Response:
        if (denied := self._authorised(request)) is not None:
            return denied
        doctype, name = request.match_info["doctype"], request.match_info["name"]
        payload = await self.json_body(request)

        async def update() -> tuple[int, Any]:
            doc = self.docs.get(doctype, {}).get(name)
            if doc is None:
                return _error(404, "DoesNotExistError", f"{doctype} {name} not found")
            if not isinstance(payload, dict):
                return _error(417, "ValidationError", "body must be a JSON object")
            doc.update(payload)
            return 200, {"data": doc}

        return await self.once(request, f"{doctype}/{name}", update)
