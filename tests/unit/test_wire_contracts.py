"""Every typed wire message round-trips: what the writer puts on NATS, the reader gets back (pure)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onceflow_operator.controller.figures import FigureBook
from onceflow_operator.review.exceptions import ExceptionRecord
from onceflow_runner.adapters.pubacks import header_block
from onceflow_runner.contract import headers as h
from onceflow_runner.contract import subjects
from onceflow_runner.contract.keys import MAX_MSG_ID_CHARS
from onceflow_runner.contract.messages import (
    PARK_HEADROOM,
    REVIEW_ACTIONS,
    AuditEntry,
    DriftResult,
    Heartbeat,
    ParkedRecord,
    RecordHeaders,
    ReviewDecision,
)
from onceflow_runner.contract.split import SplitMarker, SplitTable
from onceflow_runner.errors import WireFormatError

# -- subjects ------------------------------------------------------------------------------------


def test_every_stream_stores_the_subjects_of_its_area_in_every_namespace() -> None:
    stored = {
        "in": subjects.inbound_subject("sales", "shop", "order.created"),
        "events": subjects.event_subject("sales", "customer", "created"),
        "exceptions": subjects.exceptions_subject("sales", "sync"),
        "decisions": subjects.decisions_subject("sales", "sync"),
        "dlq": subjects.dlq_subject("sales", "sync"),
        "audit": subjects.audit_subject("sales", "sync"),
    }
    for stream, area in subjects.STREAM_AREAS.items():
        (pattern,) = subjects.stream_subjects(stream)
        assert subjects.subject_matches(pattern, stored[area]), (stream, stored[area])
        others = [s for a, s in stored.items() if a != area]
        assert not any(subjects.subject_matches(pattern, s) for s in others), stream


def test_drift_results_and_rollout_markers_are_kept_in_the_stream_of_their_records() -> None:
    (events,) = subjects.stream_subjects(subjects.EVENTS_STREAM)
    (inbound,) = subjects.stream_subjects(subjects.IN_STREAM)
    assert subjects.drift_subject("sales", "customer", "customers") == "onceflow.sales.events.customer.drift.customers"
    assert subjects.subject_matches(events, subjects.drift_subject("sales", "customer", "customers"))
    assert subjects.subject_matches(inbound, subjects.rollout_subject("sales", "sync", subjects.IN_STREAM))
    assert subjects.subject_matches(events, subjects.rollout_subject("sales", "sync", subjects.EVENTS_STREAM))
    assert subjects.stream_of_trigger("onceflow.sales.events.customer.created") == subjects.EVENTS_STREAM
    assert subjects.stream_of_trigger("onceflow.sales.in.shop.>") == subjects.IN_STREAM


def test_heartbeats_are_received_from_every_namespace_and_integration() -> None:
    beat = subjects.stats_subject("sales", "sync")
    assert subjects.subject_matches(subjects.STATS_SUBSCRIPTION, beat)
    assert subjects.namespace_of(beat) == "sales"
    with pytest.raises(ValueError, match="not an onceflow subject"):
        subjects.namespace_of("elsewhere.sales.stats.sync")


# -- headers -------------------------------------------------------------------------------------


def test_cloudevent_headers_are_binary_mode_with_a_content_type_only_when_given() -> None:
    made = h.cloudevent_headers(
        event_type="io.onceflow.customer.created", source="/namespaces/s/integrations/i", event_id="k", time="t"
    )
    assert made == {
        "ce-specversion": "1.0",
        "ce-type": "io.onceflow.customer.created",
        "ce-source": "/namespaces/s/integrations/i",
        "ce-id": "k",
        "ce-time": "t",
    }
    with_type = h.cloudevent_headers(event_type="x", source="y", event_id="z", content_type="application/json")
    assert with_type["content-type"] == "application/json"
    assert with_type["ce-time"]  # now, when not given


def test_header_values_are_one_line_and_capped() -> None:
    assert h.header_safe("a\nb\t c", 3) == "a b"


def test_record_headers_round_trip_and_leave_out_what_was_not_sent() -> None:
    trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    sent = RecordHeaders(msg_id="ns/shop/1", delivery_id="1", origin="shop", event="order.created", traceparent=trace)
    wire = sent.to_headers()
    assert wire == {
        "Nats-Msg-Id": "ns/shop/1",
        "Onceflow-Delivery-Id": "1",
        "Onceflow-Origin": "shop",
        "Onceflow-Event": "order.created",
        "traceparent": trace,
    }
    assert RecordHeaders.from_headers(wire) == sent
    assert RecordHeaders.from_headers(None) == RecordHeaders()
    assert RecordHeaders.from_headers({"content-type": "application/edi-x12"}).content_type == "application/edi-x12"


# -- heartbeat -----------------------------------------------------------------------------------


def heartbeat() -> Heartbeat:
    return Heartbeat(
        integration="sync",
        revision="sync-abc",
        lane="canary",
        pod="runner-0",
        time="2026-11-27T10:00:00+00:00",
        consumer_lag=3,
        consumer_lag_growth=-12.5,
        last_success_time=None,
        count=10,
        error_ratio=0.1,
        exception_ratio=0.0,
        p50_latency_ms=1.5,
        p95_latency_ms=9.0,
        throughput=0.2,
        totals={"completed": 9, "exception": 1},
    )


def test_heartbeat_round_trips_with_the_keys_the_runner_always_sent() -> None:
    beat = heartbeat()
    body = json.loads(beat.to_wire())
    assert list(body) == [
        "integration",
        "revision",
        "lane",
        "pod",
        "time",
        "consumerLag",
        "consumerLagGrowth",
        "lastSuccessTime",
        "count",
        "errorRatio",
        "exceptionRatio",
        "p50LatencyMs",
        "p95LatencyMs",
        "throughput",
        "totals",
    ]
    assert Heartbeat.from_wire(beat.to_wire()) == beat


def test_a_heartbeat_from_an_older_runner_reads_with_defaults_and_feeds_the_figures() -> None:
    old = b'{"integration": "sync", "revision": "r1", "pod": "a", "totals": {"completed": 2}, "extra": 1}'
    beat = Heartbeat.from_wire(old)
    assert (beat.lane, beat.count, beat.consumer_lag) == ("main", 0, 0)
    book = FigureBook()
    book.record("ns", beat, now=0)
    assert book.figures("ns", "sync", {"r1": 1}, now=1) == {
        "processed": 2,
        "failed": 0,
        "deadLettered": 0,
        "consumerLag": 0,
        "consumerLagGrowth": 0.0,
        "revisions": [{"revision": "r1", "number": 1, "processed": 2, "failed": 0, "deadLettered": 0}],
    }


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not an object"),
        (b'{"revision": "r1"}', "integration"),
        (b'{"integration": "i", "revision": "r", "count": "many"}', "count"),
    ],
)
def test_a_heartbeat_that_is_not_one_is_refused_by_name(body: bytes, says: str) -> None:
    with pytest.raises(WireFormatError, match=says):
        Heartbeat.from_wire(body)


# -- audit ---------------------------------------------------------------------------------------


def test_a_runner_audit_entry_round_trips_with_its_steps() -> None:
    entry = AuditEntry(
        time="2026-11-27T10:00:00+00:00",
        integration="sync",
        revision="sync-abc",
        business_key="customer/1",
        delivery_id="d1",
        source="shop",
        delivered=1,
        outcome="completed",
        detail="",
        steps=[{"step": "create", "kind": "call", "outcome": "ok", "detail": "", "status": 201, "latency_ms": 4.2}],
    )
    body = json.loads(entry.to_wire())
    assert body["businessKey"] == "customer/1"
    assert body["steps"] == [
        {"step": "create", "kind": "call", "outcome": "ok", "detail": "", "status": 201, "latency_ms": 4.2}
    ]
    assert "exceptionSequence" not in body
    assert AuditEntry.from_wire(entry.to_wire()) == entry


def test_a_decision_audit_entry_carries_only_what_the_reviewer_wrote() -> None:
    entry = AuditEntry(
        time="t", integration="sync", business_key="k", outcome="decision", detail="retry by a: b", exception_sequence=7
    )
    assert json.loads(entry.to_wire()) == {
        "time": "t",
        "integration": "sync",
        "businessKey": "k",
        "outcome": "decision",
        "detail": "retry by a: b",
        "exceptionSequence": 7,
    }
    assert AuditEntry.from_wire(entry.to_wire()).to_dict() == entry.to_dict()


def test_an_audit_entry_without_an_outcome_is_refused() -> None:
    with pytest.raises(WireFormatError, match="outcome"):
        AuditEntry.from_wire(b'{"time": "t", "integration": "sync"}')


# -- parked record -------------------------------------------------------------------------------


def parked() -> ParkedRecord:
    return ParkedRecord(
        reason="InvalidRecord",
        error="currency must be\nISO",
        step="check",
        integration="sync",
        revision="sync-abc",
        business_key="customer/1",
        original_subject="onceflow.sales.in.shop.customer",
        stream_sequence=12,
        deliveries=1,
        candidates=[{"name": "ACME"}],
        suggestion={"field": "data.currency", "value": "EUR"},
    )


def test_a_parked_record_keeps_the_records_headers_and_round_trips() -> None:
    original = {"Nats-Msg-Id": "ns/shop/1", "Onceflow-Origin": "shop", "traceparent": "00-a"}
    wire = parked().to_headers(original)
    assert "Nats-Msg-Id" not in wire
    assert wire["Onceflow-Origin"] == "shop"
    assert wire["traceparent"] == "00-a"
    assert wire["Onceflow-Error"] == "currency must be ISO"
    assert wire["Onceflow-Stream-Sequence"] == "12"
    back = ParkedRecord.from_headers(wire)
    assert back == parked().model_copy(update={"error": "currency must be ISO"})


def test_a_parked_record_without_step_or_key_says_dash_and_cut_short_candidates_read_as_none() -> None:
    wire = ParkedRecord(reason="MalformedInput", candidates=[{"n": "x" * 5000}]).to_headers()
    assert (wire["Onceflow-Step"], wire["Onceflow-Business-Key"]) == ("-", "-")
    assert len(wire["Onceflow-Candidates"]) == 4000
    assert ParkedRecord.from_headers(wire).candidates == []


@settings(max_examples=60, deadline=None)
@given(
    names=st.lists(st.text(max_size=2000) | st.text("é€😀\ud800\udcff ", max_size=2000), min_size=7, max_size=7),
    error=st.text(max_size=20000) | st.text("é€😀", min_size=1000, max_size=5000),
    candidates=st.lists(st.dictionaries(st.text(max_size=50), st.text(max_size=3000), max_size=5), max_size=5),
    suggestion=st.dictionaries(st.text(max_size=50), st.text(max_size=5000), max_size=5),
)
def test_a_park_adds_at_most_the_headroom_a_producer_leaves_whatever_its_fields(
    names: list[str], error: str, candidates: list[dict[str, str]], suggestion: dict[str, str]
) -> None:
    """The gateway stores a body only with PARK_HEADROOM free under max_payload: a park, with the
    exception or dead-letter message id `_publish_parked` adds, must never need more."""
    reason, step, integration, revision, subject, entity, key = names
    original = {"Nats-Msg-Id": "ns/shop/1", "Onceflow-Origin": "shop", "traceparent": "00-a"}
    record = ParkedRecord(
        reason=reason, error=error, step=step, integration=integration, revision=revision, business_key=key,
        original_subject=subject, stream_sequence=2**63 - 1, deliveries=10**6, candidates=candidates,
        entity=entity, suggestion=suggestion or None,
    )  # fmt: skip
    parked = {**record.to_headers(original), "Nats-Msg-Id": "x" * MAX_MSG_ID_CHARS}
    grown = len(header_block(parked)) - len(header_block(original))
    assert grown <= PARK_HEADROOM


def test_an_old_parked_record_with_only_the_first_headers_reads() -> None:
    old = {"Onceflow-Reason": "ApprovalRequired", "Onceflow-Integration": "sync", "Onceflow-Step": "dedupe"}
    record = ParkedRecord.from_headers(old)
    assert (record.reason, record.integration, record.stream_sequence, record.suggestion) == (
        "ApprovalRequired",
        "sync",
        0,
        None,
    )


def test_a_message_that_was_never_parked_or_has_a_bad_sequence_is_refused() -> None:
    with pytest.raises(WireFormatError, match="no Onceflow-Reason"):
        ParkedRecord.from_headers({"Onceflow-Origin": "shop"})
    with pytest.raises(WireFormatError, match="stream_sequence"):
        ParkedRecord.from_headers({"Onceflow-Reason": "X", "Onceflow-Stream-Sequence": "twelve"})


# -- review decision -----------------------------------------------------------------------------


def decision(action: str = "retry") -> ReviewDecision:
    return ReviewDecision.from_dict(
        {
            "exceptionSequence": 12,
            "action": action,
            "who": "alice",
            "why": "target fixed",
            "time": "2026-11-27T10:00:00+00:00",
            "integration": "sync",
            "businessKey": "customer/1",
            "reason": "InvalidRecord",
        }
    )


def test_a_review_decision_round_trips_with_the_keys_review_always_wrote() -> None:
    made = decision()
    assert list(json.loads(made.to_wire())) == [
        "exceptionSequence",
        "action",
        "who",
        "why",
        "time",
        "integration",
        "businessKey",
        "reason",
    ]
    assert ReviewDecision.from_wire(made.to_wire()) == made


def test_an_older_decision_without_context_reads_and_garbage_is_refused() -> None:
    old = ReviewDecision.from_wire(b'{"exceptionSequence": 3, "action": "discard", "who": "bob", "time": "t"}')
    assert (old.integration, old.why, old.resends) == ("", "", False)
    with pytest.raises(WireFormatError, match="exceptionSequence"):
        ReviewDecision.from_wire(b'{"action": "retry", "who": "bob", "time": "t"}')
    with pytest.raises(WireFormatError, match="action"):
        ReviewDecision.from_wire(b'{"exceptionSequence": 3, "action": "shrug", "who": "bob", "time": "t"}')


def test_a_resent_record_carries_its_own_headers_and_the_decision_but_not_why_it_was_parked() -> None:
    stored = parked().to_headers(
        {"Onceflow-Origin": "shop", "Onceflow-Event": "customer", "Onceflow-Delivery-Id": "1", "ce-id": "1"}
    )
    sent = decision("approve").resend_headers(stored, "sales")
    assert sent == {
        "ce-id": "1",
        "Onceflow-Origin": "shop",
        "Onceflow-Event": "customer",
        "Onceflow-Delivery-Id": "1",
        "Onceflow-Decision": "approved",
        "Onceflow-Decided-By": "alice",
        "Nats-Msg-Id": "resend/sales/12",
    }
    runner_sees = RecordHeaders.from_headers(sent)
    assert (runner_sees.decision, runner_sees.origin) == ("approved", "shop")
    with pytest.raises(ValueError, match="sends nothing"):
        decision("discard").resend_headers(stored, "sales")


def test_the_console_offers_every_review_action() -> None:
    assert set(REVIEW_ACTIONS) == {"retry", "approve", "edit", "reject", "discard"}


def test_an_exception_record_reads_a_decision_given_as_its_wire_dict() -> None:
    record = ExceptionRecord(12, "sync", "InvalidRecord", "check", "e", "k", "r1", "t", b"{}", [], decision().to_dict())
    assert record.decision == decision()
    assert record.summary()["decision"] == decision().to_dict()


# -- drift result --------------------------------------------------------------------------------


def test_a_drift_result_round_trips_and_becomes_the_syncpolicy_status() -> None:
    result = DriftResult(
        sync_policy="customers",
        entity="customer",
        time="2026-11-27T10:00:00+00:00",
        compared=10,
        total=3,
        missing_left=1,
        missing_right=1,
        mismatched=1,
        examples=[{"key": "C1", "fields": ["email"]}],
    )
    assert list(json.loads(result.to_wire())) == [
        "syncPolicy",
        "entity",
        "time",
        "compared",
        "total",
        "missingLeft",
        "missingRight",
        "mismatched",
        "examples",
    ]
    assert DriftResult.from_wire(result.to_wire()) == result
    assert result.to_status() == {
        "total": 3,
        "missingLeft": 1,
        "missingRight": 1,
        "mismatched": 1,
        "complete": True,
        "message": "",
        "lastRunTime": "2026-11-27T10:00:00+00:00",
    }


def test_a_drift_result_without_its_counts_is_refused_not_a_key_error() -> None:
    with pytest.raises(WireFormatError, match="DriftResult"):
        DriftResult.from_wire(b'{"time": "t", "total": 1}')
    with pytest.raises(WireFormatError, match="not JSON"):
        DriftResult.from_wire(b"")


# -- split marker --------------------------------------------------------------------------------


def test_a_split_marker_round_trips_into_the_table_both_lanes_read() -> None:
    table = SplitTable().then(5, 10)
    body = table.marker_payload(50)
    assert json.loads(body) == {"previous": [[5, 10]], "weight": 50}
    assert SplitMarker.from_wire(body) == SplitMarker(previous=((5, 10),), weight=50)
    assert SplitTable.from_marker(9, body) == SplitTable(((5, 10), (9, 50)))
    assert SplitMarker.is_marker(SplitMarker.headers())
    assert not SplitMarker.is_marker({"Onceflow-Origin": "shop"})


def test_a_first_marker_without_history_reads_and_one_without_a_weight_is_refused() -> None:
    assert SplitTable.from_marker(3, b'{"weight": 20}') == SplitTable(((3, 20),))
    with pytest.raises(WireFormatError, match="weight"):
        SplitMarker.from_wire(b'{"previous": []}')
