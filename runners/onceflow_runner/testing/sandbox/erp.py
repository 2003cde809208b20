"""A sandbox ERP speaking ERPNext's REST shape (SCENARIOS.md): resources, token auth, errors.

It lists the way Frappe's `GET /api/resource/{DocType}` does, which is less friendly than a test
would like: 20 rows unless `limit_page_length` asks for more (0 means all), `limit_start` to page,
newest change first (`order_by` defaults to `modified desc`, so rows move between pages while
something writes), only `name` unless `fields` asks, `filters` as `[[field, op, value]]` or a dict
(all must hold), `or_filters` in the same forms (one must hold), and drafts, submitted and
cancelled documents (`docstatus` 0, 1, 2) all in one list.

Two modes make it as awkward as real ERPs are, so tests exercise what real systems need:

- `auth="session"`: calls need a session from a login call, as Frappe (`POST /api/method/login`
  with `usr`/`pwd`, `sid` cookie) and SAP Business One Service Layer (`POST /b1s/v1/Login` with
  `CompanyDB`/`UserName`/`Password`, answering `SessionId`, `SessionTimeout` in minutes and the
  `B1SESSION` and `ROUTEID` cookies) do it. A session ends after `session_seconds` or after
  `session_calls` calls, and then every call with it is answered 401 (the JSON-RPC endpoint
  answers HTTP 200 with Odoo's SessionExpiredException, as Odoo does). `logins` counts logins.
- `POST /jsonrpc`: a JSON-RPC endpoint in Odoo's style (methods `res.partner.create` and
  `res.partner.search_read`): always HTTP 200; failures are an `error` member (JSON-RPC 2.0 when
  the request says `"jsonrpc": "2.0"`, else 1.0 with `result` and `error` both present, one null).
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from aiohttp import web

from onceflow_runner.testing.sandbox.base import SandboxServer

__all__ = ["ErpSandbox"]

_SERIES = {"Customer": "CUST", "Sales Order": "SAL-ORD", "Sales Invoice": "ACC-SINV", "Delivery Note": "MAT-DN"}
#: Doctypes with a draft -> submitted -> cancelled life (docstatus 0 -> 1 -> 2); others stay 0.
SUBMITTABLE = frozenset({"Sales Order", "Sales Invoice", "Delivery Note", "Purchase Order", "Purchase Invoice"})
_DEFAULT_PAGE_LENGTH = 20
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
_MANDATORY = {
    "Customer": ["customer_name"],
    "Sales Order": ["customer", "items"],
    "Item Price": ["item_code", "price_list", "price_list_rate"],
}


@dataclass
class _Session:
    started: float
    calls: int = 0


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
        auth: Literal["token", "session"] = "token",
        username: str = "integration@example.com",
        password: str = "sandbox-password",
        company: str = "SBODEMOUS",
        session_seconds: float | None = None,
        session_calls: int | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        #: token: `Authorization: token key:secret` only; session: a login's session cookie only.
        self.auth = auth
        self.username, self.password, self.company = username, password, company
        self.session_seconds, self.session_calls = session_seconds, session_calls
        self.sessions: dict[str, _Session] = {}
        #: Logins answered with a session, and logins refused.
        self.logins = 0
        self.refused_logins = 0
        #: Calls answered 401 (or SessionExpiredException) because their session had ended.
        self.expired_answers = 0
        #: Sessions that ended by age or use (each should cost a client one new login, no more).
        self.sessions_ended = 0
        #: Every session id handed out, so a test can look for them where they must not be (logs).
        self.issued_sessions: list[str] = []
        #: ERPNext's Selling Settings "Customer Naming By": by name (a second create of the same
        #: name is a 409 DuplicateEntryError) or by naming series (every create is a new customer).
        self.customer_naming = customer_naming
        self.token = f"token {api_key}:{api_secret}"
        self.docs: dict[str, dict[str, dict[str, Any]]] = {}
        self._numbers = itertools.count(1)
        #: Where `creation` and `modified` come from; a test may set its own clock.
        self.clock: Callable[[], datetime] = datetime.now

    def timestamp(self) -> str:
        """Now in Frappe's format (server local time, microseconds), which sorts as text."""
        return self.clock().strftime("%Y-%m-%d %H:%M:%S.%f")

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/api/method/login", self._frappe_login)
        app.router.add_post("/b1s/v1/Login", self._b1_login)
        app.router.add_post("/jsonrpc", self._jsonrpc)
        app.router.add_get("/api/method/ping", self._ping)
        app.router.add_get("/api/resource/{doctype}", self._list)
        app.router.add_post("/api/resource/{doctype}", self._create)
        app.router.add_get("/api/resource/{doctype}/{name}", self._get)
        app.router.add_put("/api/resource/{doctype}/{name}", self._update)

    def seed(self, doctype: str, doc: dict[str, Any]) -> None:
        """Put an existing record in place (e.g. a customer the dedupe step must find)."""
        now = self.timestamp()
        self.docs.setdefault(doctype, {})[str(doc["name"])] = {
            "doctype": doctype,
            "docstatus": 0,
            "creation": now,
            "modified": now,
            **doc,
        }

    def touch(self, doctype: str, name: str, **changes: Any) -> dict[str, Any]:
        """Change a document as a user in the ERP would: its `modified` moves to now."""
        doc = self.docs[doctype][name]
        doc.update(changes, modified=self.timestamp())
        return doc

    def state(self) -> dict[str, Any]:
        return {
            **super().state(),
            "documents": {k: len(v) for k, v in self.docs.items()},
            "logins": self.logins,
            "refusedLogins": self.refused_logins,
            "expiredAnswers": self.expired_answers,
            "sessionsEnded": self.sessions_ended,
        }

    def expire_sessions(self) -> None:
        """End every session now, as a restart of the ERP or an administrator would."""
        self.sessions.clear()

    def _session_state(self, request: web.Request) -> Literal["valid", "expired", "none"]:
        """Whether the request's session cookie (sid or B1SESSION) is live; counts the call against it."""
        sid = request.cookies.get("sid") or request.cookies.get("B1SESSION")
        session = self.sessions.get(sid or "")
        if session is None:
            return "expired" if sid else "none"
        session.calls += 1
        too_old = self.session_seconds is not None and time.monotonic() - session.started > self.session_seconds
        too_used = self.session_calls is not None and session.calls > self.session_calls
        if too_old or too_used:
            del self.sessions[sid or ""]
            self.sessions_ended += 1
            return "expired"
        return "valid"

    def _authorised(self, request: web.Request) -> web.Response | None:
        if self.auth == "session":
            state = self._session_state(request)
            if state == "valid":
                return None
            if state == "expired":
                self.expired_answers += 1
            status, body = _error(401, "AuthenticationError", "Session expired or invalid; log in again")
            # Frappe answers an HTML page to a browser; API clients get JSON with the same status.
            return web.json_response(body, status=status)
        if request.headers.get("Authorization") != self.token:
            status, body = _error(401, "AuthenticationError", "Invalid token")
            return web.json_response(body, status=status)
        return None

    def _new_session(self) -> str:
        self.logins += 1
        sid = secrets.token_hex(16)
        self.issued_sessions.append(sid)
        self.sessions[sid] = _Session(started=time.monotonic())
        return sid

    async def _frappe_login(self, request: web.Request) -> web.Response:
        """Frappe: POST /api/method/login {usr, pwd} -> `sid` cookie; a wrong password is a 401."""
        payload = await self.json_body(request)
        if not isinstance(payload, dict) or (payload.get("usr"), payload.get("pwd")) != (self.username, self.password):
            self.refused_logins += 1
            return web.json_response({"message": "Incorrect password", "exc_type": "AuthenticationError"}, status=401)
        resp = web.json_response({"message": "Logged In", "home_page": "/app", "full_name": "Integration User"})
        resp.set_cookie("sid", self._new_session(), path="/", httponly=True)
        resp.set_cookie("full_name", "Integration%20User", path="/")
        return resp

    async def _b1_login(self, request: web.Request) -> web.Response:
        """SAP Business One Service Layer: POST /b1s/v1/Login -> SessionId, SessionTimeout (minutes), cookies."""
        payload = await self.json_body(request)
        given = (
            (payload.get("CompanyDB"), payload.get("UserName"), payload.get("Password"))
            if isinstance(payload, dict)
            else None
        )
        if given != (self.company, self.username, self.password):
            self.refused_logins += 1
            body = {"error": {"code": -304, "message": {"lang": "en-us", "value": "Fail to get DB Credentials"}}}
            return web.json_response(body, status=401)
        sid = self._new_session()
        minutes = max(1, round((self.session_seconds or 1800) / 60))
        resp = web.json_response({"odata.metadata": "$metadata#B1Sessions/@Element", "SessionId": sid,
                                  "Version": "1000190", "SessionTimeout": minutes})  # fmt: skip
        resp.set_cookie("B1SESSION", sid, path="/b1s/v1", httponly=True)
        resp.set_cookie("ROUTEID", ".node1", path="/b1s")
        return resp

    async def _jsonrpc(self, request: web.Request) -> web.Response:
        """Odoo-style JSON-RPC: HTTP 200 always; an `error` member says what went wrong."""
        payload = await self.json_body(request)
        call = payload if isinstance(payload, dict) else {}
        v2 = call.get("jsonrpc") == "2.0"

        def answer(result: Any = None, error: dict[str, Any] | None = None) -> tuple[int, Any]:
            if v2:
                body = {"jsonrpc": "2.0", "id": call.get("id")}
                body.update({"error": error} if error is not None else {"result": result})
                return 200, body
            return 200, {"id": call.get("id"), "result": None if error is not None else result, "error": error}

        def odoo_error(name: str, message: str, code: int = 200) -> dict[str, Any]:
            return {
                "code": code,
                "message": "Odoo Session Expired" if code == 100 else "Odoo Server Error",
                "data": {"name": name, "message": message, "arguments": [message],
                         "debug": "Traceback (most recent call last):\n  ...\n" + name + ": " + message},
            }  # fmt: skip

        if self.auth == "session" and self._session_state(request) != "valid":
            self.expired_answers += 1
            status, body = answer(error=odoo_error("odoo.http.SessionExpiredException", "Session expired", 100))
            return web.json_response(body, status=status)
        if self.auth == "token" and request.headers.get("Authorization") != self.token:
            status, body = answer(error=odoo_error("odoo.exceptions.AccessDenied", "Access Denied"))
            return web.json_response(body, status=status)
        method, params = call.get("method"), call.get("params")
        if not isinstance(params, dict):
            params = {}
        if method == "res.partner.search_read":
            docs = list(self.docs.get("Customer", {}).values())
            for field, _, value in params.get("domain") or []:
                docs = [d for d in docs if d.get(field) == value]
            status, body = answer(result=docs)
            return web.json_response(body, status=status)
        if method != "res.partner.create":
            status, body = answer(error={"code": -32601, "message": f"Method not found: {method}"})
            return web.json_response(body, status=status)
        values = params.get("values")

        async def create() -> tuple[int, Any]:
            if not isinstance(values, dict) or not values.get("name"):
                return answer(error=odoo_error("odoo.exceptions.ValidationError", "The partner's name is mandatory"))
            name = str(values["name"])
            if name in self.docs.get("Customer", {}):
                return answer(
                    error=odoo_error("odoo.exceptions.ValidationError", f"A partner named {name} already exists")
                )
            number = next(self._numbers)
            doc = {"name": name, "customer_name": name, "doctype": "Customer", "docstatus": 0, "id": number, **values}
            self.docs.setdefault("Customer", {})[name] = doc
            return answer(result=number)

        key_name = values.get("name", "") if isinstance(values, dict) else ""
        return await self.once(
            request, f"jsonrpc/{key_name}", create, is_effect=lambda _, body: body.get("error") is None
        )

    async def _ping(self, request: web.Request) -> web.Response:
        return self._authorised(request) or web.json_response({"message": "pong"})

    async def _list(self, request: web.Request) -> web.Response:
        if (denied := self._authorised(request)) is not None:
            return denied
        try:
            rows = list_documents(
                list(self.docs.get(request.match_info["doctype"], {}).values()),
                filters=json.loads(request.query.get("filters", "[]")),
                or_filters=json.loads(request.query.get("or_filters", "[]")),
                fields=json.loads(request.query.get("fields", '["name"]')),
                order_by=request.query.get("order_by", "modified desc"),
                start=int(request.query.get("limit_start", "0")),
                length=int(request.query.get("limit_page_length", request.query.get("limit", _DEFAULT_PAGE_LENGTH))),
            )
        except (ValueError, TypeError) as exc:
            status, body = _error(417, "DataError", str(exc) or "filters and fields must be JSON")
            return web.json_response(body, status=status)
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
            docstatus = payload.get("docstatus", 0)
            if docstatus not in (0, 1) or (docstatus == 1 and doctype not in SUBMITTABLE):
                return _error(417, "ValidationError", f"{doctype}: docstatus {docstatus!r} cannot be set on insert")
            now = self.timestamp()
            doc = {
                "name": name,
                **payload,
                "doctype": doctype,
                "docstatus": docstatus,
                "creation": now,
                "modified": now,
            }
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
            if (refused := _docstatus_refusal(doctype, doc, payload)) is not None:
                return refused
            doc.update(payload, modified=self.timestamp())
            return 200, {"data": doc}

        return await self.once(request, f"{doctype}/{name}", update)


def _docstatus_refusal(doctype: str, doc: dict[str, Any], payload: dict[str, Any]) -> tuple[int, Any] | None:
    """Frappe's document life: drafts change freely; submitted ones only get cancelled; cancelled, never."""
    current, wanted = doc.get("docstatus", 0), payload.get("docstatus", doc.get("docstatus", 0))
    if current == 2:
        return _error(417, "ValidationError", f"Cannot edit cancelled document {doctype} {doc['name']}")
    if wanted not in (0, 1, 2) or (wanted != 0 and doctype not in SUBMITTABLE) or (current, wanted) in ((0, 2), (1, 0)):
        return _error(
            417, "ValidationError", f"{doctype} {doc['name']}: docstatus cannot go from {current} to {wanted!r}"
        )
    changed = sorted(k for k, v in payload.items() if k != "docstatus" and doc.get(k) != v)
    if current == 1 and changed:
        return _error(417, "UpdateAfterSubmitError", f"Not allowed to change {changed[0]} after submission")
    return None


def _folded(value: Any) -> Any:
    """Strings compare as MariaDB's default collation does: without regard to case."""
    return value.casefold() if isinstance(value, str) else value


def _ordered(value: Any) -> tuple[int, Any]:
    """A sort key where NULL comes first (as in SQL ascending order) and numbers sort as numbers."""
    if value is None:
        return (0, 0)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (1, value)
    if isinstance(value, str) and _DATE.match(value):
        try:
            return (3, datetime.fromisoformat(value))  # dates compare as dates, as in the database
        except ValueError:
            pass
    return (2, str(value).casefold())


def _like(pattern: Any) -> re.Pattern[str]:
    parts = (".*" if c == "%" else "." if c == "_" else re.escape(c) for c in str(pattern))
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def _members(value: Any) -> list[Any]:
    items = value if isinstance(value, list) else str(value).split(",")
    return [_folded(v.strip() if isinstance(v, str) else v) for v in items]


def _compare(left: Any, op: str, right: Any) -> bool:
    """One Frappe filter condition on one document's value."""
    if op == "=":
        return left is not None and bool(_folded(left) == _folded(right))
    if op == "!=":
        return bool(_folded("" if left is None else left) != _folded(right))
    if op in ("like", "not like"):
        found = left is not None and _like(right).fullmatch(str(left)) is not None
        return found if op == "like" else not found
    if op in ("in", "not in"):
        inside = left is not None and _folded(left) in _members(right)
        return inside if op == "in" else not inside
    if op == "is":
        if str(right) not in ("set", "not set"):
            raise ValueError(f"the operator is takes 'set' or 'not set', not {right!r}")
        present = left not in (None, "")
        return present if right == "set" else not present
    if op == "between":
        if not isinstance(right, list) or len(right) != 2:
            raise ValueError("the operator between takes a list of two values")
        return left is not None and _ordered(right[0]) <= _ordered(left) <= _ordered(right[1])
    if op in (">", "<", ">=", "<="):
        if left is None:
            return False
        a, b = _ordered(left), _ordered(right)
        return {">": a > b, "<": a < b, ">=": a >= b, "<=": a <= b}[op]
    raise ValueError(f"Operator must be one of =, !=, >, <, >=, <=, like, not like, in, not in, is, between: {op!r}")


def _conditions(filters: Any) -> list[tuple[str, str, Any]]:
    """Frappe's filter forms: a dict {field: value | [op, value]} or a list of [field, op, value]."""
    if isinstance(filters, dict):
        return [(k, *v) if isinstance(v, list) and len(v) == 2 else (k, "=", v) for k, v in filters.items()]
    if not isinstance(filters, list):
        raise ValueError("filters must be a JSON list or object")
    found = []
    for condition in filters:
        if isinstance(condition, list) and len(condition) == 4:  # [doctype, field, op, value]
            condition = condition[1:]
        if not isinstance(condition, list) or len(condition) != 3:
            raise ValueError(f"a filter is [field, operator, value], not {condition!r}")
        found.append((str(condition[0]), str(condition[1]).lower(), condition[2]))
    return found


def _permitted(field: str) -> str:
    if not _FIELD.match(field):
        raise ValueError(f"Field not permitted in query: {field}")
    return field


def list_documents(
    docs: list[dict[str, Any]],
    *,
    filters: Any,
    fields: Any,
    order_by: str,
    start: int,
    length: int,
    or_filters: Any = (),
) -> list[dict[str, Any]]:
    """One page of `GET /api/resource/{DocType}`, as Frappe's `get_list` answers it.

    `filters` must all hold; of `or_filters`, at least one (when there are any), as Frappe joins
    them: `filters AND (or_filter OR or_filter ...)`.
    """
    if start < 0 or length < 0:
        raise ValueError("limit_start and limit_page_length must not be negative")
    for field, op, value in _conditions(filters):
        docs = [d for d in docs if _compare(d.get(_permitted(field)), op, value)]
    alternatives = _conditions(list(or_filters) if isinstance(or_filters, tuple) else or_filters)
    if alternatives:
        docs = [d for d in docs if any(_compare(d.get(_permitted(f)), op, v) for f, op, v in alternatives)]
    for clause in reversed([c.strip() for c in order_by.split(",") if c.strip()]):
        field, _, direction = clause.partition(" ")
        if direction.strip().lower() not in ("", "asc", "desc"):
            raise ValueError(f"order_by: {clause!r} is not '<field> asc|desc'")
        docs = sorted(
            docs, key=lambda d: _ordered(d.get(_permitted(field))), reverse=direction.strip().lower() == "desc"
        )
    page = docs[start : start + length] if length else docs[start:]
    if fields == ["*"] or fields == "*":
        return [dict(d) for d in page]
    if not isinstance(fields, list):
        raise ValueError("fields must be a JSON list")
    return [{f: d.get(_permitted(str(f))) for f in fields} for d in page]
