"""Bytes as they arrived -> the `input` a workflow's steps see.

One function, so the runner and `onceflow test` (workflow fixtures) read a payload the same way:
an X12 850 (by content type or by its `ISA` envelope) becomes a canonical order, anything else
must be JSON. Undecodable bytes are a `MalformedInput`: a person must look, retrying cannot help.
"""

from __future__ import annotations

import json
from typing import Any

from onceflow_runner.errors import MalformedInput
from onceflow_runner.payloads.x12 import decode_x12

__all__ = ["decode_payload"]


def decode_payload(data: bytes, content_type: str) -> Any:
    """Bytes -> the `input` the steps see: JSON, or an X12 850 decoded into a canonical order."""
    if "x12" in content_type.lower() or data.lstrip()[:3] == b"ISA":
        return decode_x12(data)
    try:
        return json.loads(data)
    except ValueError as exc:
        raise MalformedInput(f"payload is not JSON ({exc}); fix the sender and resend") from None
