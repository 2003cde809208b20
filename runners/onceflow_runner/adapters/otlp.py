"""Span export over OTLP (http/protobuf), set up from the standard `OTEL_*` environment variables.

Why here: exporting is network I/O, which the data plane keeps in `adapters`; the spans
themselves are opened through `onceflow_runner.tracing` with the OpenTelemetry API only.

Tracing is on when `OTEL_TRACES_EXPORTER` is `otlp`, or when it is unset and an OTLP endpoint is
set (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`); it stays off for
`OTEL_SDK_DISABLED=true`, `OTEL_TRACES_EXPORTER=none` and when nothing is set. Every other
setting (headers, timeout, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, the batch sizes,
`OTEL_TRACES_SAMPLER`) is read by the SDK itself, as its documentation says. The SDK and the
exporter are imported only when tracing is on: a process with tracing off never loads them.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from onceflow_runner import tracing

if TYPE_CHECKING:
    import requests

__all__ = [
    "ANSWER_LIMIT",
    "SHUTDOWN_SECONDS",
    "bounded_session",
    "configure",
    "is_configured",
    "settings_problem",
    "shutdown",
    "wants_tracing",
]

log = logging.getLogger("onceflow.tracing")

_ENDPOINTS: Final = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_FILES: Final = tuple(
    f"OTEL_EXPORTER_OTLP_{signal}{kind}"
    for signal in ("", "TRACES_")
    for kind in ("CERTIFICATE", "CLIENT_KEY", "CLIENT_CERTIFICATE")
)
_provider: list[object] = []


def wants_tracing(env: Mapping[str, str]) -> bool:
    """True when the environment asks for OTLP span export (see the module docstring)."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return "otlp" in {e.strip() for e in exporter.split(",")}
    return any(env.get(name, "").strip() for name in _ENDPOINTS)


def settings_problem(env: Mapping[str, str]) -> str | None:
    """What is wrong with the OTLP endpoint and TLS file variables, naming the variable but never its value.

    Why check: the SDK takes any text, and a path to a file this pod does not have (the operator
    hands its own OTEL_* on), and then fails every batch with an error line; an endpoint may
    hold a password (`https://user:key@host`), so values are not repeated in the log.
    """
    for name in _FILES:
        path = env.get(name, "").strip()
        if path and not (os.path.isfile(path) and os.access(path, os.R_OK)):
            return f"{name} names no readable file in this container (mount it, or unset the variable)"
    for name in _ENDPOINTS:
        value = env.get(name, "").strip()
        if not value:
            continue
        try:
            parts = urlsplit(value)
            usable = parts.scheme in {"http", "https"} and bool(parts.hostname) and (parts.port or 0) >= 0
        except ValueError:
            usable = False
        if not usable:
            return f"{name} is not an http(s) URL (set it like http://collector.observability:4318)"
    return None


#: How long a stopping process waits for its last spans to reach the collector.
SHUTDOWN_SECONDS: Final = 5.0
#: How much of a collector's answer the exporter reads: an OTLP answer is a few bytes of protobuf.
ANSWER_LIMIT: Final = 64 * 1024


def bounded_session() -> requests.Session:
    """A requests session that reads at most `ANSWER_LIMIT` bytes of any answer, then drops the connection.

    Why: the SDK's exporter reads a collector's whole answer into memory; a broken or hostile
    endpoint answering with an endless body grew a runner by hundreds of MB a second until its
    pod was killed. Each read is bounded by the request's timeout, as before.
    """
    import requests

    class _Bounded(requests.Session):
        def request(self, *args: Any, **kwargs: Any) -> requests.Response:
            kwargs["stream"] = True
            response = super().request(*args, **kwargs)
            body = bytearray()
            try:
                for chunk in response.iter_content(8192):
                    body += chunk
                    if len(body) >= ANSWER_LIMIT:
                        break
            finally:
                response.close()
            response._content = bytes(body[:ANSWER_LIMIT])
            return response

    return _Bounded()


def _unsupported_exporter(env: Mapping[str, str]) -> str:
    """The OTEL_TRACES_EXPORTER asked for that this process cannot run ("" when none, or tracing is disabled)."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return ""
    names = [e.strip().lower() for e in env.get("OTEL_TRACES_EXPORTER", "").split(",") if e.strip()]
    return ",".join(n for n in names if n not in {"otlp", "none"})


def configure(service_name: str, env: Mapping[str, str] | None = None) -> bool:
    """Install an SDK tracer provider exporting over OTLP/HTTP when the environment asks; True if it did.

    `service_name` is the default `service.name` (`OTEL_SERVICE_NAME` wins). Spans leave in
    batches from a background thread; `shutdown` sends what is left.
    """
    env = os.environ if env is None else env
    if _provider:
        return True
    if not wants_tracing(env):
        unsupported = _unsupported_exporter(env)
        if unsupported:
            log.warning(
                "OTEL_TRACES_EXPORTER=%s is not supported; spans are not exported (set it to otlp, or none)",
                unsupported,
            )
        return False
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or ""
    if protocol and protocol != "http/protobuf":
        log.warning(
            "OTEL_EXPORTER_OTLP_PROTOCOL=%s is not supported; spans are sent as http/protobuf "
            "(point the endpoint at the collector's OTLP/HTTP port, usually 4318)",
            protocol,
        )
    problem = settings_problem(env)
    if problem is not None:
        log.error("%s; spans are not exported", problem)
        return False
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    try:
        processor = BatchSpanProcessor(OTLPSpanExporter(session=bounded_session()))
    except ValueError as exc:  # e.g. OTEL_BSP_MAX_EXPORT_BATCH_SIZE above OTEL_BSP_MAX_QUEUE_SIZE
        log.error("OTEL_BSP_* settings refused (%s); spans are not exported", exc)
        return False
    resource = Resource.create({SERVICE_NAME: env.get("OTEL_SERVICE_NAME") or service_name})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    _provider.append(provider)
    tracing.enable()
    log.info("exporting spans over OTLP", extra={"service": resource.attributes.get(SERVICE_NAME)})
    return True


def is_configured() -> bool:
    """True while this process exports spans."""
    return bool(_provider)


def shutdown() -> None:
    """Send the spans still queued and stop the exporter, giving up after `SHUTDOWN_SECONDS`.

    Why a bound of our own: the SDK's shutdown retries each batch up to its export timeout, and
    took 30 s against a collector that accepts connections but never answers; a pod stopping
    for a rollout should not wait on its tracing backend.
    """
    for provider in _provider:
        stop = getattr(provider, "shutdown", None)
        if stop is None:
            continue
        stopping = threading.Thread(target=stop, name="otlp-shutdown", daemon=True)
        stopping.start()
        stopping.join(SHUTDOWN_SECONDS)
        if stopping.is_alive():
            log.warning(
                "spans not sent within %s s of stopping are dropped (collector not answering)", SHUTDOWN_SECONDS
            )
    _provider.clear()
    tracing.disable()
