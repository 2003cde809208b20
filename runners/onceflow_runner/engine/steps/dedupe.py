"""The `dedupe` step: search a Connector and match the candidates by the SyncPolicy's identity rules.

The deterministic match rules (exact fields, then a fuzzy score on one field) live here with the
step; what their match means (park for a person, skip, or raise an exception) is the plan's
`onMatch`. Candidates no rule matched are scored by the policy's probabilistic `matching`
(`onceflow_runner.matching`, in a worker thread so a long candidate list never holds the event
loop): a certain match is skipped or bound for an update (`onCertainMatch`), a likely one follows
`onMatch` like a rule's match, the rest are new.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from rapidfuzz import fuzz

from onceflow_runner.contract.plan import StepPlan, SyncPolicyPlan
from onceflow_runner.engine.outcome import RecordOutcome
from onceflow_runner.engine.steps._kind import RecordRun, StepRunner
from onceflow_runner.engine.steps._request import (
    FirstPageNotFound,
    bind_response,
    capped_reason,
    read_every_page,
    request_expressions,
    request_target,
    send_request,
)
from onceflow_runner.engine.steps.approve import is_approved_at
from onceflow_runner.errors import PermanentFailure
from onceflow_runner.matching.fields import field_value
from onceflow_runner.matching.model import PROBABILISTIC_RULE, model_from_plan, score_candidates

__all__ = ["DEDUPE", "find_matches"]


def _norm(value: Any) -> str:
    return " ".join(str(value).casefold().split())


def _rule_matches(
    record: Mapping[str, Any], candidate: Mapping[str, Any], policy: SyncPolicyPlan
) -> dict[str, Any] | None:
    for rule in policy.match_rules:
        values = [(field_value(record, f), field_value(candidate, f)) for f in rule.exact]
        if any(not left or not right or _norm(left) != _norm(right) for left, right in values):
            continue
        score = 1.0
        if rule.fuzzy_field:
            left, right = field_value(record, rule.fuzzy_field), field_value(candidate, rule.fuzzy_field)
            if not left or not right:
                continue
            score = fuzz.token_sort_ratio(_norm(left), _norm(right)) / 100.0
            if score < rule.fuzzy_threshold:
                continue
        return {
            "rule": rule.name,
            "score": round(score, 3),
            "decision": "match",
            "fields": [],
            "candidate": dict(candidate),
        }
    return None


def find_matches(record: Mapping[str, Any], candidates: list[Any], policy: SyncPolicyPlan) -> list[dict[str, Any]]:
    """Candidates a rule matches (best first), then the probabilistic model's certain and likely ones.

    Rules go first and are deterministic: a candidate a rule matched is not scored again.
    """
    found: list[dict[str, Any]] = []
    rest: list[Any] = []
    for candidate in candidates:
        if not isinstance(candidate, Mapping):
            continue
        match = _rule_matches(record, candidate, policy)
        if match is None:
            rest.append(candidate)
        else:
            found.append(match)
    found.sort(key=lambda m: -float(m["score"]))
    if policy.matching is not None and rest:
        found.extend(score_candidates(model_from_plan(policy.matching), record, rest))
    return found


async def _find_matches(
    record: Mapping[str, Any], candidates: list[Any], policy: SyncPolicyPlan
) -> list[dict[str, Any]]:
    """`find_matches`, in a worker thread when probabilistic matching scores the candidates (docs/benchmarks.md)."""
    if policy.matching is None:
        return find_matches(record, candidates, policy)
    return await asyncio.to_thread(find_matches, record, candidates, policy)


def _expressions(step: StepPlan) -> list[str]:
    if step.request is None:
        return []
    return list(dict.fromkeys([*request_expressions(step), step.request.candidates]))


async def _candidates(step: StepPlan, run: RecordRun) -> tuple[list[Any], str | None]:
    """Every candidate the search finds, and why the search is not to be trusted as complete (or None)."""
    req = step.request
    assert req is not None
    if req.paging is not None:
        try:
            search = await read_every_page(step, req, run)
        except FirstPageNotFound:
            raise PermanentFailure(f"{req.connector} answered 404 to the search", step=step.name) from None
        run.results.append(search.result(step))
        return search.rows, None if search.complete else capped_reason("search for duplicates", search)
    path, query = await request_target(step, req, run)
    response = await send_request(step, req, run, path, query)
    bind_response(step, req, run, path, response)
    candidates = await run.evaluate(
        req.candidates, step=step.name, what="candidates", context={**run.context, "response": response.body}
    )
    return list(candidates or []), None


async def _run(step: StepPlan, run: RecordRun) -> RecordOutcome | None:
    req = step.request
    if req is None:
        return None
    name = step.name
    ctx = run.context
    candidates, incomplete = await _candidates(step, run)
    policy = run.plan.sync_policy
    matches = await _find_matches(ctx["record"], candidates, policy) if policy else []
    ctx["steps"][name] = {"matches": matches}
    if is_approved_at(step.name, run):
        return None
    if incomplete and not matches:
        # The rows not read may hold the duplicate: a capped search is never "no duplicate".
        return RecordOutcome("parked", ctx["record"], reason=incomplete, step=name)
    if not matches:
        return None
    best = matches[0]
    if best["rule"] == PROBABILISTIC_RULE and best["decision"] == "match" and policy and policy.matching:
        ctx["steps"][name]["match"] = best["candidate"]
        if policy.matching.on_certain_match == "Update":
            return None
        reason = f"existing record matches (probability {best['score']})"
        return RecordOutcome("filtered", ctx["record"], reason=reason, step=name)
    if req.on_match == "Skip":
        return RecordOutcome("filtered", ctx["record"], reason=f"{len(matches)} existing record(s) match", step=name)
    if req.on_match == "Exception":
        raise PermanentFailure(f"{len(matches)} existing record(s) match (rule {matches[0]['rule']})", step=name)
    reason = (
        f"possible duplicate: {len(matches)} existing record(s) match "
        f"(best: rule {best['rule']}, score {best['score']})"
    )
    return RecordOutcome("parked", ctx["record"], reason=reason, step=name, candidates=matches)


DEDUPE = StepRunner("dedupe", expressions=_expressions, run=_run)
