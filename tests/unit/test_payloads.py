"""Payload decoding: any bytes a sender can post end as a record or a MalformedInput (issue 19, item 6)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onceflow_runner.errors import MalformedInput
from onceflow_runner.payloads.decode import MAX_DEPTH, decode_payload, nesting_depth


@pytest.mark.parametrize("data", [b"[" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000])
def test_json_nested_past_the_recursion_limit_is_malformed_input_not_recursion_error(data: bytes) -> None:
    with pytest.raises(MalformedInput, match=f"nests deeper than {MAX_DEPTH} levels"):
        decode_payload(data, "application/json")


def test_json_nested_deeper_than_the_limit_is_refused_and_at_the_limit_accepted() -> None:
    at_limit = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert nesting_depth(decode_payload(at_limit.encode(), "application/json")) == MAX_DEPTH
    with pytest.raises(MalformedInput, match="nests deeper"):
        decode_payload(("[" + at_limit + "]").encode(), "application/json")


@pytest.mark.parametrize("data", [b'{"price": NaN}', b'{"price": Infinity}', b'{"price": -Infinity}', b'{"p": 1e400}'])
def test_non_finite_numbers_in_json_are_malformed_input(data: bytes) -> None:
    with pytest.raises(MalformedInput, match="fix the sender"):
        decode_payload(data, "application/json")


def test_payload_over_the_size_limit_is_refused_before_any_rule() -> None:
    with pytest.raises(MalformedInput, match="limited to 1000 bytes"):
        decode_payload(json.dumps({"x": "y" * 2000}).encode(), "application/json", max_bytes=1000)


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=30,
)


@settings(deadline=None, max_examples=400)
@given(
    data=st.binary(max_size=300)
    | json_like.map(lambda v: json.dumps(v).encode())
    | st.integers(min_value=1, max_value=3000).map(lambda n: b"[" * n + b"]" * n)
    | st.sampled_from([b"NaN", b"[Infinity]", b"ISA*00", b"\xff\xfe{}", b""]),
    content_type=st.sampled_from(["application/json", "application/edi-x12", "text/plain"]),
)
def test_any_bytes_decode_to_a_finite_record_or_malformed_input(data: bytes, content_type: str) -> None:
    try:
        value = decode_payload(data, content_type)
    except MalformedInput:
        return
    assert _finite(value)
    assert nesting_depth(value) <= MAX_DEPTH
