"""Duplicates explained to the reviewer (issue #15, items 3-5), without any server.

Match rules read dotted paths and say why they matched; the dedupe step maps candidate fields
into canonical shape in Python and keeps the target's own row; candidates are stored in full
(a message of their own, fitted to the server's largest payload); the review page and
`exceptions show` list them field by field, escaped; a reviewer's verdict becomes labels; and
the duplicate-incidence figures are counted per entity.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from onceflow_operator.cli.exceptions import render_exception
from onceflow_operator.review.console import _explanation, _verdict
from onceflow_operator.review.decisions import _check_verdict
from onceflow_operator.review.errors import ReviewError
from onceflow_operator.review.exceptions import review_figures
from onceflow_operator.review.labels import labels_of
from onceflow_operator.review.records import ExceptionRecord
from onceflow_runner.contract import headers as h
from onceflow_runner.contract.messages import ParkedCandidates, ParkedRecord, ReviewDecision
from onceflow_runner.contract.plan import MatchRulePlan, RequestPlan, StepPlan, SyncPolicyPlan
from onceflow_runner.engine.core import Engine
from onceflow_runner.engine.ports import Response
from onceflow_runner.engine.steps.dedupe import find_matches
from onceflow_runner.matching.fields import canonical_view, field_value
from onceflow_runner.metrics import RunnerMetrics
from tests.unit.test_entities_and_engine import CALL, MAP, META, RecordingCaller, RecordingEvents, plan

NESTED = SyncPolicyPlan(
    name="customer",
    entity="customer",
    owner_default="erp",
    match_rules=(
        MatchRulePlan(name="same-vat", exact=("ids.vat",)),
        MatchRulePlan(
            name="similar-name-same-postcode",
            exact=("address.postcode",),
            fuzzy_field="name",
            fuzzy_threshold=0.9,
        ),
    ),
)


def test_read_field_follows_dotted_paths_into_mappings_and_lists() -> None:
    row = {"address": {"postcode": "10115"}, "contacts": [{"email": "a@x.test"}], "flat.key": 1}
    assert field_value(row, "address.postcode") == "10115"
    assert field_value(row, "contacts.0.email") == "a@x.test"
    assert field_value(row, "flat.key") == 1  # a key with dots, as flat exports write them
    assert field_value(row, "address.city") is None
    assert field_value(row, "contacts.3.email") is None
    assert field_value(row, "address.postcode.more") is None


def test_a_rule_on_nested_fields_matches_and_says_which_fields_agreed() -> None:
    record = {"name": "Acme Industrial GmbH", "address": {"postcode": "10115"}, "ids": {"vat": "DE1"}}
    close = {"name": "ACME Industrial GmbH.", "address": {"postcode": "10115"}, "ids": {"vat": "DE2"}}
    (match,) = find_matches(record, [close], NESTED)
    assert match["rule"] == "similar-name-same-postcode"
    exact, fuzzy = match["fields"]
    assert exact == {"field": "address.postcode", "level": "exact", "record": "10115", "candidate": "10115"}
    assert fuzzy["field"] == "name"
    assert fuzzy["level"].startswith("fuzzy 0.9")
    assert (fuzzy["record"], fuzzy["candidate"]) == ("Acme Industrial GmbH", "ACME Industrial GmbH.")
    (by_vat,) = find_matches(record, [{"ids": {"vat": " de1 "}}], NESTED)
    assert by_vat["fields"] == [{"field": "ids.vat", "level": "exact", "record": "DE1", "candidate": " de1 "}]


def test_canonical_view_adds_mapped_values_and_leaves_the_row_alone() -> None:
    row = {"name": "CUST-0007", "customer_name": "Acme", "addr": {"zip": "10115"}}
    view = canonical_view(row, {"customer_name": "name", "addr.zip": "address.postcode", "missing": "email"})
    assert view == {"name": "Acme", "customer_name": "Acme", "addr": {"zip": "10115"}, "address": {"postcode": "10115"}}
    assert row == {"name": "CUST-0007", "customer_name": "Acme", "addr": {"zip": "10115"}}


async def test_the_dedupe_step_maps_candidate_fields_and_keeps_the_targets_own_row() -> None:
    search = RequestPlan(
        connector="erp",
        method="GET",
        path='"/api/resource/Customer"',
        candidate_fields={"customer_name": "name", "pincode": "postal_code"},
    )
    dedupe = StepPlan(name="existing", kind="dedupe", request=search)
    erp_row = {"name": "CUST-0007", "customer_name": "ACME", "pincode": "1", "tax_id": "DE9"}
    answers = {"/api/resource/Customer": Response(200, {"data": [erp_row]})}
    outcome = await Engine(plan(MAP, dedupe, CALL), RecordingCaller(answers), RecordingEvents()).run(
        {"company": "Acme", "tax": "DE1", "zip": "1"}, META
    )
    assert outcome.kind == "parked"
    assert outcome.dedupe == "parked"
    (match,) = outcome.candidates
    assert match["rule"] == "similar-name"
    assert match["candidate"] == erp_row  # the ERP's document id stays for the reviewer
    assert [f["field"] for f in match["fields"]] == ["postal_code", "name"]
    assert match["fields"][1]["candidate"] == "ACME"


async def test_the_engine_says_what_dedupe_made_of_a_record() -> None:
    search = RequestPlan(connector="erp", method="GET", path='"/api/resource/Customer"', on_match="Skip")
    dedupe = StepPlan(name="existing", kind="dedupe", request=search)
    none = {"/api/resource/Customer": Response(200, {"data": []})}
    created = await Engine(plan(MAP, dedupe, CALL), RecordingCaller(none), RecordingEvents()).run(
        {"company": "Acme", "tax": "DE1", "zip": "1"}, META
    )
    assert (created.kind, created.dedupe) == ("completed", "new")
    same = {"/api/resource/Customer": Response(200, {"data": [{"tax_id": "DE1"}]})}
    skipped = await Engine(plan(MAP, dedupe, CALL), RecordingCaller(same), RecordingEvents()).run(
        {"company": "Acme", "tax": "DE1", "zip": "1"}, META
    )
    assert (skipped.kind, skipped.dedupe) == ("filtered", "prevented")
    plain = await Engine(plan(MAP, CALL), RecordingCaller(), RecordingEvents()).run(
        {"company": "Acme", "tax": "DE1", "zip": "1"}, META
    )
    assert plain.dedupe is None


def _candidate(i: int, size: int = 2000) -> dict[str, Any]:
    return {
        "rule": "similar-name",
        "score": round(1 - i / 1000, 3),
        "fields": [{"field": "name", "level": "fuzzy 0.95", "record": "Acme", "candidate": f"Acme {i}"}],
        "candidate": {"name": f"Acme {i}", "notes": "x" * size},
    }


def test_a_hundred_candidates_of_two_kilobytes_fit_in_full() -> None:
    message = ParkedCandidates(
        integration="flow", stream_sequence=7, record={"name": "Acme"}, candidates=[_candidate(i) for i in range(100)]
    )
    kept, body = message.fitted(1024 * 1024 - 4096)
    assert kept.omitted == 0
    back = ParkedCandidates.from_wire(body)
    assert back.candidates == message.candidates
    assert back.record == {"name": "Acme"}
    assert len(body) > 200_000


def test_candidates_beyond_the_largest_payload_lose_the_weakest_and_say_how_many() -> None:
    message = ParkedCandidates(integration="flow", candidates=[_candidate(i) for i in range(100)])
    kept, body = message.fitted(50_000)
    assert len(body) <= 50_000
    assert 0 < len(kept.candidates) < 100
    assert kept.omitted == 100 - len(kept.candidates)
    assert kept.candidates == message.candidates[: len(kept.candidates)]  # best first: the weakest went


def test_a_parked_duplicate_names_where_its_candidates_are_and_old_headers_still_read() -> None:
    parked = ParkedRecord(reason="ApprovalRequired", integration="flow", candidates_at=42, entity="customer")
    headers = parked.to_headers({})
    assert headers[h.CANDIDATES_AT] == "42"
    assert h.CANDIDATES not in headers
    back = ParkedRecord.from_headers(headers)
    assert (back.candidates_at, back.entity) == (42, "customer")
    old = {h.REASON: "ApprovalRequired", h.CANDIDATES: json.dumps([{"rule": "r", "score": 1, "candidate": {}}])}
    assert ParkedRecord.from_headers(old).candidates == [{"rule": "r", "score": 1, "candidate": {}}]


def _record(candidates: list[dict[str, Any]], decision: ReviewDecision | None = None, **kw: Any) -> ExceptionRecord:
    return ExceptionRecord(
        sequence=5,
        integration="onboarding",
        reason="ApprovalRequired",
        step="existing",
        error="possible duplicate",
        business_key="customer/DE1",
        revision="r1",
        time=kw.pop("time", datetime.now(UTC).isoformat()),
        payload=b'{"data": {"company": "Acme"}}',
        candidates=candidates,
        decision=decision,
        entity="customer",
        **kw,
    )


def _decision(verdict: str | None, same_as: int | None = None, action: str = "reject") -> ReviewDecision:
    extra = {"verdict": verdict, "sameAs": same_as} if verdict else {}
    return ReviewDecision.from_dict(
        {"exceptionSequence": 5, "action": action, "who": "alice", "time": datetime.now(UTC).isoformat(), **extra}
    )


def test_a_verdict_travels_with_the_decision() -> None:
    decision = _decision("same", 1)
    assert json.loads(decision.to_wire())["sameAs"] == 1
    back = ReviewDecision.from_wire(decision.to_wire())
    assert (back.verdict, back.same_as) == ("same", 1)
    assert "verdict" not in json.loads(_decision(None).to_wire())


def test_same_labels_the_named_candidate_and_not_same_labels_them_all() -> None:
    rows = [{"rule": "r", "score": 0.9, "candidate": {"id": i}} for i in range(3)]
    matched = {"name": "Acme"}
    same = list(labels_of(_record(rows, _decision("same", 1), matched=matched)))
    assert [(lb.left, lb.right, lb.same) for lb in same] == [(matched, {"id": 1}, True)]
    assert same[0].to_dict()["entity"] == "customer"
    different = list(labels_of(_record(rows, _decision("notSame", action="approve"))))
    assert [(lb.right, lb.same) for lb in different] == [({"id": 0}, False), ({"id": 1}, False), ({"id": 2}, False)]
    assert different[0].left == {"data": {"company": "Acme"}}  # no record as matched: its bytes
    assert list(labels_of(_record(rows, _decision(None)))) == []
    assert list(labels_of(_record(rows))) == []


@pytest.mark.parametrize(
    ("action", "verdict", "same_as", "message"),
    [
        ("reject", "same", None, "which candidate"),
        ("reject", "same", 3, "which candidate"),
        ("approve", "same", 0, "rejected or discarded"),
        ("reject", "notSame", None, "goes on"),
        ("approve", "notSame", 1, "names no candidate"),
        ("reject", None, 1, "needs the verdict"),
    ],
)
def test_a_verdict_that_does_not_fit_the_record_or_action_is_refused(
    action: Any, verdict: Any, same_as: int | None, message: str
) -> None:
    rows = [{"rule": "r", "score": 1, "candidate": {}}] * 3
    with pytest.raises(ReviewError, match=message):
        _check_verdict(_record(rows), action, verdict, same_as)
    _check_verdict(_record(rows), "reject", "same", 2)
    _check_verdict(_record(rows), "approve", "notSame", None)
    with pytest.raises(ReviewError, match="no duplicate candidates"):
        _check_verdict(_record([]), "approve", "notSame", None)


def test_the_page_explains_each_candidate_field_by_field_and_escapes_what_outside_systems_sent() -> None:
    evil = "<img src=x onerror=alert(1)>"
    match = {
        "rule": "fs",
        "score": 0.97,
        "decision": "review",
        "weight": 11.3,
        "fields": [
            {"field": "name", "level": "jaro-winkler >= 0.92", "weight": 6.1, "record": "Acme", "candidate": evil},
            {"field": f"x{evil}", "level": "exact", "weight": -2.5, "record": None, "candidate": {"a": evil}},
        ],
        "candidate": {"name": evil},
    }
    page = _explanation(_record([match], matched={"name": "Acme"}), "{}")
    assert "<img" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "jaro-winkler &gt;= 0.92" in page
    assert "<td>6.10</td>" in page
    assert "<td>-2.50</td>" in page
    assert "score 0.97 · weight 11.30 · review" in page
    assert "Candidate 1" in page
    plain = _explanation(_record([{"rule": "r", "score": 1.0, "candidate": {"id": 1}}], candidates_omitted=4), "{}")
    assert "No field comparison recorded (score 1.00)" in plain
    assert "4 weaker candidate(s) were left out" in plain


def test_the_verdict_buttons_are_read_strictly() -> None:
    from aiohttp import web

    assert _verdict("") == (None, None)
    assert _verdict("notSame") == ("notSame", None)
    assert _verdict("same:2") == ("same", 2)
    for bad in ("same", "same:-1", "same:x", "yes"):
        with pytest.raises(web.HTTPBadRequest):
            _verdict(bad)


def test_exceptions_show_lists_candidates_beside_the_record_with_level_and_weight() -> None:
    row = {
        "sequence": 5,
        "integration": "onboarding",
        "reason": "ApprovalRequired",
        "payload": {"company": "Acme"},
        "candidatesOmitted": 2,
        "candidates": [
            {
                "rule": "fs",
                "score": 0.97,
                "weight": 11.3,
                "fields": [
                    {"field": "name", "level": "fuzzy 0.93", "weight": 6.1, "record": "Acme", "candidate": "ACME"},
                    {"field": "address.postcode", "level": "exact", "record": "10115", "candidate": "10115"},
                ],
                "candidate": {"name": "CUST-7"},
            }
        ],
    }
    text = render_exception(row)
    assert "Candidates    1 (2 weaker left out)" in text
    assert "Candidate 1: rule fs, score 0.97, weight 11.30" in text
    lines = text.splitlines()
    header = next(line for line in lines if "THIS RECORD" in line)
    assert header.split() == ["FIELD", "THIS", "RECORD", "CANDIDATE", "LEVEL", "WEIGHT"]
    assert any(line.split() == ["name", "Acme", "ACME", "fuzzy", "0.93", "6.10"] for line in lines)
    assert any(line.split() == ["address.postcode", "10115", "10115", "exact", "-"] for line in lines)
    assert '"name": "CUST-7"' in text


def test_duplicates_caught_by_people_are_counted_per_entity() -> None:
    rows = [{"rule": "r", "score": 1, "candidate": {}}]
    long_ago = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    old_same = ReviewDecision.from_dict(
        {"exceptionSequence": 5, "action": "reject", "who": "a", "time": long_ago, "verdict": "same", "sameAs": 0}
    )
    records = [
        _record(rows, _decision("same", 0)),
        _record(rows, old_same, time=long_ago),
        _record(rows, _decision("notSame", action="approve")),
        _record(rows),
    ]
    figures = review_figures(records, datetime.now(UTC))
    assert figures.duplicates_caught == {"customer": 2}


def test_the_incidence_counter_child_is_resolved_once_per_entity_and_outcome() -> None:
    metrics = RunnerMetrics()
    revision = metrics.of("onboarding", "r1")
    assert revision.dedupe_records("customer", "new") is revision.dedupe_records("customer", "new")
    revision.dedupe_records("customer", "new").inc()
    revision.dedupe_records("customer", "prevented").inc(2)
    value = metrics.registry.get_sample_value(
        "onceflow_runner_dedupe_records_total",
        {"integration": "onboarding", "revision": "r1", "entity": "customer", "outcome": "prevented"},
    )
    assert value == 2


def test_the_dedupe_steps_field_mapping_compiles_into_the_plan_and_refuses_what_is_no_path() -> None:
    from pydantic import ValidationError

    from onceflow_operator.api.steps import DedupeStep
    from onceflow_operator.compiler.planner import plan_from_integration
    from tests.unit.test_planner import load_examples

    connectors, policies, integrations = load_examples()
    onboarding = next(i for i in integrations if i.metadata["name"] == "customer-onboarding")
    compiled = plan_from_integration(onboarding, connectors, policies["customer"], namespace="sales")
    (existing,) = [s for s in compiled.steps if s.kind == "dedupe"]
    assert existing.request is not None
    assert existing.request.candidate_fields == {"customer_name": "name"}
    step = DedupeStep.model_validate(
        {"connector": "erp", "path": "/c", "fields": {"addr.zip": "address.postcode", "contacts.0.mail": "email"}}
    )
    assert step.fields == {"addr.zip": "address.postcode", "contacts.0.mail": "email"}
    for bad in ({"addr..zip": "x"}, {"zip": "address."}, {"zip": "record['a']"}):
        with pytest.raises(ValidationError):
            DedupeStep.model_validate({"connector": "erp", "path": "/c", "fields": bad})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--same-as", "1", "--not-same"], "say opposite things"),
        (["--same-as", "0"], "counts candidates from 1"),
    ],
)
def test_a_verdict_the_cli_cannot_mean_is_refused_before_anything_is_asked(args: list[str], message: str) -> None:
    from click.testing import CliRunner

    from onceflow_operator.cli import main

    result = CliRunner().invoke(main, ["exceptions", "reject", "5", "-n", "x", "-m", "dup", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
