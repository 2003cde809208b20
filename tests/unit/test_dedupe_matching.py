"""The dedupe step with a SyncPolicy's probabilistic matching: compiled from the API, rules first, decisions."""

from __future__ import annotations

from typing import Any

import pytest

from onceflow_operator.api.syncpolicy import SyncPolicy
from onceflow_operator.compiler.matching import matching_plan, matching_problems
from onceflow_runner.contract.plan import MatchRulePlan, RequestPlan, StepPlan, SyncPolicyPlan
from onceflow_runner.engine.core import Engine
from onceflow_runner.engine.ports import Response
from onceflow_runner.engine.steps.dedupe import find_matches
from tests.unit.test_entities_and_engine import META, RecordingCaller, RecordingEvents, plan


def policy(matching: dict[str, Any] | None = None, **spec: Any) -> SyncPolicy:
    body: dict[str, Any] = {
        "entity": "customer",
        "ownership": {"default": "erp"},
        "identity": {"keys": ["tax_id"]},
        **spec,
    }
    if matching is not None:
        body["matching"] = matching
    return SyncPolicy.model_validate({"metadata": {"name": "customers"}, "spec": body})


def policy_plan(matching: dict[str, Any], rules: tuple[MatchRulePlan, ...] = ()) -> SyncPolicyPlan:
    return SyncPolicyPlan(
        name="customers",
        entity="customer",
        owner_default="erp",
        match_rules=rules,
        matching=matching_plan(policy(matching)),
    )


RECORD = {
    "name": "Weber Logistik GmbH",
    "email": "anna.weber@weber-logistik.de",
    "phone": "+49 30 1234567",
    "postal_code": "10115",
    "country": "DE",
    "address": {"line1": "Hauptstraße 5", "city": "Berlin"},
    "contact": {"first_name": "Anna", "last_name": "Weber"},
}
SAME = {
    "id": "CUST-7",
    "name": "WEBER LOGISTIK G.m.b.H.",
    "email": "Anna.Weber@weber-logistik.de",
    "phone": "030 1234567",
    "postal_code": "10115",
    "country": "DE",
    "address": {"line1": "Hauptstr. 5", "city": "Berlin"},
    "contact": {"first_name": "Weber", "last_name": "Anna"},
}
LIKELY = {"id": "CUST-8", "name": "Weber Logistik Transport GmbH", "postal_code": "10115", "country": "DE"}
OTHER = {"id": "CUST-9", "name": "Zenith Tools AG", "postal_code": "10115", "country": "DE", "phone": "+49 30 999999"}


def test_defaults_of_the_entity_compile_into_the_plan() -> None:
    compiled = matching_plan(policy({}))
    assert compiled is not None
    assert compiled.fields[0].paths == ("name",)
    assert compiled.fields[0].comparison == "company"
    assert ("contact.first_name", "contact.last_name") in [f.paths for f in compiled.fields]
    assert compiled.on_certain_match == "Skip"
    assert matching_plan(policy(None)) is None


def test_named_fields_replace_the_defaults_and_keep_default_levels_not_listed() -> None:
    compiled = matching_plan(
        policy(
            {
                "fields": [
                    {"field": "name", "comparison": "company", "levels": [{"level": "exact", "m": 0.7, "u": 0.01}]}
                ],
                "priorLinkRate": 0.01,
                "thresholds": {"match": 0.95, "review": 0.6},
                "onCertainMatch": "Update",
            }
        )
    )
    assert compiled is not None
    [name] = compiled.fields
    assert (name.m[0], name.u[0]) == (0.7, 0.01)
    assert name.m[1] == 0.25  # the company comparison's default for token-sort>=0.90
    assert (compiled.prior_link_rate, compiled.match_threshold, compiled.on_certain_match) == (0.01, 0.95, "Update")


def test_a_level_the_comparison_lacks_and_an_entity_without_defaults_are_reported_with_their_field() -> None:
    bad = policy(
        {"fields": [{"field": "name", "comparison": "text", "levels": [{"level": "swapped", "m": 0.5, "u": 0.1}]}]}
    )
    [(path, message)] = list(matching_problems(bad))
    assert path == "spec.matching.fields[0].levels[0].level"
    assert "not a text level" in message
    assert "jaro-winkler>=0.92" in message
    orders = policy({}, entity="order")
    assert [p for p, _ in matching_problems(orders)] == ["spec.matching.fields"]


def test_rules_read_dotted_paths_and_go_before_the_model() -> None:
    rules = (MatchRulePlan(name="same-city-name", exact=("address.city",), fuzzy_field="name", fuzzy_threshold=0.8),)
    matches = find_matches(RECORD, [OTHER, LIKELY, SAME], policy_plan({}, rules))
    assert [m["rule"] for m in matches] == ["same-city-name", "probabilistic"]
    assert matches[0]["candidate"]["id"] == "CUST-7"
    # A rule's match says why: its exact field, then its fuzzy one with the similarity reached.
    assert [(f["field"], f["level"].split()[0]) for f in matches[0]["fields"]] == [
        ("address.city", "exact"),
        ("name", "fuzzy"),
    ]
    assert matches[1]["candidate"]["id"] == "CUST-8"
    assert matches[1]["decision"] == "review"


def search_step() -> StepPlan:
    return StepPlan(
        name="existing",
        kind="dedupe",
        request=RequestPlan(connector="erp", method="GET", path='"/api/resource/Customer"'),
    )


UPDATE = StepPlan(
    name="update",
    kind="call",
    request=RequestPlan(
        connector="erp",
        method="PUT",
        path='"/api/resource/Customer" + (has(steps.existing.match) ? "/" + steps.existing.match.id : "")',
        body="record",
    ),
)


async def run(
    candidates: list[dict[str, Any]], matching: dict[str, Any], *steps: StepPlan
) -> tuple[Any, RecordingCaller]:
    answers = {"/api/resource/Customer": Response(200, {"data": candidates})}
    caller = RecordingCaller(answers)
    flow = plan(search_step(), *steps).model_copy(update={"sync_policy": policy_plan(matching)})
    outcome = await Engine(flow, caller, RecordingEvents()).run({**RECORD, "tax": "1"}, META)
    return outcome, caller


async def test_a_certain_match_is_acknowledged_and_the_existing_record_stands() -> None:
    outcome, caller = await run([OTHER, SAME], {}, UPDATE)
    assert outcome.kind == "filtered"
    assert "probability" in outcome.reason
    assert len(caller.calls) == 1  # the search; no update


async def test_a_certain_match_with_update_runs_the_next_steps_with_the_match_bound() -> None:
    outcome, caller = await run([OTHER, SAME], {"onCertainMatch": "Update"}, UPDATE)
    assert outcome.kind == "completed"
    assert caller.calls[-1]["method"] == "PUT"
    assert caller.calls[-1]["path"] == "/api/resource/Customer/CUST-7"


async def test_a_likely_match_parks_with_the_explanation_of_each_field() -> None:
    outcome, _ = await run([OTHER, LIKELY], {}, UPDATE)
    assert outcome.kind == "parked"
    [candidate] = outcome.candidates
    assert candidate["decision"] == "review"
    assert 0.5 <= candidate["score"] < 0.99
    by_field = {f["field"]: f for f in candidate["fields"]}
    assert by_field["name"]["level"] == "token-set>=0.90"
    assert by_field["email"]["level"] == "missing"
    assert by_field["email"]["weight"] == 0.0


async def test_no_likely_candidate_means_a_new_record() -> None:
    outcome, caller = await run([OTHER], {}, UPDATE)
    assert outcome.kind == "completed"
    assert caller.calls[-1]["path"] == "/api/resource/Customer"  # no match bound: the upsert creates


@pytest.mark.parametrize("kind", ["exact", "personName"])
def test_the_api_offers_every_comparison_the_runner_has(kind: str) -> None:
    from typing import get_args

    from onceflow_operator.api.syncpolicy import ComparisonKind
    from onceflow_runner.matching.compare import COMPARISONS

    assert set(get_args(ComparisonKind)) == set(COMPARISONS)
    assert kind in COMPARISONS


async def test_probabilistic_scoring_runs_off_the_event_loop_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from onceflow_runner.engine.steps import dedupe

    threads: list[int] = []
    real = dedupe.find_matches

    def recording(*args: Any) -> list[dict[str, Any]]:
        threads.append(threading.get_ident())
        return real(*args)

    monkeypatch.setattr(dedupe, "find_matches", recording)
    await dedupe._find_matches(RECORD, [SAME], policy_plan({}))
    await dedupe._find_matches(RECORD, [SAME], SyncPolicyPlan(name="p", entity="customer", owner_default="erp"))
    assert threads[0] != threading.get_ident()  # with matching: a worker thread
    assert threads[1] == threading.get_ident()  # rules only: cheap, inline as before
