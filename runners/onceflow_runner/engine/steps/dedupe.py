"""The `dedupe` step: search a Connector and match the candidates by the SyncPolicy's identity rules.

The deterministic match rules (exact fields, then a fuzzy score on one field) live here with the
step; what their match means (park for a person, skip, or raise an exception) is the plan's
`onMatch`. Candidates no rule matched are scored by the policy's probabilistic `matching`
(`onceflow_runner.matching`, in a worker thread so a long candidate list never holds the event
loop): a certain match is skipped or bound for an update (`onCertainMatch`), a likely one follows
`onMatch` like a rule's match, the rest are new. The target's rows are put in canonical shape
first by the step's field mapping (target field -> canonical field, `fields` in the API), in
Python: no CEL reshaping of the candidate list. What the step made of the record (new, prevented,
parked) is left on the run for the duplicate-incidence figures.
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
from onceflow_runner.matching.fields import canonical_view, field_value
from onceflow_runner.matching.model import PROBABILISTIC_RULE, model_from_plan, score_candidates

__all__ = ["DEDUPE", "find_matches"]


def _norm(value: Any) -> str:
    return " ".join(str(value).casefold().split())


def _rule_matches(
    record: Mapping[str, Any], candidate: Mapping[str, Any], policy: SyncPolicyPlan
) -> dict[str, Any] | None:
    """The first rule that says `candidate` is `record`, with why (`fields`: each field, its level, both values)."""
    for rule in policy.match_rules:
        why: list[dict[str, Any]] = []
        for f in rule.exact:
            left, right = field_value(record, f), field_value(candidate, f)
            if not left or not right or _norm(left) != _norm(right):
                break
            why.append({"field": f, "level": "exact", "record": left, "candidate": right})
        else:
            score = 1.0
            if rule.fuzzy_field:
                left, right = field_value(record, rule.fuzzy_field), field_value(candidate, rule.fuzzy_field)
                if not left or not right:
                    continue
                score = fuzz.token_sort_ratio(_norm(left), _norm(right)) / 100.0
                if score < rule.fuzzy_threshold:
                    continue
                why.append(
                    {"field": rule.fuzzy_field, "level": f"fuzzy {score:.2f}", "record": left, "candidate": right}
                )
            return {
                "rule": rule.name,
                "score": round(score, 3),
                "decision": "match",
                "fields": why,
                "candidate": dict(candidate),
            }
    return None


def find_matches(record: Mapping[str, Any], candidates: list[Any], policy: SyncPolicyPlan) -> list[dict[str, Any]]:
    """Candidates a rule matches (best first), then the probabilistic model's certain and likely ones.

    Rules go first and are deterministic: a candidate a rule matched is not scored again. Each
    match says why (`fields`), so the reviewer sees what agreed; fields are dotted paths.
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


#: Where a candidate's canonical view keeps the index of its row (never a field a rule names).
_ROW = "\x00row"


async def _matches(
    record: Mapping[str, Any], rows: list[Any], fields: Mapping[str, str], policy: SyncPolicyPlan
) -> list[dict[str, Any]]:
    """Match the rows in canonical shape (`fields`: target -> canonical); each match keeps its row as the target has it.

    Why the row as it is: a canonical name may hide one of the target's own fields (ERPNext's
    `name` is its document id, the customer's name is `customer_name`), and the reviewer needs the
    target's id. The fields a match explains hold the compared (canonical) values.
    """
    if not fields:
        return await _find_matches(record, rows, policy)
    # Each view carries its row's index, so a match finds its row in one step (a match is a copy).
    views = [{**canonical_view(r, fields), _ROW: i} if isinstance(r, Mapping) else r for i, r in enumerate(rows)]
    matches = await _find_matches(record, views, policy)
    for match in matches:
        matched = match.get("candidate")
        if isinstance(matched, dict) and isinstance(matched.get(_ROW), int):
            match["candidate"] = dict(rows[matched[_ROW]])
    return matches


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
    matches = await _matches(ctx["record"], candidates, req.candidate_fields, policy) if policy else []
    ctx["steps"][name] = {"matches": matches}
    if is_approved_at(step.name, run):
        run.dedupe = "new"  # a person decided it is not one of the matches: it is created
        return None
    if incomplete and not matches:
        # The rows not read may hold the duplicate: a capped search is never "no duplicate".
        run.dedupe = "parked"
        return RecordOutcome("parked", ctx["record"], reason=incomplete, step=name)
    if not matches:
        run.dedupe = "new"
        return None
    best = matches[0]
    if best["rule"] == PROBABILISTIC_RULE and best["decision"] == "match" and policy and policy.matching:
        ctx["steps"][name]["match"] = best["candidate"]
        run.dedupe = "prevented"  # the existing record is skipped or updated: no second one is made
        if policy.matching.on_certain_match == "Update":
            return None
        reason = f"existing record matches (probability {best['score']})"
        return RecordOutcome("filtered", ctx["record"], reason=reason, step=name)
    if req.on_match == "Skip":
        run.dedupe = "prevented"
        return RecordOutcome("filtered", ctx["record"], reason=f"{len(matches)} existing record(s) match", step=name)
    if req.on_match == "Exception":
        raise PermanentFailure(f"{len(matches)} existing record(s) match (rule {matches[0]['rule']})", step=name)
    reason = (
        f"possible duplicate: {len(matches)} existing record(s) match "
        f"(best: rule {best['rule']}, score {best['score']})"
    )
    run.dedupe = "parked"
    return RecordOutcome("parked", ctx["record"], reason=reason, step=name, candidates=matches)


DEDUPE = StepRunner("dedupe", expressions=_expressions, run=_run)
