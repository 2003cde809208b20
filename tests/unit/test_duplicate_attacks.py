"""Hostile and careless input against the duplicate review (issue #15, items 3-5), without any server.

Each test is one finding of an outside review: what an ERP, a tenant or a reviewer could send
that broke parking, reading or deciding a possible duplicate, and what holds now.
"""

from __future__ import annotations

from typing import Any

from onceflow_runner.contract.messages import ParkedCandidates


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
