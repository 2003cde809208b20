"""The workflow engine: one record through a plan's steps, with no I/O of its own.

The engine gets a `Caller` (outbound HTTP) and an `EventSink` (canonical events) and returns an
`Outcome`; it never acks, naks or touches NATS. That keeps every step testable without a
server and puts delivery decisions in exactly one place (the runner's settle step).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from rapidfuzz import fuzz

from onceflow_runner.contract.plan import Plan, RequestPlan, StepPlan, SyncPolicyPlan
from onceflow_runner.engine.entities import validate_entity
from onceflow_runner.engine.expressions import bind, compile_expression, evaluate
from onceflow_runner.errors import InvalidRecord, PermanentFailure

__all__ = ["Caller", "Engine", "EventSink", "Outcome", "Response", "StepResult", "find_matches"]


@dataclass(frozen=True)
class Response:
    """What a Connector answered."""

    status: int
    body: Any
    latency_ms: float = 0.0


class Caller(Protocol):
    """Outbound requests to Connectors (implemented over httpx in `outbound`)."""

    async def request(
        self,
        connector: str,
        method: str,
        path: str,
        *,
        query: Mapping[str, str],
        body: Any,
        idempotency_key: str | None,
        headers: Mapping[str, str],
        step: str,
    ) -> Response: ...


class EventSink(Protocol):
    """Where canonical events go (JetStream in the runner)."""

    async def publish_event(
        self, entity: str, verb: str, data: Any, *, msg_id: str, meta: Mapping[str, Any]
    ) -> None: ...


@dataclass(frozen=True)
class StepResult:
    """One step's outcome, for the audit trail and `onceflow trace`."""

    step: str
    kind: str
    outcome: str
    detail: str = ""
    status: int | None = None
    latency_ms: float = 0.0


@dataclass
class Outcome:
    """How a record left the engine."""

    kind: Literal["completed", "filtered", "parked"]
    record: Any
    steps: list[StepResult] = field(default_factory=list)
    reason: str = ""
    step: str = ""
    candidates: list[dict[str, Any]] = field(default_factory=list)


def _norm(value: Any) -> str:
    return " ".join(str(value).casefold().split())


def find_matches(record: Mapping[str, Any], candidates: list[Any], policy: SyncPolicyPlan) -> list[dict[str, Any]]:
    """Return candidates that any match rule says are the same record, best score first."""
    found: list[dict[str, Any]] = []
    for candidate in candidates:
        if not isinstance(candidate, Mapping):
            continue
        for rule in policy.match_rules:
            if any(
                not record.get(f) or not candidate.get(f) or _norm(record[f]) != _norm(candidate[f]) for f in rule.exact
            ):
                continue
            score = 1.0
            if rule.fuzzy_field:
                left, right = record.get(rule.fuzzy_field), candidate.get(rule.fuzzy_field)
                if not left or not right:
                    continue
                score = fuzz.token_sort_ratio(_norm(left), _norm(right)) / 100.0
                if score < rule.fuzzy_threshold:
                    continue
            found.append({"rule": rule.name, "score": round(score, 3), "candidate": dict(candidate)})
            break
    return sorted(found, key=lambda m: -float(m["score"]))


def _suggest(fix: tuple[str, str] | None, ctx: Mapping[str, Any], step: str) -> dict[str, Any] | None:
    """The proposed value of a failed rule's suggested fix; None when there is none or it cannot be computed."""
    if fix is None:
        return None
    path, expression = fix
    try:
        return {"field": path, "value": evaluate(expression, ctx, step=step, what="suggestion")}
    except InvalidRecord:
        return None


class Engine:
    """Runs one plan's steps over records."""

    def __init__(self, plan: Plan, caller: Caller, events: EventSink) -> None:
        self.plan = plan
        self.caller = caller
        self.events = events
        for source in self._expressions():
            compile_expression(source)  # fail at start, not on the first record
        sync = plan.sync_policy
        #: What CEL sees as `policy`: the SyncPolicy's tolerances and entity.
        self.policy: dict[str, Any] = (
            {"name": sync.name, "entity": sync.entity, "priceDeviationPercent": sync.price_deviation_percent}
            if sync
            else {}
        )

    def _expressions(self) -> list[str]:
        out = [self.plan.business_key] if self.plan.business_key else []
        for step in self.plan.steps:
            if step.validate_:
                out += [rule for rule, _ in step.validate_.rules]
            if step.map:
                out += list(step.map.fields.values())
            if step.condition:
                out.append(step.condition)
            if step.request:
                req = step.request
                out += [req.path, *req.query.values(), req.candidates]
                out += [e for e in (req.body, req.idempotency_key) if e]
            if step.publish and step.publish.data:
                out.append(step.publish.data)
            if step.approve and step.approve.when:
                out.append(step.approve.when)
        return out

    def business_key(self, payload: Any, meta: Mapping[str, Any]) -> str:
        """The record's business key: the plan's CEL, or the delivery id the sender gave."""
        if not self.plan.business_key:
            return str(meta["deliveryId"])
        value = evaluate(self.plan.business_key, {"input": payload, "meta": dict(meta)}, step="", what="businessKey")
        if value in (None, ""):
            raise InvalidRecord("businessKey evaluated to an empty value; the record cannot be de-duplicated")
        return str(value)

    async def run(self, payload: Any, meta: Mapping[str, Any]) -> Outcome:
        """Run every step; raise PermanentFailure or TransientFailure, or return the Outcome."""
        ctx: dict[str, Any] = {
            "input": payload,
            "record": payload,
            "steps": {},
            "meta": dict(meta),
            "policy": self.policy,
        }
        results: list[StepResult] = []
        approved = meta.get("decision") == "approved"
        for step in self.plan.steps:
            started = time.perf_counter()
            outcome = await self._run_step(step, ctx, results, approved=approved)
            if outcome is not None:
                outcome.steps = results
                return outcome
            if results and results[-1].step == step.name:
                continue
            results.append(StepResult(step.name, step.kind, "ok", latency_ms=(time.perf_counter() - started) * 1e3))
        return Outcome("completed", ctx["record"], results)

    async def _run_step(
        self, step: StepPlan, ctx: dict[str, Any], results: list[StepResult], *, approved: bool
    ) -> Outcome | None:
        name = step.name
        if step.kind == "validate" and step.validate_:
            if step.validate_.entity:
                validate_entity(step.validate_.entity, ctx["record"], step=name)
            fixes = {n: (path, expr) for n, path, expr in step.validate_.suggestions}
            for n, (rule, message) in enumerate(step.validate_.rules):
                if evaluate(rule, ctx, step=name, what="rule") is not True:
                    raise InvalidRecord(message, step=name, suggestion=_suggest(fixes.get(n), ctx, name))
        elif step.kind == "map" and step.map:
            bound = bind(ctx, step.map.fields.values())
            mapped = {
                key: evaluate(expr, bound, step=name, what=f"field {key}") for key, expr in step.map.fields.items()
            }
            base = dict(ctx["record"]) if step.map.mode == "Merge" and isinstance(ctx["record"], Mapping) else {}
            ctx["record"] = {**base, **mapped}
            ctx["steps"][name] = ctx["record"]
        elif step.kind == "filter" and step.condition:
            if evaluate(step.condition, ctx, step=name, what="condition") is not True:
                results.append(StepResult(name, step.kind, "filtered"))
                return Outcome("filtered", ctx["record"], reason=f"filter {name} was false", step=name)
        elif step.kind in {"lookup", "dedupe", "call"} and step.request:
            return await self._request_step(step, step.request, ctx, results, approved=approved)
        elif step.kind == "publish" and step.publish:
            data = evaluate(step.publish.data, ctx, step=name, what="data") if step.publish.data else ctx["record"]
            key = f"{ctx['meta']['businessKey']}/{name}"
            await self.events.publish_event(step.publish.entity, step.publish.verb, data, msg_id=key, meta=ctx["meta"])
        elif step.kind == "approve" and step.approve:
            wanted = step.approve.when is None or evaluate(step.approve.when, ctx, step=name, what="when") is True
            if wanted and not approved:
                results.append(StepResult(name, step.kind, "parked", step.approve.reason))
                return Outcome("parked", ctx["record"], reason=step.approve.reason, step=name)
        return None

    async def _request_step(
        self,
        step: StepPlan,
        req: RequestPlan,
        ctx: dict[str, Any],
        results: list[StepResult],
        *,
        approved: bool,
    ) -> Outcome | None:
        name = step.name
        meta = ctx["meta"]
        if step.kind == "call" and meta.get("origin") == req.connector:
            # The record came from this system: sending it back would echo the change.
            results.append(StepResult(name, step.kind, "skipped", f"echo to origin {req.connector} suppressed"))
            return None
        path = str(evaluate(req.path, ctx, step=name, what="path"))
        query = {k: str(evaluate(v, ctx, step=name, what=f"query {k}")) for k, v in req.query.items()}
        body: Any = None
        key: str | None = None
        if step.kind == "call":
            body = evaluate(req.body, ctx, step=name, what="body") if req.body else ctx["record"]
            body = self._owned_fields_only(req, body, results, name)
            key = (
                str(evaluate(req.idempotency_key, ctx, step=name, what="idempotencyKey"))
                if req.idempotency_key
                else f"{meta['businessKey']}/{name}"
            )
        headers = {"Onceflow-Origin": str(meta.get("source", ""))}
        if meta.get("traceparent"):
            headers["traceparent"] = str(meta["traceparent"])
        response = await self.caller.request(
            req.connector,
            req.method,
            path,
            query=query,
            body=body,
            idempotency_key=key,
            headers=headers,
            step=name,
        )
        if response.status == 404 and step.kind == "lookup" and req.not_found == "Continue":
            ctx["steps"][name] = None
            results.append(StepResult(name, step.kind, "not-found", status=404, latency_ms=response.latency_ms))
            return None
        if response.status == 404:
            raise PermanentFailure(f"{req.connector} answered 404 for {req.method} {path}", step=name)
        ctx["steps"][name] = response.body
        results.append(StepResult(name, step.kind, "ok", status=response.status, latency_ms=response.latency_ms))
        if step.kind != "dedupe":
            return None
        candidates = evaluate(req.candidates, {**ctx, "response": response.body}, step=name, what="candidates")
        policy = self.plan.sync_policy
        matches = find_matches(ctx["record"], list(candidates or []), policy) if policy else []
        ctx["steps"][name] = {"matches": matches}
        if not matches or approved:
            return None
        if req.on_match == "Skip":
            return Outcome("filtered", ctx["record"], reason=f"{len(matches)} existing record(s) match", step=name)
        if req.on_match == "Exception":
            raise PermanentFailure(f"{len(matches)} existing record(s) match (rule {matches[0]['rule']})", step=name)
        best = matches[0]
        reason = (
            f"possible duplicate: {len(matches)} existing record(s) match "
            f"(best: rule {best['rule']}, score {best['score']})"
        )
        return Outcome("parked", ctx["record"], reason=reason, step=name, candidates=matches)

    def _owned_fields_only(self, req: RequestPlan, body: Any, results: list[StepResult], name: str) -> Any:
        """On updates, a source may set only the fields the SyncPolicy says it owns."""
        policy = self.plan.sync_policy
        if (
            policy is None
            or req.method not in {"PUT", "PATCH"}
            or not isinstance(body, Mapping)
            or not self.plan.source
        ):
            return body
        kept = {k: v for k, v in body.items() if policy.owners.get(k, policy.owner_default) == self.plan.source}
        dropped = sorted(set(body) - set(kept))
        if dropped:
            results.append(
                StepResult(name, "ownership", "dropped", f"{self.plan.source} does not own {', '.join(dropped)}")
            )
        return kept
