"""Bytes -> the `input` the steps see, or a MalformedInput saying why not.

Why a module of its own: what a sender can put in a body (any bytes, any nesting, any size up to
the gateway's cap) must end as a record or as a permanent failure naming the problem; an
unexpected exception (RecursionError from `[[[[...`, a NaN smuggled in as a price) would leave
the record to be redelivered until it vanished. The checks run once here, before any CEL.
"""

from __future__ import annotations

import json
import math
from typing import Any

from onceflow_runner.errors import MalformedInput
from onceflow_runner.payloads.x12 import decode_x12

__all__ = ["MAX_DEPTH", "MAX_PAYLOAD_BYTES", "decode_payload", "nesting_depth"]

#: Deeper documents are refused: no business record nests this far, and CEL, pydantic and the
#: JSON encoder all recurse over what the steps hand them.
MAX_DEPTH = 64
#: Larger payloads are refused before any rule runs (the gateway's default body cap).
MAX_PAYLOAD_BYTES = 1024 * 1024


def _refuse_constant(name: str) -> Any:
    raise MalformedInput(f"payload holds {name}, which is not JSON (RFC 8259); fix the sender and resend")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise MalformedInput(f"payload holds the number {text[:40]}, too large to be a finite value; fix the sender")
    return value


def nesting_depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """How deeply lists and objects nest in `value` (0 for a scalar), counting no further than limit + 1."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        stack.extend((child, depth) for child in children)
    return deepest


def decode_payload(data: bytes, content_type: str, *, max_bytes: int = MAX_PAYLOAD_BYTES) -> Any:
    """Decode JSON, or an X12 850 into a canonical order; raise MalformedInput for anything else."""
    if len(data) > max_bytes:
        raise MalformedInput(
            f"payload is {len(data)} bytes; records are limited to {max_bytes} bytes before any rule runs"
        )
    if "x12" in content_type.lower() or data.lstrip()[:3] == b"ISA":
        return decode_x12(data)
    try:
        value = json.loads(data, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise MalformedInput(f"payload nests deeper than {MAX_DEPTH} levels; fix the sender and resend") from None
    except ValueError as exc:
        raise MalformedInput(f"payload is not JSON ({exc}); fix the sender and resend") from None
    # Each level opens with `{` or `[`: bytes with no more of them than the limit cannot nest
    # deeper (brackets inside strings only add to the count), so most records skip the walk.
    if data.count(b"{") + data.count(b"[") > MAX_DEPTH and nesting_depth(value) > MAX_DEPTH:
        raise MalformedInput(f"payload nests deeper than {MAX_DEPTH} levels; fix the sender and resend")
    return value
