"""Hostile and careless input against the duplicate review (issue #15, items 3-5), without any server.

Each test is one finding of an outside review: what an ERP, a tenant or a reviewer could send
that broke parking, reading or deciding a possible duplicate, and what holds now.
"""

from __future__ import annotations

import json
from typing import Any, cast

import pytest

from onceflow_operator.review.console import _verdict
from onceflow_runner.contract import headers as h
from onceflow_runner.contract.messages import ParkedCandidates, ParkedRecord
from onceflow_runner.contract.plan import MatchRulePlan, SyncPolicyPlan

_POLICY = SyncPolicyPlan(
    name="customer",
    entity="customer",
    owner_default="erp",
    match_rules=(MatchRulePlan(name="name-postcode", exact=("postal_code",), fuzzy_field="name", fuzzy_threshold=0.9),),
)


def _nested(depth: int) -> dict[str, Any]:
    """A value `depth` mappings deep, as a careless ERP's JSON can be (Python's parser reads ~1,000)."""
    top: dict[str, Any] = {}
    inner = top
    for _ in range(depth):
        inner["a"] = {}
        inner = inner["a"]
    return top


def test_a_record_larger_than_the_largest_message_still_parks_its_candidates() -> None:
    # Finding: the record matched is kept beside the candidates; when it alone is over the limit,
    # leaving out candidates never fits and the server refuses the publish on every delivery.
    message = ParkedCandidates(
        integration="flow",
        record={"notes": "x" * 200_000},
        candidates=[{"rule": "r", "score": 1.0, "candidate": {"name": "Acme"}}],
    )
    kept, body = message.fitted(50_000)
    assert len(body) <= 50_000
    assert kept.record is None  # the reviewer sees the record's original bytes instead
    assert kept.record_omitted
    assert [c["candidate"] for c in kept.candidates] == [{"name": "Acme"}]


def test_candidates_nested_deeper_than_the_serializer_goes_are_stored_cut_at_a_depth() -> None:
    # Finding: a row nested 300 deep (valid JSON) made the candidates message fail to serialize,
    # so the possible duplicate could never be parked.
    deep = _nested(300)
    message = ParkedCandidates(integration="flow", record=deep, candidates=[{"rule": "r", "candidate": deep}])
    _, body = message.fitted(1024 * 1024)
    back = ParkedCandidates.from_wire(body)
    assert back.candidates[0]["rule"] == "r"
    assert "nested deeper than" in body.decode()


def test_values_that_are_not_json_are_stored_as_text() -> None:
    # Finding: bytes that are not UTF-8 (a CEL bytes value in the record) failed the whole message.
    message = ParkedCandidates(
        integration="flow",
        record={"raw": b"\xff\xfe", "tags": {"b"}, 7: "number key"},
        candidates=[{"candidate": {"raw": b"\xff"}}],
    )
    back = ParkedCandidates.from_wire(message.fitted(1024 * 1024)[1])
    assert back.record["7"] == "number key"
    assert back.record["tags"] == ["b"]
    assert isinstance(back.record["raw"], str)
    assert isinstance(back.candidates[0]["candidate"]["raw"], str)


def test_why_parked_headers_on_the_original_record_never_survive_parking() -> None:
    # Finding: parking copies the record's own headers, so a record arriving with
    # Onceflow-Candidates / -Candidates-At / -Entity / -Suggestion (forged, or left from an
    # earlier park) was shown with those candidates and took a verdict though nothing matched.
    forged = {
        h.CANDIDATES: json.dumps([{"rule": "r", "score": 1, "candidate": {"name": "forged"}}]),
        h.CANDIDATES_AT: "7",
        h.ENTITY: "x" * 40,
        h.SUGGESTION: json.dumps({"field": "iban", "value": "forged"}),
        "Traceparent": "00-keep-me",
    }
    invalid = ParkedRecord(reason="Invalid", error="name missing", integration="flow").to_headers(forged)
    assert not {h.CANDIDATES, h.CANDIDATES_AT, h.ENTITY, h.SUGGESTION} & set(invalid)
    assert invalid["Traceparent"] == "00-keep-me"
    duplicate = ParkedRecord(reason="ApprovalRequired", integration="flow", candidates_at=9, entity="customer")
    back = ParkedRecord.from_headers(duplicate.to_headers(forged))
    assert (back.candidates, back.candidates_at, back.entity, back.suggestion) == ([], 9, "customer", None)


@pytest.mark.parametrize("value", ["abc", "-5", "1e3", "", " 7", "9" * 30])
def test_a_garbage_candidates_at_header_reads_as_no_candidates(value: str) -> None:
    # Finding: "abc" made the exception unreadable, and with it every listing of its namespace
    # (console, `exceptions list`, the review gauges); "-5" or a number past 2**63 was asked of
    # the server, which refuses it. An old header cut short always read as none: so does this.
    back = ParkedRecord.from_headers({h.REASON: "ApprovalRequired", h.CANDIDATES_AT: value})
    assert back.candidates_at == 0


@pytest.mark.parametrize("value", ["same:²", "same:٣", "same:" + "9" * 5000, "same:+1", "same: 1", "notSame:0"])
def test_a_forged_verdict_is_a_bad_request_never_a_server_error(value: str) -> None:
    # Finding: `str.isdigit` is true for "²" and the Arabic-Indic digits, and int() of 5,000 digits
    # raises: a forged form answered 500 with a traceback in the log instead of 400.
    from aiohttp import web

    with pytest.raises(web.HTTPBadRequest):
        _verdict(value)


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"customer_name": "name", "company_name": "name"}, "company_name and customer_name both map onto name"),
        ({"zip": "address", "addr.zip": "address.postcode"}, "address and address.postcode"),
    ],
)
def test_a_field_mapping_that_writes_one_canonical_field_twice_is_a_problem(
    fields: dict[str, str], problem: str
) -> None:
    # Finding: two target fields mapped onto one canonical field silently kept the last one present,
    # in the order the API server stores the map (not the order written); a canonical field under
    # another mapped one overwrote it. Which value a rule compared depended on that accident.
    from onceflow_operator.api.steps import Step
    from onceflow_operator.compiler.steps import compile_step

    step = Step.model_validate({"name": "existing", "dedupe": {"connector": "erp", "path": "/c", "fields": fields}})
    compiled = compile_step(step, "spec.steps[1]", has_sync_policy=True)
    assert [(at, message) for at, message in compiled.problems if problem in message] == [
        ("spec.steps[1].dedupe.fields", compiled.problems[0][1])
    ]
    fine = Step.model_validate(
        {
            "name": "existing",
            "dedupe": {"connector": "erp", "path": "/c", "fields": {"a": "name", "b.c": "address.city"}},
        }
    )
    assert compile_step(fine, "spec.steps[1]", has_sync_policy=True).problems == ()


def test_duplicates_caught_never_label_a_gauge_with_an_entity_from_outside() -> None:
    # Finding: the entity label of onceflow_duplicates_caught_by_people came from the exception's
    # Onceflow-Entity header as written; an exception with arbitrary values there (forged in
    # NATS, or written by another tool) made one gauge child each, kept for the operator's life.
    from dataclasses import replace as with_
    from datetime import UTC, datetime

    from onceflow_operator.review.exceptions import review_figures
    from onceflow_operator.review.records import ExceptionRecord
    from onceflow_runner.contract.messages import ReviewDecision

    same = ReviewDecision.from_dict(
        {
            "exceptionSequence": 1,
            "action": "reject",
            "who": "a",
            "time": datetime.now(UTC).isoformat(),
            "verdict": "same",
            "sameAs": 0,
        }
    )
    base = ExceptionRecord(
        1,
        "flow",
        "ApprovalRequired",
        "existing",
        "",
        "k",
        "r1",
        datetime.now(UTC).isoformat(),
        b"{}",
        [{"candidate": {}}],
        same,
        entity="customer",
    )
    records = [base] + [with_(base, entity=f"<script>{i}") for i in range(500)] + [with_(base, entity="")]
    caught = review_figures(records, datetime.now(UTC)).duplicates_caught
    assert caught == {"customer": 1, "other": 501}


def test_mapping_onto_a_list_index_keeps_the_rest_of_the_candidates_list() -> None:
    # Finding: a canonical path through a list (contacts.0.email) replaced the candidate's list
    # with a mapping {"0": ...}, so a rule on contacts.1.email no longer found the second contact.
    from onceflow_runner.matching.fields import canonical_view, field_value

    row = {"main_mail": "new@x.test", "contacts": [{"email": "a@x.test"}, {"email": "b@x.test"}]}
    view = canonical_view(row, {"main_mail": "contacts.0.email"})
    assert field_value(view, "contacts.0.email") == "new@x.test"
    assert field_value(view, "contacts.1.email") == "b@x.test"
    assert row["contacts"][0] == {"email": "a@x.test"}  # the row as the target has it is unchanged
    past_the_end = canonical_view(row, {"main_mail": "contacts.5.email"})
    assert field_value(past_the_end, "contacts.1.email") == "b@x.test"  # an index out of range adds nothing
    assert field_value(past_the_end, "contacts.5.email") is None


def test_exceptions_show_never_sends_a_terminal_control_sequence_from_outside() -> None:
    # Finding: `onceflow exceptions show` printed candidate values, field names and the error as
    # the ERP sent them: an escape sequence in a customer name could retitle the terminal, write the
    # clipboard (OSC 52) or redraw lines (a fake "score 1.00"); a right-to-left override reorders text.
    from onceflow_operator.cli.exceptions import render_exception

    evil = "Acme\x1b]52;c;ZXZpbA==\x07\x1b[2K\rscore 1.00\u202e"
    row = {
        "sequence": 5,
        "integration": "flow",
        "reason": "ApprovalRequired",
        "error": f"possible duplicate {evil}",
        "payload": evil,
        "candidates": [
            {
                "rule": "r",
                "score": 0.4,
                "fields": [{"field": evil, "level": "fuzzy 0.40", "record": evil, "candidate": {"k": evil}}],
                "candidate": {evil: evil},
            }
        ],
    }
    text = render_exception(row)
    assert not any(c in text for c in "\x1b\x07\r\u202e")
    assert "\\x1b]52" in text  # shown, as text
    assert "Köln" in render_exception({**row, "payload": "Köln", "error": "", "candidates": []})


def test_the_page_and_show_take_candidates_of_any_shape_and_escape_every_piece() -> None:
    # Finding: a candidate whose "fields" was not a list (an old header, another writer) raised
    # TypeError: the page answered 500 and `exceptions show` a traceback, so nobody could decide it.
    from datetime import UTC, datetime

    from onceflow_operator.cli.exceptions import render_exception
    from onceflow_operator.review.console import _explanation
    from onceflow_operator.review.records import ExceptionRecord

    hostile: list[dict[str, Any]] = [
        {"rule": "<b>r</b>", "score": "high", "weight": "x", "fields": 5, "candidate": {"<img src=x>": "<script>"}},
        {"rule": "r", "score": 0.9, "fields": {"field": "name"}, "candidate": None, "decision": "<i>"},
        {"rule": "r", "score": 0.8, "fields": [{"field": "<svg onload=1>", "record": "</pre>", "candidate": 7}, 3]},
    ]
    record = ExceptionRecord(
        1, "flow", "ApprovalRequired", "existing", "", "k", "r1", datetime.now(UTC).isoformat(), b"{}", hostile, None
    )
    page = _explanation(record, "{}")
    for raw in ("<script>", "<img", "<svg", "<b>r", "<i>"):
        assert raw not in page
    assert "&lt;svg onload=1&gt;" in page
    shown = render_exception(
        {"sequence": 1, "integration": "flow", "reason": "ApprovalRequired", "candidates": hostile}
    )
    assert "Candidate 3: rule r, score 0.80" in shown


def test_not_the_same_with_retry_is_refused_because_retry_parks_it_again() -> None:
    # Finding: `exceptions retry N --not-same` was accepted, but a retry carries no approval of the
    # duplicate check: the record matched the same candidates and was parked again, so the
    # reviewer's answer changed nothing but a label, and the same question came back.
    from datetime import UTC, datetime

    from onceflow_operator.review.decisions import _check_verdict
    from onceflow_operator.review.errors import ReviewError
    from onceflow_operator.review.records import ExceptionRecord

    record = ExceptionRecord(
        1,
        "flow",
        "ApprovalRequired",
        "existing",
        "",
        "k",
        "r1",
        datetime.now(UTC).isoformat(),
        b"{}",
        [{"candidate": {}}],
        None,
    )
    with pytest.raises(ReviewError, match="approve it"):
        _check_verdict(record, "retry", "notSame", None)
    _check_verdict(record, "approve", "notSame", None)
    _check_verdict(record, "edit", "notSame", None)  # an edited record is a new one: checked again


def test_a_key_with_dots_is_found_at_any_depth_not_only_at_the_top() -> None:
    # Finding: a flat key with dots was read only at the top of a row; an ERP nesting its flat
    # export one level down ({"address": {"post.code": ...}}) never matched `address.post.code`.
    from onceflow_runner.matching.fields import field_value

    row = {"address": {"post.code": "10115", "city": "Berlin"}, "a": [{"b.c": 1}]}
    assert field_value(row, "address.post.code") == "10115"
    assert field_value(row, "a.0.b.c") == 1
    assert field_value(row, "address.city") == "Berlin"
    assert field_value(row, "address.post") is None
    assert field_value({"x": "text"}, "x.y") is None  # a path through a value that is no container
    assert field_value([1, 2], "5") is None


@pytest.mark.parametrize("name", [h.CANDIDATES, h.SUGGESTION])
def test_a_deeply_nested_json_header_reads_as_none_and_never_breaks_the_listing(name: str) -> None:
    # Finding: an old-form candidates header (or a suggestion) of 1,999 nested brackets fits in
    # its 4,000 characters; reading it raised RecursionError (not ValueError), and one such
    # exception made its namespace's listing, console page and review gauges fail.
    nested = "[" * 1999 + "]" * 1999
    back = ParkedRecord.from_headers({h.REASON: "ApprovalRequired", name: nested})
    assert (back.candidates, back.suggestion) == ([], None)


def test_a_message_body_nested_past_the_parsers_depth_is_a_wire_format_error() -> None:
    # Same finding for bodies: a candidates message (or any wire message) nested 100,000 deep
    # raised RecursionError past every `except WireFormatError` that guards a reader.
    from onceflow_runner.errors import WireFormatError

    with pytest.raises(WireFormatError, match="not JSON"):
        ParkedCandidates.from_wire(b'{"candidates": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")


def test_a_payload_nested_past_the_parsers_depth_is_shown_and_labelled_as_text() -> None:
    # Same finding for the record's own bytes: the page, `exceptions show` and the labels parse
    # them, and a body of 100,000 nested brackets raised RecursionError (500, traceback).
    from dataclasses import replace as with_
    from datetime import UTC, datetime

    from onceflow_operator.cli.exceptions import _payload
    from onceflow_operator.review.console import Console, Identity
    from onceflow_operator.review.console_access import ConsoleAccess
    from onceflow_operator.review.labels import labels_of
    from onceflow_operator.review.records import ExceptionRecord
    from onceflow_runner.contract.messages import ReviewDecision

    deep = b"[" * 100_000 + b"]" * 100_000
    assert _payload(deep) == deep.decode()
    same = ReviewDecision.from_dict(
        {"exceptionSequence": 1, "action": "reject", "who": "a", "time": "t", "verdict": "same", "sameAs": 0}
    )
    record = ExceptionRecord(
        1,
        "flow",
        "ApprovalRequired",
        "existing",
        "",
        "k",
        "r1",
        datetime.now(UTC).isoformat(),
        deep,
        [{"candidate": {"name": "Acme"}}],
        same,
    )
    (label,) = labels_of(record)
    assert label.left == deep.decode()
    console = Console("nats://127.0.0.1:1", cast(Any, None), auth="proxy", secret=b"k" * 32, access=ConsoleAccess())
    page = console._detail(with_(record, decision=None), "ns", Identity("alice", ()), None)
    assert "[[[" in page


def test_an_erp_answer_nested_past_the_parsers_depth_is_read_as_text() -> None:
    # Finding: a search answer of 100,000 nested brackets (a careless or hostile ERP) raised
    # RecursionError out of the Connector call instead of being read as text, which the step
    # then refuses with its usual message (the candidates are not a list).
    import httpx

    from onceflow_runner.adapters.sessions import json_or_text

    deep = "[" * 100_000 + "]" * 100_000
    answer = httpx.Response(200, content=deep.encode(), headers={"Content-Type": "application/json"})
    assert json_or_text(answer) == deep


def test_a_candidate_row_larger_than_the_message_is_kept_with_its_long_values_cut() -> None:
    # Finding: one candidate row over the largest message (a 2 MB notes field) was left out whole,
    # so the reviewer saw "0 candidates, 1 left out" and could give no verdict; its explanation
    # (which fields agreed) is a few hundred bytes.
    best = {
        "rule": "similar-name",
        "score": 0.97,
        "fields": [{"field": "name", "level": "fuzzy 0.97", "record": "Acme", "candidate": "ACME"}],
        "candidate": {"name": "CUST-7", "customer_name": "ACME", "notes": "n" * 2_000_000},
    }
    kept, body = ParkedCandidates(integration="flow", record={"name": "Acme"}, candidates=[best]).fitted(1_000_000)
    assert len(body) <= 1_000_000
    assert kept.omitted == 0
    (shown,) = kept.candidates
    assert shown["fields"] == best["fields"]
    assert shown["candidate"]["name"] == "CUST-7"
    assert shown["candidate"]["notes"].endswith("(cut: 2000000 characters)")
    assert kept.record == {"name": "Acme"}


async def test_rows_that_are_not_objects_and_a_spoofed_row_index_never_confuse_the_mapping() -> None:
    # Outside review, what held: rows that are no objects are skipped, and a row carrying the
    # key the mapping keeps its row index under ("\x00row", valid JSON) cannot point a match at
    # another row.
    from onceflow_runner.engine.steps.dedupe import _matches

    rows: list[Any] = [
        "CUST-1",
        None,
        7,
        ["Acme"],
        {"customer_name": "Other Corp", "\x00row": 5, "pincode": "1"},
        {"customer_name": "Acme", "pincode": "1", "\x00row": 0},
    ]
    matches = await _matches(
        {"name": "Acme", "postal_code": "1"}, rows, {"customer_name": "name", "pincode": "postal_code"}, _POLICY
    )
    assert [m["candidate"]["customer_name"] for m in matches] == ["Acme"]
    assert matches[0]["candidate"] == rows[5]  # the row as the ERP sent it, its own odd key included
