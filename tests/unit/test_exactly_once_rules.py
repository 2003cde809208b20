"""The pure rules behind "one effect per business key": bounded keys, key-store entries, ackWait."""

from __future__ import annotations

import json

import pytest

from onceflow_runner.adapters.keystore import kv_key
from onceflow_runner.contract.keys import (
    HASH_MARK,
    MAX_KEY_CHARS,
    MAX_MSG_ID_CHARS,
    KeyState,
    bounded_id,
    bounded_key,
)


def test_short_printable_keys_are_kept_so_keys_stored_before_still_match() -> None:
    assert bounded_key("cust/DE123456789") == "cust/DE123456789"
    assert kv_key("sync", "k/a1") == "sync.ay9hMQ=="  # base64url of the key, as always


def test_two_4kb_keys_that_differ_only_at_the_end_stay_different_and_bounded() -> None:
    first, second = "L" * 4000 + "a", "L" * 4000 + "b"
    assert bounded_key(first) != bounded_key(second)
    assert len(bounded_key(first)) <= MAX_KEY_CHARS
    assert bounded_key(first).startswith("LLLL")
    assert len(kv_key("sync", first)) < 400, "the key store's subject stays far below the control line"


def test_a_hashed_form_can_never_be_forged_by_a_short_key() -> None:
    long_key = "x" * 500
    forged = bounded_key(long_key)
    assert HASH_MARK in forged
    assert bounded_key(forged) != forged  # a key that looks hashed is hashed again


@pytest.mark.parametrize("key", ["line\nbreak", "Müller GmbH", " padded\t"])
def test_keys_that_cannot_be_one_header_line_are_hashed(key: str) -> None:
    bounded = bounded_key(key)
    assert bounded.isascii()
    assert bounded.isprintable()
    assert HASH_MARK in bounded


def test_message_ids_are_hashed_not_truncated() -> None:
    base = "sales/crm/" + "d" * 300
    assert bounded_id(base + "1") != bounded_id(base + "2")
    assert len(bounded_id(base + "1")) <= MAX_MSG_ID_CHARS
    assert bounded_id("sales/crm/d1") == "sales/crm/d1"


def test_key_store_entries_written_before_claims_read_as_done_except_filtered_ones() -> None:
    assert KeyState.from_wire(json.dumps({"outcome": "completed", "revision": "r", "at": 1.0}).encode()).is_done
    assert not KeyState.from_wire(json.dumps({"outcome": "filtered", "revision": "r", "at": 1.0}).encode()).is_done
    claim = KeyState(state="claimed", owner="pod", lease_until=110.0)
    assert not claim.is_done
    assert claim.lease_left(100.0) == 10.0
    assert claim.lease_left(120.0) == 0.0
    assert KeyState.from_wire(claim.to_wire()) == claim
