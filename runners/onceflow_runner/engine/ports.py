"""The engine's two ways out: a `Caller` for Connectors and an `EventSink` for canonical events.

Why a module of its own: the engine does no I/O, so what it calls is a protocol here and the
implementations live elsewhere (httpx in `adapters.outbound`, JetStream in the runner, recording
fakes in tests and `onceflow test`). Step modules and adapters both import these names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["Caller", "EventSink", "Response"]


@dataclass(frozen=True)
class Response:
    """What a Connector answered."""

    status: int
    body: Any
    latency_ms: float = 0.0


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
    ) -> Response: ...


class EventSink(Protocol):
    """Where canonical events go (JetStream in the runner)."""

    async def publish_event(
        self, entity: str, verb: str, data: Any, *, msg_id: str, meta: Mapping[str, Any]
    ) -> None: ...
