"""Spans without a backend: off costs nothing and changes nothing; on, spans nest and hop by traceparent.

The SDK's in-memory exporter stands in for the collector (the real Jaeger is in
tests/integration/test_tracing.py); the tracer provider is handed to `tracing.enable`, the test seam.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from onceflow_runner import tracing
from onceflow_runner.adapters.otlp import wants_tracing
from onceflow_runner.adapters.outbound import HttpCaller
from onceflow_runner.contract.plan import ConnectorPlan, Plan
from onceflow_runner.errors import TransientFailure

SENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    monkeypatch.delenv(tracing.HASH_KEYS_ENV, raising=False)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.enable(provider)
    yield exporter
    tracing.disable()
    provider.shutdown()


def caller_seeing(seen: list[httpx.Request], tmp_path: Path, status: int = 200) -> HttpCaller:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, json={"data": []})

    connector = ConnectorPlan.model_validate({"name": "erp", "base_url": "http://erp.test:8000", "attempts": 2})
    return HttpCaller({"erp": connector}, tmp_path, transport=httpx.MockTransport(answer))


async def call(caller: HttpCaller, path: str = "/api/resource/Customer/DE123") -> object:
    return await caller.request(
        "erp", "GET", path, query={}, body=None, idempotency_key=None, headers={"traceparent": SENT}, step="s"
    )


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "runner"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, False),
    ],
)
def test_spans_are_exported_only_when_the_otel_environment_asks(env: dict[str, str], on: bool) -> None:
    assert wants_tracing(env) is on


async def test_with_tracing_off_a_call_forwards_the_records_traceparent_and_records_nothing(tmp_path: Path) -> None:
    assert not tracing.is_enabled()
    assert tracing.span("a") is tracing.span("b")  # one shared no-op, no OpenTelemetry call
    with tracing.span("a") as current:
        assert tracing.traceparent_of(current) is None
    seen: list[httpx.Request] = []
    await call(caller_seeing(seen, tmp_path))
    assert seen[0].headers["traceparent"] == SENT


async def test_an_outbound_call_is_a_client_span_whose_traceparent_the_target_receives(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    seen: list[httpx.Request] = []
    with tracing.span("runner settle", traceparent=SENT):
        await call(caller_seeing(seen, tmp_path))
    (http, settle) = spans.get_finished_spans()
    assert http.name == "HTTP GET"
    assert http.parent is not None
    assert http.parent.span_id == settle.context.span_id
    assert settle.context.trace_id == int(SENT.split("-")[1], 16)
    assert seen[0].headers["traceparent"] == f"00-{http.context.trace_id:032x}-{http.context.span_id:016x}-01"
    assert http.attributes is not None
    assert http.attributes["http.response.status_code"] == 200
    assert http.attributes["url.path"] == "/api/resource/Customer/DE123"
    assert http.attributes["onceflow.connector"] == "erp"


async def test_each_attempt_of_a_call_is_its_own_span_and_a_5xx_is_an_error(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    seen: list[httpx.Request] = []
    with pytest.raises(TransientFailure), tracing.span("runner settle", traceparent=SENT):
        await call(caller_seeing(seen, tmp_path, status=503))
    calls = [s for s in spans.get_finished_spans() if s.name == "HTTP GET"]
    assert len(calls) == len(seen) == 2
    assert all(s.status.status_code is StatusCode.ERROR for s in calls)
    assert len({r.headers["traceparent"] for r in seen}) == 2


async def test_hashed_business_keys_leave_no_key_or_path_in_spans(
    spans: InMemorySpanExporter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(tracing.HASH_KEYS_ENV, "true")
    tracing.enable(spans_provider := TracerProvider())
    spans_provider.add_span_processor(SimpleSpanProcessor(spans))
    assert tracing.business_key_value("DE123") == "sha256:" + hashlib.sha256(b"DE123").hexdigest()
    await call(caller_seeing([], tmp_path))
    (http,) = spans.get_finished_spans()
    assert http.attributes is not None
    assert "url.path" not in http.attributes
    assert "DE123" not in repr(dict(http.attributes))
    spans_provider.shutdown()


def test_unhashed_business_keys_are_shown_as_they_are(spans: InMemorySpanExporter) -> None:
    assert tracing.business_key_value("DE123") == "DE123"


def first_example_plan() -> Plan:
    """The plan of the first example Integration, in namespace `sales`."""
    from onceflow_operator.compiler.planner import plan_from_integration
    from tests.unit.test_planner import load_examples

    connectors, policies, integrations = load_examples()
    integration = integrations[0]
    policy = integration.spec.sync_policy_ref
    return plan_from_integration(
        integration, connectors, policies.get(policy.name) if policy else None, namespace="sales"
    )


def test_the_operator_hands_its_otel_settings_to_runner_and_gateway_pods() -> None:
    from onceflow_operator.build.objects import build_gateway_deployment, build_runner_deployment
    from onceflow_operator.compiler.planner import gateway_plan
    from onceflow_operator.controller.settings import tracing_env_of
    from tests.unit.test_planner import load_examples

    env = tracing_env_of(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector.obs.svc:4318",
            "ONCEFLOW_TRACE_HASH_KEYS": "true",
            "OTEL_SERVICE_NAME": "",  # unset in effect: not handed on
            "ONCEFLOW_NATS_URL": "nats://n:4222",
            "HOME": "/root",
        }
    )
    assert env == (
        ("ONCEFLOW_TRACE_HASH_KEYS", "true"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector.obs.svc:4318"),
    )
    connectors, _, _ = load_examples()
    plan = first_example_plan()
    gateway = gateway_plan(connectors["crm-webhooks"], namespace="sales")
    owner = {"apiVersion": "onceflow.io/v1alpha1", "kind": "Integration", "metadata": {"name": "i", "uid": "u"}}
    common = {"image": "img", "nats_url": "n", "replicas": 1, "secrets_checksum": "c"}
    for deployment in (
        build_runner_deployment(plan, "cm", owner, tracing_env=env, **common),
        build_gateway_deployment(gateway, "cm", owner, tracing_env=env, **common),
    ):
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://collector.obs.svc:4318"} in container["env"]
        assert {"name": "ONCEFLOW_TRACE_HASH_KEYS", "value": "true"} in container["env"]
    untraced = build_runner_deployment(plan, "cm", owner, **common)
    names = [e["name"] for e in untraced["spec"]["template"]["spec"]["containers"][0].get("env", [])]
    assert not [n for n in names if n.startswith("OTEL_")]


async def test_with_hashed_keys_a_failure_is_recorded_by_its_type_only(
    spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(tracing.HASH_KEYS_ENV, "true")
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    tracing.enable(provider)
    with pytest.raises(TransientFailure), tracing.span("step s"):
        raise TransientFailure("erp: GET /api/resource/Customer/DE123 timed out")
    with tracing.span("runner settle") as settling:
        tracing.set_outcome(settling, "retry", error="erp: GET /api/resource/Customer/DE123 timed out")
    step, settle = spans.get_finished_spans()
    assert step.status.status_code is StatusCode.ERROR
    assert step.status.description == "TransientFailure"
    assert settle.status.status_code is StatusCode.ERROR
    assert "DE123" not in repr([step.events, step.status, settle.status, settle.attributes])
    provider.shutdown()


async def test_without_hashing_a_failure_is_recorded_with_its_message(spans: InMemorySpanExporter) -> None:
    with pytest.raises(TransientFailure), tracing.span("step s"):
        raise TransientFailure("erp answered 503")
    (step,) = spans.get_finished_spans()
    assert step.status.description == "TransientFailure: erp answered 503"
    assert step.events[0].name == "exception"


def test_the_operator_reads_its_tracing_settings_from_its_environment_but_never_headers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from onceflow_operator.controller.settings import OperatorConfig

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector.obs.svc:4318")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=abc")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "sales-runners")
    # Headers often carry a hosted backend's key: never copied into Deployments in plain text.
    assert OperatorConfig.from_environment().tracing_env == (
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector.obs.svc:4318"),
        ("OTEL_SERVICE_NAME", "sales-runners"),
    )
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_HEADERS")
    monkeypatch.delenv("OTEL_SERVICE_NAME")
    assert OperatorConfig.from_environment().tracing_env == ()


# -- A webhook sender's traceparent (issue #17 attack) ------------------------------------------
# The gateway stored whatever the sender put in `traceparent` and every outbound call of the
# record sent it on: `00-é...` made each HTTP step fail (httpx refuses non-ASCII header values),
# 8 KB of text reached every target, and uppercase or all-zero ids were passed on as they came.

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        (SENT, SENT),
        (f"00-{TRACE}-{PARENT}-00", f"00-{TRACE}-{PARENT}-00"),
        # Only the sampled flag is defined; other bits are not passed on.
        (f"00-{TRACE}-{PARENT}-03", f"00-{TRACE}-{PARENT}-01"),
        # A later version is read for its first four fields (W3C: parse what version 00 defines).
        (f"01-{TRACE}-{PARENT}-01-future", SENT),
        (f"cc-{TRACE}-{PARENT}-01-" + "x" * 10_000, SENT),
    ],
)
def test_a_valid_sender_traceparent_is_continued_as_version_00(sent: str, kept: str) -> None:
    from onceflow_runner.contract.headers import w3c_traceparent

    assert w3c_traceparent(sent) == kept


@pytest.mark.parametrize(
    "sent",
    [
        None,
        "",
        "garbage",
        f"00-{TRACE.upper()}-{PARENT}-01",
        f"00-{TRACE}-{PARENT.upper()}-01",
        f"ff-{TRACE}-{PARENT}-01",
        f"00-{'0' * 32}-{PARENT}-01",
        f"00-{TRACE}-{'0' * 16}-01",
        f"00-{TRACE}-{PARENT}-01-extra",
        f"01-{TRACE}-{PARENT}-01extra",
        f"00-{TRACE}-{PARENT}-0g",
        f"00-{TRACE[:-1]}é-{PARENT}-01",
        f"00-{TRACE}-{PARENT}-01" + "x" * 10_000,
        f"00_{TRACE}_{PARENT}_01",
        f" 00-{TRACE}-{PARENT}-1",
    ],
)
def test_an_invalid_sender_traceparent_is_dropped(sent: str | None) -> None:
    from onceflow_runner.contract.headers import w3c_traceparent

    assert w3c_traceparent(sent) is None


def test_the_gateway_starts_a_new_trace_for_repeated_or_invalid_traceparent_headers() -> None:
    from multidict import CIMultiDict

    from onceflow_runner.gateway.server import sender_traceparent

    assert sender_traceparent(CIMultiDict({"traceparent": SENT})) == SENT
    assert sender_traceparent(CIMultiDict([("Traceparent", SENT), ("traceparent", SENT)])) is None
    assert sender_traceparent(CIMultiDict({"traceparent": "00-é"})) is None
    assert sender_traceparent(CIMultiDict()) is None


def test_a_record_read_from_nats_keeps_no_invalid_traceparent() -> None:
    from onceflow_runner.contract.messages import RecordHeaders

    assert RecordHeaders.from_headers({"traceparent": SENT}).traceparent == SENT
    assert RecordHeaders.from_headers({"traceparent": "00-" + "é" * 60}).traceparent is None


def test_no_otel_credential_reaches_a_pod() -> None:
    """Every signal's `*_HEADERS`, and a password in an endpoint URL, stay in the operator (#17 attack).

    Only the generic and traces headers were held back: OTEL_EXPORTER_OTLP_LOGS_HEADERS (set for
    the operator's own logs) and `https://user:key@host` endpoints went into every Deployment.
    """
    from onceflow_operator.controller.settings import tracing_env_of

    env = dict(
        tracing_env_of(
            {
                "OTEL_EXPORTER_OTLP_HEADERS": "api-key=s1",
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "api-key=s2",
                "OTEL_EXPORTER_OTLP_LOGS_HEADERS": "api-key=s3",
                "OTEL_EXPORTER_OTLP_METRICS_HEADERS": "api-key=s4",
                "OTEL_EXPORTER_OTLP_ENDPOINT": "https://tenant:s5@collector.example:4318/otlp",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://:s6@collector.example/v1/traces",
                "OTEL_SERVICE_NAME": "runner",
            }
        )
    )
    assert env == {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector.example:4318/otlp",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector.example/v1/traces",
        "OTEL_SERVICE_NAME": "runner",
    }
    assert not any(f"s{i}" in value for value in env.values() for i in range(1, 7))


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "not-a-url"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://[::1"},
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "ftp://user:hunter2@collector/v1/traces"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_CERTIFICATE": "/no/such/ca.pem"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "https://c:4318", "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY": "/no/such/key"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_BSP_MAX_QUEUE_SIZE": "-5"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "5000"},
    ],
)
def test_unusable_otel_settings_leave_tracing_off_with_one_line(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The process starts, exports nothing, and says which variable to fix (#17 attack).

    A bad OTEL_BSP_* pair raised a ValueError traceback at start (a crash loop); an endpoint
    without a scheme, or a CA file the pod does not have (the operator hands its OTEL_* on),
    started "exporting" and then failed every batch with an error line.
    """
    from onceflow_runner.adapters import otlp

    for name, value in env.items():
        monkeypatch.setenv(name, value)  # the SDK reads os.environ itself
    with caplog.at_level("INFO", logger="onceflow.tracing"):
        configured = otlp.configure("runner", env)
    if configured:
        otlp.shutdown()  # the next case must start from nothing
    assert configured is False
    assert not otlp.is_configured()
    assert not tracing.is_enabled()
    lines = [r.getMessage() for r in caplog.records if r.name == "onceflow.tracing"]
    assert len(lines) == 1
    assert "not exported" in lines[0]
    named = [name for name in env if name in lines[0] or (name.startswith("OTEL_BSP_") and "OTEL_BSP_*" in lines[0])]
    assert named
    assert "hunter2" not in lines[0]


def test_a_collector_answering_an_endless_body_costs_the_exporter_little_memory_and_time() -> None:
    """The SDK's exporter read a collector's whole answer into memory (#17 attack).

    Against a 200 with an endless chunked body the runner grew by about 450 MB a second until the
    pod was killed; now the exporter reads at most 64 KiB of an answer and then drops the connection.
    """
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import SpanExportResult

    from onceflow_runner.adapters.otlp import bounded_session

    class Endless(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"x" * 65536
            try:
                while True:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:
                return

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Endless)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/v1/traces"
        answer = bounded_session().post(url, data=b"", timeout=5)
        assert answer.status_code == 200
        assert len(answer.content) <= 64 * 1024
        provider = TracerProvider()
        exporter = OTLPSpanExporter(endpoint=url, timeout=5, session=bounded_session())
        exported = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(exported))
        with provider.get_tracer("t").start_as_current_span("s"):
            pass
        started = time.monotonic()
        assert exporter.export(exported.get_finished_spans()) is SpanExportResult.SUCCESS
        assert time.monotonic() - started < 5
    finally:
        server.shutdown()
        server.server_close()


def test_a_collector_that_never_answers_delays_a_stop_by_the_shutdown_bound_only(tmp_path: Path) -> None:
    """The last spans get `SHUTDOWN_SECONDS`; the SDK alone took 30 s against a silent collector (#17 attack).

    A real process: configure installs the process-wide tracer provider, which a test process
    must not keep.
    """
    import os
    import socket
    import subprocess
    import sys
    import time

    from onceflow_runner.adapters.otlp import SHUTDOWN_SECONDS

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # accepts, never answers
        script = (
            "from onceflow_runner import tracing\n"
            "from onceflow_runner.adapters import otlp\n"
            "assert otlp.configure('t')\n"
            "for _ in range(3000):\n"
            "    with tracing.span('x'):\n"
            "        pass\n"
            "otlp.shutdown()\n"
        )
        env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{silent.getsockname()[1]}"}
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
        took = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-2000:]
    assert took < SHUTDOWN_SECONDS + 5
    assert "spans not sent" in done.stderr


@pytest.mark.parametrize("exporter", ["jaeger", "zipkin,console", "Console"])
def test_an_exporter_other_than_otlp_is_named_once_not_silently_ignored(
    exporter: str, caplog: pytest.LogCaptureFixture
) -> None:
    """OTEL_TRACES_EXPORTER=jaeger with an endpoint set left tracing off without a word (#17 attack)."""
    from onceflow_runner.adapters import otlp

    env = {"OTEL_TRACES_EXPORTER": exporter, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}
    with caplog.at_level("INFO", logger="onceflow.tracing"):
        assert otlp.configure("runner", env) is False
    (line,) = [r.getMessage() for r in caplog.records if r.name == "onceflow.tracing"]
    assert "OTEL_TRACES_EXPORTER" in line
    assert "otlp" in line


def test_tracing_switched_off_on_purpose_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    from onceflow_runner.adapters import otlp

    for env in ({}, {"OTEL_TRACES_EXPORTER": "none"}, {"OTEL_SDK_DISABLED": "TRUE", "OTEL_TRACES_EXPORTER": "jaeger"}):
        with caplog.at_level("INFO", logger="onceflow.tracing"):
            assert otlp.configure("runner", env) is False
    assert not [r for r in caplog.records if r.name == "onceflow.tracing"]


def test_with_the_namespaces_key_business_keys_are_hmacs_nobody_without_it_can_recompute(
    spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(tracing.HASH_KEYS_ENV, "true")
    monkeypatch.setenv(tracing.HASH_KEY_ENV, "k" * 64)
    tracing.enable(TracerProvider())
    shown = tracing.business_key_value("DE123")
    assert shown == "hmac-sha256:" + hmac.new(b"k" * 64, b"DE123", hashlib.sha256).hexdigest()
    assert shown == tracing.keyed_business_key(b"k" * 64, "DE123")
    assert shown != tracing.keyed_business_key(b"j" * 64, "DE123")
    assert hashlib.sha256(b"DE123").hexdigest() not in shown


def test_each_namespace_key_is_derived_apart_and_a_short_master_key_is_refused() -> None:
    from onceflow_operator.controller.settings import OperatorConfig
    from onceflow_operator.controller.tracekeys import TraceKeyError, TraceKeys, namespace_hash_key

    master = b"m" * 32
    assert namespace_hash_key(master, "acme") == namespace_hash_key(master, "acme")
    assert namespace_hash_key(master, "acme") != namespace_hash_key(master, "globex")
    assert namespace_hash_key(master, "acme") != namespace_hash_key(b"n" * 32, "acme")
    assert TraceKeys.from_environment({}) is None
    with pytest.raises(TraceKeyError, match="ONCEFLOW_TRACE_HASH_MASTER_KEY has 6 characters; use at least 32"):
        TraceKeys.from_environment({"ONCEFLOW_TRACE_HASH_MASTER_KEY": "secret"})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ONCEFLOW_TRACE_HASH_MASTER_KEY", "m" * 32)
        patch.delenv("ONCEFLOW_TRACE_HASH_KEYS", raising=False)
        assert OperatorConfig.from_environment().trace_keys is None  # keys shown as they are: no key needed
        patch.setenv("ONCEFLOW_TRACE_HASH_KEYS", "true")
        keys = OperatorConfig.from_environment().trace_keys
        assert keys is not None
        assert keys.master == master


def test_runner_pods_read_the_namespaces_key_from_its_secret_never_as_a_plain_value() -> None:
    from onceflow_operator.build.objects import build_runner_deployment

    plan = first_example_plan()
    owner = {"apiVersion": "onceflow.io/v1alpha1", "kind": "Integration", "metadata": {"name": "i", "uid": "u"}}
    common = {"image": "img", "nats_url": "n", "replicas": 1, "secrets_checksum": "c"}
    keyed = build_runner_deployment(plan, "cm", owner, trace_key_secret="onceflow-trace", **common)
    env = keyed["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {
        "name": "ONCEFLOW_TRACE_HASH_KEY",
        "valueFrom": {"secretKeyRef": {"name": "onceflow-trace", "key": "hash-key"}},
    } in env  # not optional: a pod without its key waits for it rather than hash with reversible SHA-256
    plain = build_runner_deployment(plan, "cm", owner, **common)
    assert "ONCEFLOW_TRACE_HASH_KEY" not in str(plain)
