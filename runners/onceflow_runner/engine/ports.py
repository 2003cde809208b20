"""The engine's ways out: Connectors, canonical events, and CEL that must run under a deadline.

A `Caller` calls Connectors, an `EventSink` takes canonical events, an `IsolatedEvaluator` runs
CEL whose cost the payload size does not bound. Why a module of its own: the engine does no
I/O, so what it calls is a protocol here and the implementations live elsewhere (httpx in
`adapters.outbound`, JetStream in the runner, worker processes in `adapters.expression_workers`,
recording fakes in tests and `onceflow test`). Step modules and adapters both import these names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["Caller", "EventSink", "IsolatedEvaluator", "Response"]


@dataclass(frozen=True)
class Response:
    """What a Connector answered."""

    status: int
    body: Any
    latency_ms: float = 0.0
    #: Bytes of the body as received: a large answer makes the rest of the record's CEL isolated.
    size: int = 0
    #: Answer headers, lowercase names (paging reads `link`; answer rules read them as `headers`).
    headers: Mapping[str, str] = field(default_factory=dict)


class Caller(Protocol):
    """Outbound requests to Connectors (implemented over httpx in `outbound`)."""

    async def request(
        self,
        connector: str,
        method: str,
        path: str,
        *,
        query: Mapping[str, str],
        body: Any,
        idempotency_key: str | None,
        headers: Mapping[str, str],
        step: str,
        answer_refusals: bool = False,
    ) -> Response: ...


class EventSink(Protocol):
    """Where canonical events go (JetStream in the runner)."""

    async def publish_event(
        self, entity: str, verb: str, data: Any, *, msg_id: str, meta: Mapping[str, Any]
    ) -> None: ...

    async def hand_over_edi(
        self, connector: str, document: str, data: Any, *, step: str, msg_id: str, meta: Mapping[str, Any]
    ) -> None:
        """Give `data` to an EDI partner's pod, which sends it as `document` once per business key."""
        ...


class IsolatedEvaluator(Protocol):
    """Evaluates one CEL expression away from the event loop, killed at a deadline.

    Raises InvalidRecord for what the record got wrong (a missing field, a type error) and
    ExpressionBudgetExceeded when the expression outran its deadline or memory.
    """

    async def evaluate(self, source: str, variables: Mapping[str, Any], *, step: str, what: str) -> Any: ...
