"""`onceflow console`: the review web page for the people who fix exceptions.

Plain server-rendered HTML (aiohttp, no front-end build). Who is asking comes from a fronting
OIDC proxy (`X-Forwarded-User`, `X-Forwarded-Groups`, in `--auth proxy` mode, and only from the
trusted proxy: see `console_access`) or a Kubernetes bearer token (`--auth token`:
`Authorization: Bearer`, checked with a TokenReview for the console's configured audiences).
What they may do is the cluster's own RBAC: a SubjectAccessReview on the virtual resource
`exceptions.onceflow.io` in the record's namespace, verb `get` to look and `update` to decide.
Every state change is a POST carrying a CSRF token bound to the user (keyed by a configured
secret, the same on every replica), from this origin only: the origin the browser saw, which
behind a trusted TLS-terminating proxy is its X-Forwarded-Proto/-Host.
Decisions go through `review.decide`, the same code the CLI uses (audited, resent once).
A possible duplicate shows each candidate beside the record, field by field with the agreement
level and weight, and asks whether it is the same as one of them (kept as a label for matching).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import html
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, cast

from aiohttp import web
from nats.aio.client import Client
from nats.js import JetStreamContext

from onceflow_operator.build.natsauth import Key
from onceflow_operator.clients.accounts import namespace_user_creds
from onceflow_operator.clients.kube import KubeClient, KubeError
from onceflow_operator.review.console_access import AUDIENCES_ENV, ConsoleAccess
from onceflow_operator.review.exceptions import (
    ExceptionRecord,
    ReviewError,
    StreamUnreadable,
    decide,
    get_exception,
    list_exceptions,
    with_fix,
)
from onceflow_operator.review.rbac import DECIDE_VERB, LOOK_VERB, REVIEW_GROUP, REVIEW_RESOURCE
from onceflow_runner.adapters import natsio
from onceflow_runner.contract.messages import REVIEW_ACTIONS, MatchVerdict, ReviewAction
from onceflow_runner.contract.timestamps import parse_time

__all__ = ["Console", "Identity", "suggestion"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Identity:
    """The person behind a request, as the cluster knows them."""

    user: str
    groups: tuple[str, ...] = ()


IDENTITY = web.RequestKey("identity", Identity)


def suggestion(record: ExceptionRecord) -> str:
    """A plain-words reading of why the record stopped and what usually fixes it. Shown, never applied."""
    reason, error = record.reason, record.error
    if reason == "ApprovalRequired" and record.candidates:
        return (
            "Possible duplicate: compare the record with the candidates below, field by field. If it is one "
            "of them, say which (Same as candidate N: it is rejected); if it is a different business, say so "
            "(Not the same as any: it is approved and created)."
        )
    if reason == "ApprovalRequired":
        return "The workflow asks a person to approve this record before it continues."
    if reason == "InvalidRecord":
        return f"The data broke a rule: {error}. Correct the field (Edit and retry) or fix it in the source system."
    if reason == "RejectedByTarget":
        return f"The target system refused the record ({error}). Check the mapping and the target's required fields."
    if reason == "MalformedInput":
        return "The sender's payload could not be read; ask the sender to resend it, or discard it."
    if reason == "ExpressionBudgetExceeded":
        return (
            "A rule or mapping took too long (or too much memory) on this record, which is unusually large. "
            "Ask whoever owns the workflow to simplify the expression or raise spec.expressionTimeout, then Retry."
        )
    if reason == "MaxDeliveriesExceeded":
        return "A target kept failing. Once it works again, Retry sends the record through once more."
    return f"{reason}: {error}"


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:0;color:#1b1f24}"
    "header{background:#12344d;color:#fff;padding:.6rem 1rem;display:flex;justify-content:space-between}"
    "main{padding:1rem;max-width:72rem}"
    "table{border-collapse:collapse;width:100%}"
    "td,th{border-bottom:1px solid #ddd;padding:.35rem;text-align:left;vertical-align:top}"
    "pre,textarea{background:#f6f8fa;padding:.6rem;font:13px/1.4 ui-monospace,monospace;width:100%;"
    "box-sizing:border-box}"
    ".note{background:#fff8c5;padding:.6rem;border-left:4px solid #d4a72c}"
    ".ok{background:#dafbe1;padding:.6rem}"
    ".err{background:#ffebe9;padding:.6rem}"
    "button{margin:.2rem .4rem .2rem 0;padding:.35rem .8rem}"
    ".side{display:flex;gap:1rem}"
    ".side>div{flex:1}"
    ".candidate{border:1px solid #ddd;padding:.4rem .8rem;margin:.6rem 0}"
)


_POLICY = "default-src 'self'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"


def _page(title: str, body: str, who: Identity | None) -> web.Response:
    user = f"<span class=who>{html.escape(who.user)}</span>" if who else ""
    text = f"""<!doctype html>
<html lang=en><head><meta charset=utf-8><title>{html.escape(title)} · Onceflow review</title>
<meta name=viewport content="width=device-width, initial-scale=1">
<style>{_CSS}</style></head><body><header><strong>Onceflow · exceptions</strong>{user}</header><main>
<h1>{html.escape(title)}</h1>{body}</main></body></html>"""
    return web.Response(
        text=text,
        content_type="text/html",
        headers={"Content-Security-Policy": _POLICY},
    )


def _age(stamp: str) -> str:
    then = parse_time(stamp)
    if then is None:
        return ""
    seconds = int((datetime.now(UTC) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _verdict(value: str) -> tuple[MatchVerdict | None, int | None]:
    """The duplicate verdict a button sent: "same:<index>", "notSame", or nothing; 400 when it is neither."""
    if not value:
        return None, None
    if value == "notSame":
        return "notSame", None
    head, _, index = value.partition(":")
    # ASCII digits only, and few: "²" and other Unicode digits pass isdigit(), and int() of
    # thousands of digits raises; a forged form is a 400, never a 500.
    if head == "same" and index.isascii() and index.isdigit() and len(index) <= 6:
        return "same", int(index)
    raise web.HTTPBadRequest(text=f"unknown verdict {value!r}; 'same:<candidate index>' or 'notSame'")


def _cell(value: object) -> str:
    """One value in a cell: text as it is, anything else as JSON; always escaped (it comes from outside)."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return html.escape(text)


def _number(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, int | float) and not isinstance(value, bool) else ""


def _listed(value: object) -> list[object]:
    """A candidate's `fields` when it is a list; nothing otherwise (an old header or another writer)."""
    return value if isinstance(value, list) else []


def _explanation(record: ExceptionRecord, pretty: str) -> str:
    """The candidates beside the record: per field both values, the agreement level and its weight; the total.

    Everything shown comes from outside systems (the record, the candidate rows, even field names),
    so every piece is escaped.
    """
    matched = record.matched if record.matched is not None else None
    this = html.escape(json.dumps(matched, indent=2, ensure_ascii=False, default=str)) if matched is not None else None
    out = [
        "<h2>Record and matching records</h2>",
        f"<p>{len(record.candidates)} existing record(s) match, best first.</p>",
    ]
    if record.candidates_omitted:
        out.append(
            f"<p class=note>{record.candidates_omitted} weaker candidate(s) were left out to fit the message size.</p>"
        )
    out.append(
        "<details><summary>This record, whole</summary>"
        f"<pre>{this if this is not None else html.escape(pretty)}</pre></details>"
    )
    for i, match in enumerate(record.candidates):
        rows = "".join(
            f"<tr><td>{_cell(f.get('field', ''))}</td><td>{_cell(f.get('record'))}</td>"
            f"<td>{_cell(f.get('candidate'))}</td><td>{_cell(f.get('level', ''))}</td>"
            f"<td>{_number(f.get('weight'))}</td></tr>"
            for f in _listed(match.get("fields"))
            if isinstance(f, dict)
        )
        decision = match.get("decision")
        said = f" · {_cell(decision)}" if decision else ""
        weight = f" · weight {_number(match.get('weight'))}" if _number(match.get("weight")) else ""
        total = f"score {_number(match.get('score'))}{weight}"
        table = (
            "<table class=why><tr><th>Field</th><th>This record</th><th>Candidate</th><th>Level</th>"
            f"<th>Weight</th></tr>{rows}<tr><th colspan=3>Total</th><th colspan=2>{total}</th></tr></table>"
            if rows
            else f"<p>No field comparison recorded ({total}).</p>"
        )
        whole = html.escape(json.dumps(match.get("candidate"), indent=2, ensure_ascii=False, default=str))
        out.append(
            f"<section class=candidate id=candidate-{i + 1}><h3>Candidate {i + 1} · rule "
            f"{_cell(match.get('rule', ''))} · {total}{said}</h3>{table}"
            f"<details><summary>Candidate {i + 1}, whole</summary><pre>{whole}</pre></details></section>"
        )
    return "".join(out)


#: How long the console waits for a connection into a namespace's account (account isolation).
CONNECT_SECONDS = 10.0


class Console:
    """The aiohttp application and what it needs: NATS for the records, the API server for who may act."""

    def __init__(
        self,
        nats_url: str,
        kube: KubeClient,
        *,
        auth: Literal["proxy", "token"],
        default_namespace: str = "default",
        secret: bytes | None = None,
        access: ConsoleAccess | None = None,
        account_signing: Key | None = None,
    ) -> None:
        """`access` says whom to trust (from the environment when not given); `secret` overrides its CSRF key."""
        self.nats_url, self.kube, self.auth = nats_url, kube, auth
        self.default_namespace = default_namespace
        self.access = access if access is not None else ConsoleAccess.from_environment()
        self.secret = secret or self.access.csrf_key
        self._nc: Client | None = None
        #: Account isolation: the operator signing key, from which each namespace's account (and a
        #: user of it) is derived; the console then keeps one connection per namespace it shows.
        self.account_signing = account_signing
        self._accounts: dict[str, Client] = {}
        if auth == "token" and not self.access.audiences:
            logging.getLogger("onceflow.console").warning(
                "no token audiences configured (%s): bearer tokens are reviewed for the API server's own "
                "audiences, so any token the API server accepts signs in here",
                AUDIENCES_ENV,
            )

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._identify])
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/", self._index)
        app.router.add_get("/exceptions", self._list)
        app.router.add_get("/exceptions/{namespace}/{sequence:\\d+}", self._show)
        app.router.add_post("/exceptions/{namespace}/{sequence:\\d+}", self._decide)
        app.on_cleanup.append(self._close)
        return app

    async def _js(self, namespace: str) -> JetStreamContext:
        """The namespace's records: on the one connection, or (account mode) on one into its account."""
        if self.account_signing is None:
            if self._nc is None or self._nc.is_closed:
                self._nc = await natsio.connect(self.nats_url, name="onceflow-console")
            return self._nc.jetstream(timeout=5)
        found = self._accounts.get(namespace)
        if found is None or found.is_closed:
            user = namespace_user_creds(self.account_signing, namespace, "onceflow-console")
            try:
                found = await asyncio.wait_for(
                    natsio.connect(self.nats_url, name="onceflow-console", credentials=user), CONNECT_SECONDS
                )
            except Exception:
                # Unknown account: the operator pushes it with the namespace's first Onceflow object.
                raise web.HTTPServiceUnavailable(
                    text=f"namespace {namespace} has no NATS account the console can reach (nats.isolation=account:"
                    " the operator creates it with the namespace's first Onceflow object); try again later"
                ) from None
            self._accounts[namespace] = found
        return found.jetstream(timeout=5)

    async def _close(self, _: web.Application) -> None:
        for nc in [self._nc, *self._accounts.values()]:
            if nc is not None and not nc.is_closed:
                await nc.close()

    # -- who is asking, and may they ---------------------------------------------------------

    @web.middleware
    async def _identify(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/healthz":
            return await handler(request)
        identity = await self._identity(request)
        if identity is None:
            how = (
                "sign in through your organisation's proxy (identity headers count only from it)"
                if self.auth == "proxy"
                else "send a Kubernetes bearer token (Authorization: Bearer ...)"
            )
            return web.Response(text=f"Not signed in: {how}.", status=401, headers={"WWW-Authenticate": "Bearer"})
        request[IDENTITY] = identity
        return await handler(request)

    async def _identity(self, request: web.Request) -> Identity | None:
        if self.auth == "proxy":
            if not self.access.proxy.trusts(request):
                return None
            user = request.headers.get("X-Forwarded-User") or request.headers.get("X-Forwarded-Email")
            if not user:
                return None
            groups = tuple(g.strip() for g in request.headers.get("X-Forwarded-Groups", "").split(",") if g.strip())
            return Identity(user, groups)
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return None
        try:
            review = await self.kube.token_review(header.removeprefix("Bearer ").strip(), self.access.audiences)
        except KubeError:
            return None
        status = review.get("status") or {}
        if not status.get("authenticated"):
            return None
        if self.access.audiences and not set(status.get("audiences") or []) & set(self.access.audiences):
            return None  # issued for another service
        who: dict[str, object] = status.get("user") or {}
        listed = who.get("groups") or []
        return Identity(str(who.get("username", "")), tuple(str(g) for g in listed) if isinstance(listed, list) else ())

    async def _allowed(self, identity: Identity, verb: str, namespace: str) -> bool:
        try:
            review = await self.kube.access_review(
                identity.user,
                identity.groups,
                verb=verb,
                namespace=namespace,
                group=REVIEW_GROUP,
                resource=REVIEW_RESOURCE,
            )
        except KubeError:
            return False
        return bool((review.get("status") or {}).get("allowed"))

    async def _require(self, request: web.Request, verb: str, namespace: str) -> Identity:
        identity = request[IDENTITY]
        if not await self._allowed(identity, verb, namespace):
            raise web.HTTPForbidden(
                text=f"{identity.user} may not {verb} exceptions.onceflow.io in namespace {namespace}; "
                "ask a cluster admin for a Role granting it."
            )
        return identity

    def _csrf(self, identity: Identity) -> str:
        return hmac.new(self.secret, identity.user.encode(), hashlib.sha256).hexdigest()

    def _check_csrf(self, request: web.Request, identity: Identity, token: str) -> None:
        origin = request.headers.get("Origin")
        if origin is not None and origin != self.access.proxy.origin(request):
            raise web.HTTPForbidden(text="cross-site request refused")
        if not hmac.compare_digest(token, self._csrf(identity)):
            raise web.HTTPForbidden(text="the form is stale or forged (CSRF token mismatch); reload the page")

    # -- pages ---------------------------------------------------------------------------------

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _index(self, _: web.Request) -> web.Response:
        raise web.HTTPFound(f"/exceptions?namespace={self.default_namespace}")

    async def _list(self, request: web.Request) -> web.Response:
        namespace = request.query.get("namespace", self.default_namespace)
        identity = await self._require(request, LOOK_VERB, namespace)
        integration = request.query.get("integration") or None
        try:
            records = await list_exceptions(await self._js(namespace), namespace, integration=integration)
        except StreamUnreadable as exc:
            raise web.HTTPServiceUnavailable(text=str(exc)) from None
        rows = "".join(
            f"<tr><td><a href='/exceptions/{html.escape(namespace)}/{r.sequence}'>#{r.sequence}</a></td>"
            f"<td>{html.escape(r.integration)}</td><td>{html.escape(r.reason)}</td><td>{html.escape(r.step)}</td>"
            f"<td>{html.escape(r.business_key)}</td><td>{_age(r.time)}</td><td>{html.escape(r.error[:120])}</td></tr>"
            for r in records
        )
        body = (
            f"<form method=get><label>Namespace <input name=namespace value='{html.escape(namespace)}'></label> "
            "<button>Show</button></form>"
            f"<p>{len(records)} record(s) waiting for a decision.</p>"
            "<table><tr><th>#</th><th>Integration</th><th>Reason</th><th>Step</th><th>Business key</th>"
            f"<th>Age</th><th>Error</th></tr>{rows}</table>"
        )
        return _page(f"Waiting in {namespace}", body, identity)

    async def _show(self, request: web.Request) -> web.Response:
        namespace, sequence = request.match_info["namespace"], int(request.match_info["sequence"])
        identity = await self._require(request, LOOK_VERB, namespace)
        try:
            record = await get_exception(await self._js(namespace), namespace, sequence)
        except StreamUnreadable as exc:
            raise web.HTTPServiceUnavailable(text=str(exc)) from None
        except ReviewError as exc:
            raise web.HTTPNotFound(text=str(exc)) from None
        return _page(
            f"Exception #{sequence}", self._detail(record, namespace, identity, request.query.get("done")), identity
        )

    def _detail(self, record: ExceptionRecord, namespace: str, identity: Identity, done: str | None) -> str:
        try:
            pretty = json.dumps(json.loads(record.payload), indent=2, ensure_ascii=False)
        except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth: its text
            pretty = record.payload.decode(errors="replace")
        parts = []
        if done:
            parts.append(f"<p class=ok>Decision recorded: {html.escape(done)}.</p>")
        parts.append(
            "<table>"
            f"<tr><th>Integration</th><td>{html.escape(record.integration)}</td></tr>"
            f"<tr><th>Reason</th><td>{html.escape(record.reason)} at step {html.escape(record.step)}</td></tr>"
            f"<tr><th>Error</th><td>{html.escape(record.error)}</td></tr>"
            f"<tr><th>Business key</th><td>{html.escape(record.business_key)}</td></tr>"
            f"<tr><th>Revision</th><td>{html.escape(record.revision)}</td></tr>"
            f"<tr><th>Parked</th><td>{html.escape(record.time)}</td></tr></table>"
        )
        parts.append(f"<p class=note><strong>Suggestion (not applied):</strong> {html.escape(suggestion(record))}</p>")
        editable = pretty
        if record.suggestion and record.decision is None:
            fixed = with_fix(record.payload, record.suggestion)
            field = html.escape(str(record.suggestion.get("field")))
            value = html.escape(json.dumps(record.suggestion.get("value"), ensure_ascii=False))
            parts.append(
                f"<p class=note><strong>Suggested fix:</strong> set <code>{field}</code> to <code>{value}</code>. "
                "It is filled into the edit form below; nothing changes until you send it. "
                "Price and credit fields are never part of a suggestion.</p>"
            )
            if fixed is not None:
                editable = fixed.decode()
        if record.candidates:
            parts.append(_explanation(record, pretty))
        if record.decision is not None:
            d = record.decision
            verdict = ""
            if d.verdict == "same" and d.same_as is not None:
                verdict = f" (the same record as candidate {d.same_as + 1})"
            elif d.verdict == "notSame":
                verdict = " (none of the candidates)"
            parts.append(
                f"<p class=ok>Decided: {html.escape(d.action)}{verdict} by {html.escape(d.who)} "
                f"at {html.escape(d.time)} — {html.escape(d.why)}</p>"
            )
            parts.append(f"<h2>Payload as received</h2><pre>{html.escape(pretty)}</pre>")
            return "".join(parts)
        csrf = self._csrf(identity)
        buttons = "".join(
            f"<button name=action value={a}>{a.capitalize()}</button>" for a in REVIEW_ACTIONS if a != "edit"
        )
        if record.candidates:
            same = "".join(
                f"<button name=verdict value=same:{i}>Same as candidate {i + 1}</button>"
                for i in range(len(record.candidates))
            )
            parts.append(
                "<h2>Is it a duplicate?</h2>"
                f"<form method=post class=verdict><input type=hidden name=csrf value={csrf}>"
                "<label>Why (kept in the audit trail) <input name=why size=60 required></label><br>"
                f"{same}<button name=verdict value=notSame>Not the same as any</button>"
                "<p>Same as a candidate rejects this record (nothing is created); not the same approves it "
                "(it goes on and is created). Your answer is kept as a label for matching.</p></form>"
            )
        parts.append(
            f"<form method=post><input type=hidden name=csrf value={csrf}>"
            "<label>Why (kept in the audit trail) <input name=why size=60 required></label><br>"
            f"{buttons}</form>"
            "<h2>Edit and retry</h2>"
            f"<form method=post><input type=hidden name=csrf value={csrf}><input type=hidden name=action value=edit>"
            f"<textarea name=payload rows=18 aria-label=payload>{html.escape(editable)}</textarea>"
            "<label>Why <input name=why size=60 required></label> <button>Edit and retry</button></form>"
        )
        return "".join(parts)

    async def _decide(self, request: web.Request) -> web.Response:
        namespace, sequence = request.match_info["namespace"], int(request.match_info["sequence"])
        identity = await self._require(request, DECIDE_VERB, namespace)
        form = await request.post()
        self._check_csrf(request, identity, str(form.get("csrf", "")))
        action = cast(ReviewAction, str(form.get("action", "")))
        verdict, same_as = _verdict(str(form.get("verdict", "")))
        if verdict == "same":
            action = "reject"
        elif verdict == "notSame":
            action = "approve"
        why = str(form.get("why", "")).strip()
        if action not in REVIEW_ACTIONS:
            raise web.HTTPBadRequest(text=f"unknown action {action!r}; one of {', '.join(REVIEW_ACTIONS)}")
        if not why:
            raise web.HTTPBadRequest(text="say why: the reason is kept in the audit trail")
        payload = None
        if action == "edit":
            payload = str(form.get("payload", "")).encode()
            try:
                json.loads(payload)
            except ValueError as exc:
                raise web.HTTPBadRequest(text=f"the edited payload is not JSON ({exc}); nothing was sent") from None
        try:
            await decide(
                await self._js(namespace),
                namespace,
                sequence,
                action,
                who=identity.user,
                why=why,
                payload=payload,
                verdict=verdict,
                same_as=same_as,
            )
        except ReviewError as exc:
            raise web.HTTPConflict(text=str(exc)) from None
        raise web.HTTPSeeOther(f"/exceptions/{namespace}/{sequence}?done={action}")


def serve(console: Console, host: str, port: int) -> None:
    """Run until Ctrl-C or SIGTERM."""
    web.run_app(console.app(), host=host, port=port, print=None)
