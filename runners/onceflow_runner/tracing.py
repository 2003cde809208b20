"""OpenTelemetry spans along a record's path, joined by the W3C `traceparent` the record carries.

Why a module of its own, low in the layers: the gateway, the runner, the engine's step walk and
the outbound adapter all open spans, and they must agree on span names, attribute keys and how
a business key is shown; the engine may import nothing above it, so this sits just above the
contract and imports only the OpenTelemetry API (no SDK, no exporter, no network).

Off by default, and then nearly free: until `enable` is called (by `adapters.otlp.configure`
when the standard `OTEL_*` variables ask for an exporter), `span` returns one shared no-op
context manager without touching OpenTelemetry at all, and `traceparent_of` returns None, so
the record keeps the traceparent it came with (docs/benchmarks.md measures both ways).

One trace per record: the gateway's receive span is the child of the sender's traceparent (or
a root), the record stores its publish span's traceparent, and every delivery's settle span
(first try, redeliveries, the delivery after a person's decision) is a child of that one, with
its step and outbound call spans below it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Final

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from onceflow_runner.contract.environment import TRACE_HASH_KEY_ENV

__all__ = [
    "BUSINESS_KEY",
    "CONNECTOR",
    "DECISION",
    "DELIVERY",
    "EVENT",
    "HASH_KEYS_ENV",
    "HASH_KEY_ENV",
    "INTEGRATION",
    "NAMESPACE",
    "OUTCOME",
    "REASON",
    "REVISION",
    "STEP",
    "STEP_KIND",
    "business_key_value",
    "current_traceparent",
    "disable",
    "enable",
    "hashes_keys",
    "is_enabled",
    "keyed_business_key",
    "set_outcome",
    "span",
    "traceparent_of",
]

#: Attribute keys, defined once (the Jaeger test and docs/observability.md read the same names).
INTEGRATION: Final = "onceflow.integration"
REVISION: Final = "onceflow.revision"
NAMESPACE: Final = "onceflow.namespace"
CONNECTOR: Final = "onceflow.connector"
EVENT: Final = "onceflow.event"
BUSINESS_KEY: Final = "onceflow.business_key"
OUTCOME: Final = "onceflow.outcome"
DELIVERY: Final = "onceflow.delivery"
DECISION: Final = "onceflow.decision"
STEP: Final = "onceflow.step"
STEP_KIND: Final = "onceflow.step.kind"
REASON: Final = "onceflow.reason"

#: `true` shows business keys in spans as hashes (a tax id or an e-mail is personal data a tracing
#: backend may keep longer than the records themselves).
HASH_KEYS_ENV: Final = "ONCEFLOW_TRACE_HASH_KEYS"
#: The namespace's secret hash key (the operator writes it into the `onceflow-trace` Secret): with
#: it, keys are shown as `hmac-sha256:<hex>`, which nobody without the key can reverse by trying
#: every value; without it, as `sha256:<hex>`.
HASH_KEY_ENV: Final = TRACE_HASH_KEY_ENV

_TRACER_NAME: Final = "onceflow"
_PROPAGATOR: Final = TraceContextTextMapPropagator()
_state = {"enabled": False, "hash_keys": False}
#: The secret `business_key_value` keys its hash with (empty: an unkeyed SHA-256).
_hash_key: list[bytes] = [b""]
#: The tracer spans come from: the global provider's, or the one `enable` was given (unit tests).
_tracers: list[trace.Tracer] = []


class _NoSpan(AbstractContextManager[Span]):
    """What `span` returns while tracing is off: one shared object, no OpenTelemetry call."""

    def __enter__(self) -> Span:
        return trace.INVALID_SPAN

    def __exit__(self, *exc: object) -> None:
        return None


_NO_SPAN: Final = _NoSpan()


def enable(provider: trace.TracerProvider | None = None) -> None:
    """Turn spans on for this process (called once an SDK tracer provider is installed).

    `provider`: spans come from it instead of the global provider (the test seam: OpenTelemetry
    lets the global provider be set only once per process).
    """
    _tracers[:] = [(provider or trace.get_tracer_provider()).get_tracer(_TRACER_NAME)]
    _state["enabled"] = True
    _state["hash_keys"] = os.environ.get(HASH_KEYS_ENV, "").strip().lower() in {"1", "true", "yes"}
    _hash_key[0] = os.environ.get(HASH_KEY_ENV, "").strip().encode()


def disable() -> None:
    """Turn spans off again (at shutdown, and for tests that enable them in-process)."""
    _state["enabled"] = _state["hash_keys"] = False
    _hash_key[0] = b""
    _tracers.clear()


def is_enabled() -> bool:
    """True once `enable` ran: spans are recorded and exported."""
    return _state["enabled"]


def _parent(traceparent: str | None) -> Context | None:
    if not traceparent:
        return None
    return _PROPAGATOR.extract({"traceparent": traceparent})


def span(
    name: str,
    *,
    traceparent: str | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> AbstractContextManager[Span]:
    """A span made current inside the block; the child of `traceparent` when given, else of the current span.

    An exception leaving the block is recorded on the span and sets its status to error.
    While tracing is off this returns a shared no-op (see the module docstring).
    """
    if not _state["enabled"]:
        return _NO_SPAN
    return _started(name, _parent(traceparent), kind, attributes)


@contextmanager
def _started(
    name: str, parent: Context | None, kind: SpanKind, attributes: Mapping[str, AttributeValue] | None
) -> Iterator[Span]:
    tracer = _tracers[0] if _tracers else trace.get_tracer(_TRACER_NAME)
    with tracer.start_as_current_span(
        name, context=parent, kind=kind, attributes=attributes, record_exception=False, set_status_on_exception=False
    ) as current:
        try:
            yield current
        except BaseException as exc:
            _record_failure(current, exc)
            raise


def _record_failure(current: Span, exc: BaseException) -> None:
    """An exception on the span; with hashed keys only its type (a message may quote a key or a path)."""
    if _state["hash_keys"]:
        current.set_status(StatusCode.ERROR, type(exc).__name__)
        current.add_event("exception", {"exception.type": type(exc).__name__})
    else:
        current.record_exception(exc)
        current.set_status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}")


def traceparent_of(current: Span) -> str | None:
    """The W3C traceparent naming `current` (for the next hop's headers); None while tracing is off."""
    context = current.get_span_context()
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def current_traceparent() -> str | None:
    """The traceparent of the span current here (e.g. a publish step's); None while tracing is off."""
    if not _state["enabled"]:
        return None
    return traceparent_of(trace.get_current_span())


def hashes_keys() -> bool:
    """True when spans must not show business keys (ONCEFLOW_TRACE_HASH_KEYS)."""
    return _state["hash_keys"]


def business_key_value(key: str) -> str:
    """A business key as spans show it: as is, or hashed when ONCEFLOW_TRACE_HASH_KEYS is true.

    Hashed with the namespace's secret key when the pod has one (`keyed_business_key`), else
    `sha256:<hex>`, which hides a key from a reader but not from someone trying every value.
    """
    if _state["hash_keys"]:
        if _hash_key[0]:
            return keyed_business_key(_hash_key[0], key)
        return "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    return key


def keyed_business_key(secret: bytes, key: str) -> str:
    """`hmac-sha256:<hex>` of `key` under `secret`: what spans show, and what `onceflow trace key` prints."""
    return "hmac-sha256:" + hmac.new(secret, key.encode(), hashlib.sha256).hexdigest()


def set_outcome(current: Span, outcome: str, *, error: str | None = None) -> None:
    """Record how a delivery or step left; an error outcome also sets the span's status.

    With hashed keys the status carries no description: `error` often quotes a path or a value.
    """
    current.set_attribute(OUTCOME, outcome)
    if error is not None:
        current.set_status(StatusCode.ERROR, None if _state["hash_keys"] else error)
