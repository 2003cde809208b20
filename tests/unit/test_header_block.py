"""The NATS header block the gateway encodes once: what nats-py would write, and no header injection."""

from __future__ import annotations

from onceflow_runner.adapters.pubacks import header_block


def test_block_is_what_nats_py_writes_for_the_same_headers() -> None:
    block = header_block({"Nats-Msg-Id": " ns/src/d-1 ", "Content-Type": "application/json", "ce-source": "/ä"})
    assert (
        block
        == b"NATS/1.0\r\nNats-Msg-Id: ns/src/d-1\r\nContent-Type: application/json\r\nce-source: /\xc3\xa4\r\n\r\n"
    )


def test_a_value_cannot_end_its_header_and_add_another() -> None:
    block = header_block({"Content-Type": "text/plain\r\nNats-Expected-Stream: OTHER", "Onceflow-Event": "x\ny"})
    assert block == b"NATS/1.0\r\nContent-Type: text/plainNats-Expected-Stream: OTHER\r\nOnceflow-Event: xy\r\n\r\n"
    assert block.count(b"\r\n") == 4
