"""Canonical entities and the engine's steps, without any server (a recording Caller stands in)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from onceflow_runner.contract.messages import ParkedRecord, RecordHeaders, ReviewDecision
from onceflow_runner.contract.plan import (
    PLAN_VERSION,
    ConnectorPlan,
    MatchRulePlan,
    NatsPlan,
    Plan,
    RequestPlan,
    StepPlan,
    SyncPolicyPlan,
)
from onceflow_runner.engine.core import Engine
from onceflow_runner.engine.entities import gs1_check_digit_ok, validate_entity
from onceflow_runner.engine.ports import Response
from onceflow_runner.engine.steps.dedupe import find_matches
from onceflow_runner.errors import InvalidRecord, PermanentFailure

NATS = NatsPlan(
    stream="ONCEFLOW_IN",
    subject="s",
    consumer="c",
    exceptions_subject="e",
    dlq_subject="d",
    audit_subject="a",
    events_prefix="ev",
    stats_subject="st",
    decisions_subject="de",
    kv_bucket="kv",
)
POLICY = SyncPolicyPlan(
    name="customer",
    entity="customer",
    owner_default="erp",
    owners={"email": "crm"},
    match_rules=(
        MatchRulePlan(name="same-tax-id", exact=("tax_id",)),
        MatchRulePlan(name="similar-name", exact=("postal_code",), fuzzy_field="name", fuzzy_threshold=0.9),
    ),
)


@pytest.mark.parametrize("code", ["4006381333931", "036000291452", "0614141000012", "96385074", "00012345600012"])
def test_gs1_valid_codes(code: str) -> None:
    assert gs1_check_digit_ok(code)


@pytest.mark.parametrize("code", ["4006381333932", "036000291453", "0614141000013", "12345", "40063813339A1"])
def test_gs1_invalid_codes(code: str) -> None:
    assert not gs1_check_digit_ok(code)


def test_customer_validation_names_every_bad_field() -> None:
    with pytest.raises(InvalidRecord) as caught:
        validate_entity("customer", {"name": "Acme", "tax_id": "", "country": "XX"}, step="check")
    message = str(caught.value)
    assert "record.tax_id" in message
    assert "record.country: 'XX' is not an ISO 3166-1 alpha-2 country code" in message
    assert caught.value.step == "check"


def test_order_line_gtin_check_digit_is_enforced() -> None:
    order = {
        "po_no": "1",
        "currency": "EUR",
        "lines": [{"sku": "A", "quantity": 1, "price": 2, "gtin": "4006381333932"}],
    }
    with pytest.raises(InvalidRecord, match=r"record.lines.0.gtin"):
        validate_entity("order", order, step="v")


class RecordingCaller:
    def __init__(self, answers: Mapping[str, Response] | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.answers = dict(answers or {})

    async def request(self, connector: str, method: str, path: str, **kw: Any) -> Response:
        self.calls.append({"connector": connector, "method": method, "path": path, **kw})
        return self.answers.get(path, Response(200, {"data": {"name": "CUST-1"}}))


class RecordingEvents:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, Any, str]] = []

    async def publish_event(self, entity: str, verb: str, data: Any, *, msg_id: str, meta: Mapping[str, Any]) -> None:
        self.events.append((entity, verb, data, msg_id))

    async def hand_over_edi(
        self, connector: str, document: str, data: Any, *, step: str, msg_id: str, meta: Mapping[str, Any]
    ) -> None:
        self.events.append((f"edi.{connector}", document, data, msg_id))


def plan(*steps: StepPlan, business_key: str | None = "'c/' + input.tax", source: str = "crm") -> Plan:
    return Plan(
        plan_version=PLAN_VERSION,
        namespace="ns",
        integration="flow",
        revision="flow-1",
        source=source,
        business_key=business_key,
        steps=steps,
        sync_policy=POLICY,
        nats=NATS,
    )


MAP = StepPlan.model_validate(
    {
        "name": "canonical",
        "kind": "map",
        "map": {"fields": {"name": "input.company", "tax_id": "input.tax", "postal_code": "input.zip"}},
    }
)
CALL = StepPlan(
    name="create",
    kind="call",
    request=RequestPlan(connector="erp", method="POST", path='"/api/resource/Customer"'),
)
META = {"deliveryId": "d1", "businessKey": "c/DE1"}


async def test_map_then_call_sends_the_record_with_a_derived_idempotency_key() -> None:
    caller, events = RecordingCaller(), RecordingEvents()
    engine = Engine(plan(MAP, CALL), caller, events)
    payload = {"company": "Acme", "tax": "DE1", "zip": "10115"}
    assert await engine.business_key(payload, META) == "c/DE1"
    outcome = await engine.run(payload, META)
    assert outcome.kind == "completed"
    (call,) = caller.calls
    assert call["body"] == {"name": "Acme", "tax_id": "DE1", "postal_code": "10115"}
    assert call["idempotency_key"] == "c/DE1/create"
    assert [s.outcome for s in outcome.steps] == ["ok", "ok"]


async def test_filter_false_stops_the_record_without_calls() -> None:
    caller = RecordingCaller()
    only_big = StepPlan(name="big", kind="filter", condition="input.total > 100")
    outcome = await Engine(plan(only_big, CALL), caller, RecordingEvents()).run({"total": 5, "tax": "1"}, META)
    assert outcome.kind == "filtered"
    assert caller.calls == []


async def test_missing_field_in_cel_is_an_invalid_record_naming_the_field() -> None:
    with pytest.raises(InvalidRecord, match="the record has no field 'zip'") as caught:
        await Engine(plan(MAP), RecordingCaller(), RecordingEvents()).run({"company": "A", "tax": "1"}, META)
    assert caught.value.step == "canonical"


async def test_put_sends_only_fields_the_source_owns() -> None:
    caller = RecordingCaller()
    update = StepPlan(
        name="update",
        kind="call",
        request=RequestPlan(
            connector="erp",
            method="PUT",
            path='"/api/resource/Customer/C1"',
            body='{"email": input.email, "credit_limit": 1.0}',
        ),
    )
    outcome = await Engine(plan(update), caller, RecordingEvents()).run({"email": "a@b.c", "tax": "1"}, META)
    assert caller.calls[0]["body"] == {"email": "a@b.c"}
    assert any(s.outcome == "dropped" and "credit_limit" in s.detail for s in outcome.steps)


async def test_call_back_to_the_origin_system_is_suppressed() -> None:
    caller = RecordingCaller()
    outcome = await Engine(plan(CALL), caller, RecordingEvents()).run({"tax": "1"}, {**META, "origin": "erp"})
    assert caller.calls == []
    assert outcome.steps[0].outcome == "skipped"


async def test_a_record_from_the_erps_webhook_is_not_sent_back_to_the_erps_rest_connector() -> None:
    # The ERP's webhook Connector and its REST Connector have different names; both say system: erpnext.
    erp = ConnectorPlan(name="erp", base_url="http://erp.example.test", system="erpnext")
    flow = plan(CALL).model_copy(update={"connectors": {"erp": erp}})
    caller = RecordingCaller()
    from_erp = {**META, "origin": "erp-hooks", "originSystem": "erpnext"}
    outcome = await Engine(flow, caller, RecordingEvents()).run({"tax": "1"}, from_erp)
    assert caller.calls == []
    assert outcome.steps[0].outcome == "skipped"
    from_crm = {**META, "origin": "crm-hooks", "originSystem": "crm"}
    await Engine(flow, caller, RecordingEvents()).run({"tax": "1"}, from_crm)
    assert len(caller.calls) == 1


async def test_dedupe_match_parks_for_approval_with_candidates() -> None:
    search = RequestPlan(connector="erp", method="GET", path='"/api/resource/Customer"')
    dedupe = StepPlan(name="existing", kind="dedupe", request=search)
    answers = {"/api/resource/Customer": Response(200, {"data": [{"name": "ACME", "tax_id": "DE1"}]})}
    outcome = await Engine(plan(MAP, dedupe, CALL), RecordingCaller(answers), RecordingEvents()).run(
        {"company": "Acme", "tax": "DE1", "zip": "1"}, META
    )
    assert outcome.kind == "parked"
    assert outcome.step == "existing"
    assert outcome.candidates[0]["rule"] == "same-tax-id"


def gate(name: str) -> StepPlan:
    return StepPlan.model_validate({"name": name, "kind": "approve", "approve": {"reason": name, "when": "true"}})


def replayed(decision: ReviewDecision, parked_headers: Mapping[str, str]) -> dict[str, Any]:
    """The meta a runner gives the engine for a record a decision sent again (RecordHeaders -> meta)."""
    record = RecordHeaders.from_headers(decision.resend_headers(parked_headers, "ns"))
    return {**META, "decision": record.decision or "", "approvedSteps": list(record.approved_step_names)}


async def test_one_approval_opens_only_the_gate_it_was_given_at_and_the_record_parks_at_the_next() -> None:
    caller = RecordingCaller()
    engine = Engine(plan(gate("duplicateCheck"), gate("priceCheck"), CALL), caller, RecordingEvents())
    first = await engine.run({"tax": "1"}, META)
    assert (first.kind, first.step) == ("parked", "duplicateCheck")

    at_first = ReviewDecision(exception_sequence=1, action="approve", who="alice", time="t", step="duplicateCheck")
    parked_at_first = ParkedRecord(reason="ApprovalRequired", step="duplicateCheck").to_headers()
    second = await engine.run({"tax": "1"}, replayed(at_first, parked_at_first))
    assert (second.kind, second.step) == ("parked", "priceCheck")
    assert caller.calls == []

    at_second = ReviewDecision(exception_sequence=2, action="approve", who="bob", time="t", step="priceCheck")
    parked_at_second = ParkedRecord(reason="ApprovalRequired", step="priceCheck").to_headers(
        at_first.resend_headers(parked_at_first, "ns")
    )
    assert (await engine.run({"tax": "1"}, replayed(at_second, parked_at_second))).kind == "completed"
    assert len(caller.calls) == 1


async def test_an_approval_does_not_carry_over_to_a_retry_or_an_edit() -> None:
    engine = Engine(plan(gate("duplicateCheck"), CALL), RecordingCaller(), RecordingEvents())
    approved = ReviewDecision(exception_sequence=1, action="approve", who="a", time="t", step="duplicateCheck")
    parked = ParkedRecord(reason="RejectedByTarget", step="create").to_headers(
        approved.resend_headers(ParkedRecord(reason="ApprovalRequired", step="duplicateCheck").to_headers(), "ns")
    )
    for action in ("retry", "edit"):
        again = ReviewDecision(exception_sequence=2, action=action, who="b", time="t", step="create")
        assert (await engine.run({"tax": "1"}, replayed(again, parked))).step == "duplicateCheck"


async def test_approved_decision_lets_a_parked_record_through() -> None:
    approve = StepPlan.model_validate(
        {"name": "check", "kind": "approve", "approve": {"reason": "big", "when": "true"}}
    )
    caller = RecordingCaller()
    engine = Engine(plan(approve, CALL), caller, RecordingEvents())
    assert (await engine.run({"tax": "1"}, META)).kind == "parked"
    assert (await engine.run({"tax": "1"}, {**META, "decision": "approved"})).kind == "completed"
    assert len(caller.calls) == 1


async def test_send_edi_hands_the_from_expression_to_the_partner_keyed_by_business_key_and_step() -> None:
    events = RecordingEvents()
    send = StepPlan.model_validate(
        {
            "name": "send855",
            "kind": "sendEdi",
            "sendEdi": {"connector": "acme-edi", "document": "855", "from": '{"po_no": input.po, "lines": []}'},
        }
    )
    outcome = await Engine(plan(send), RecordingCaller(), events).run({"po": "PO-1", "tax": "1"}, META)
    assert outcome.kind == "completed"
    assert events.events == [("edi.acme-edi", "855", {"po_no": "PO-1", "lines": []}, "c/DE1/send855")]


async def test_publish_uses_business_key_and_step_as_message_id() -> None:
    events = RecordingEvents()
    publish = StepPlan.model_validate(
        {"name": "announce", "kind": "publish", "publish": {"entity": "customer", "verb": "created"}}
    )
    await Engine(plan(publish), RecordingCaller(), events).run({"tax": "1"}, META)
    assert events.events == [("customer", "created", {"tax": "1"}, "c/DE1/announce")]


async def test_lookup_404_fails_when_asked_to() -> None:
    lookup = StepPlan(
        name="item",
        kind="lookup",
        request=RequestPlan(connector="erp", method="GET", path='"/api/resource/Item/X"', not_found="Fail"),
    )
    caller = RecordingCaller({"/api/resource/Item/X": Response(404, {})})
    with pytest.raises(PermanentFailure, match="404"):
        await Engine(plan(lookup), caller, RecordingEvents()).run({"tax": "1"}, META)


def test_fuzzy_match_threshold() -> None:
    record = {"name": "Acme Industrial GmbH", "postal_code": "10115"}
    close = {"name": "ACME Industrial GmbH.", "postal_code": "10115"}
    other_town = {"name": "Acme Industrial GmbH", "postal_code": "80331"}
    different = {"name": "Zenith Tools AG", "postal_code": "10115"}
    matches = find_matches(record, [close, other_town, different], POLICY)
    assert [m["candidate"] for m in matches] == [close]
    assert matches[0]["score"] >= 0.9


async def test_a_failed_rule_offers_its_suggested_fix_and_changes_nothing() -> None:
    from onceflow_runner.contract.plan import ValidatePlan

    rule = ("input.currency in ['EUR', 'USD']", "currency must be an ISO code such as EUR")
    check = StepPlan(
        name="check",
        kind="validate",
        validate=ValidatePlan(
            rules=(rule,), suggestions=((0, "currency", "{'€': 'EUR', '$': 'USD'}[input.currency]"),)
        ),
    )
    caller = RecordingCaller()
    with pytest.raises(InvalidRecord) as caught:
        await Engine(plan(check, CALL), caller, RecordingEvents()).run({"currency": "€", "tax": "1"}, META)
    assert caught.value.suggestion == {"field": "currency", "value": "EUR"}
    assert caller.calls == []
    with pytest.raises(InvalidRecord) as unknown:  # no proposal when the fix itself cannot be computed
        await Engine(plan(check, CALL), caller, RecordingEvents()).run({"currency": "kr", "tax": "1"}, META)
    assert unknown.value.suggestion is None


def test_a_plan_whose_suggestion_would_change_a_price_or_credit_field_is_refused() -> None:
    from pydantic import ValidationError

    from onceflow_runner.contract.plan import ValidatePlan

    for field in ("data.credit_limit", "lines.price_list_rate", "grand_total", "discount"):
        with pytest.raises(ValidationError, match="price and credit fields are decided by people"):
            ValidatePlan(rules=(("true", "m"),), suggestions=((0, field, "1"),))
    assert ValidatePlan(rules=(("true", "m"),), suggestions=((0, "data.address.country", "'DE'"),)).suggestions


# --- Payload values in request paths (issue 19, item 13) --------------------------------------------

SHIPMENT_CALL = StepPlan(
    name="updateErp",
    kind="call",
    request=RequestPlan(
        connector="erp", method="PUT", path='"/api/resource/Delivery Note/" + pathSegment(input.delivery_note)'
    ),
)


@pytest.mark.parametrize(
    ("delivery_note", "sent"),
    [
        ("DN-0001", "/api/resource/Delivery Note/DN-0001"),
        ("../Customer/X", "/api/resource/Delivery Note/..%2FCustomer%2FX"),
        ("DN-1?docstatus=2#x", "/api/resource/Delivery Note/DN-1%3Fdocstatus%3D2%23x"),
        ("https://evil.example/", "/api/resource/Delivery Note/https%3A%2F%2Fevil.example%2F"),
        (42, "/api/resource/Delivery Note/42"),
    ],
)
async def test_path_segment_keeps_a_payload_value_inside_one_path_segment(delivery_note: object, sent: str) -> None:
    caller = RecordingCaller()
    await Engine(plan(SHIPMENT_CALL, business_key=None), caller, RecordingEvents()).run(
        {"delivery_note": delivery_note}, META
    )
    assert caller.calls[0]["path"] == sent


async def test_path_segment_of_null_is_an_invalid_record_naming_the_step() -> None:
    engine = Engine(plan(SHIPMENT_CALL, business_key=None), RecordingCaller(), RecordingEvents())
    with pytest.raises(InvalidRecord, match="pathSegment") as failed:
        await engine.run({"delivery_note": None}, META)
    assert failed.value.step == "updateErp"


async def test_query_or_fragment_spliced_into_a_path_is_an_invalid_record_not_a_call() -> None:
    step = StepPlan(
        name="lookupItem",
        kind="lookup",
        request=RequestPlan(connector="erp", method="GET", path='"/api/resource/Item/" + input.sku'),
    )
    caller = RecordingCaller()
    engine = Engine(plan(step, business_key=None), caller, RecordingEvents())
    for sku in ('SKU-1?fields=["*"]', "SKU-1#x"):
        with pytest.raises(InvalidRecord, match="holds '\\?' or '#'") as failed:
            await engine.run({"sku": sku}, META)
        assert failed.value.step == "lookupItem"
    assert caller.calls == []
