"""One record's trace in a real Jaeger: gateway -> JetStream -> runner -> sandbox ERP, through a retry
and a person's decision, exported over OTLP/HTTP because the processes' OTEL_* environment says so."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from onceflow_operator.dev.localrun import LocalRun
from onceflow_operator.dev.natsserver import NatsServer
from onceflow_operator.review.exceptions import decide
from onceflow_runner.gateway.signatures import SignatureConfig, sign
from onceflow_runner.testing.sandbox import Fault
from onceflow_runner.tracing import keyed_business_key
from tests.integration.scenario import (
    CRM_SECRET,
    Sandboxes,
    crm_customer_event,
    dumps,
    eventually,
    example_documents,
    new_namespace,
    sandbox_effects,
    signed_post,
    start_local_run,
    stream_messages,
)
from tests.jaeger import JaegerServer, jaeger_binary


@pytest.fixture
def jaeger() -> Iterator[JaegerServer]:
    server = JaegerServer(jaeger_binary())
    yield server
    server.stop()


@pytest.fixture
async def traced_onboarding(
    jaeger: JaegerServer, nats_server: NatsServer, boxes: Sandboxes, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[LocalRun, str]]:
    """Scenario 1 under local run, its gateway and runner processes told by OTEL_* to export to Jaeger."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", jaeger.otlp_endpoint)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")  # ms: spans leave at once, not every 5 s
    monkeypatch.setenv("ONCEFLOW_TRACE_HASH_KEYS", "true")
    monkeypatch.setenv("ONCEFLOW_TRACE_HASH_KEY", HASH_KEY)  # what the operator hands a runner from its namespace
    namespace = new_namespace()
    run = await start_local_run(example_documents("customer-onboarding"), namespace, nats_server.url, boxes)
    yield run, namespace
    run.stop()


#: The namespace's key for hashing business keys in spans (the operator derives it; tracekeys.py).
HASH_KEY = "4f1b0c8e2d7a9e3b5c6d1f0a8b7e6d5c"


def _tags(span: dict[str, Any]) -> dict[str, Any]:
    return {t["key"]: t["value"] for t in span.get("tags", [])}


def _named(trace: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return sorted((s for s in trace["spans"] if s["operationName"] == name), key=lambda s: s["startTime"])


async def test_one_record_is_one_trace_through_a_retry_and_a_decision(
    traced_onboarding: tuple[LocalRun, str], boxes: Sandboxes, nats_server: NatsServer, jaeger: JaegerServer
) -> None:
    run, namespace = traced_onboarding
    url = run.gateway_url("crm-webhooks")
    first, second = f"DE{uuid.uuid4().int % 10**9:09d}", f"DE{uuid.uuid4().int % 10**9:09d}"
    async with httpx.AsyncClient() as client:
        body = dumps(crm_customer_event(first, name="Acme Industrial GmbH"))
        await signed_post(client, url, "standard-webhooks", CRM_SECRET, body, "t-first")
        await eventually(lambda: _effects_reach(boxes, 1))
        # The ERP's search answers 503 to every in-call attempt (3): the delivery is handed back
        # to JetStream (a retry); the redelivery finds the similar customer and parks the record.
        boxes.erp.faults.append(Fault(status=503, times=3, retry_after=0.05, path_prefix="/api/resource/Customer"))
        trace_id = uuid.uuid4().hex
        body = dumps(crm_customer_event(second, name="ACME Industrial GmbH."))
        headers = sign(
            SignatureConfig("standard-webhooks"), CRM_SECRET, body, delivery_id="t-second", timestamp=int(time.time())
        )
        headers |= {"Content-Type": "application/json", "traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"}
        assert (await client.post(url, content=body, headers=headers)).status_code == 202

    subject = f"onceflow.{namespace}.exceptions.customer-onboarding"
    (parked,) = await eventually(lambda: stream_messages(nats_server.url, "ONCEFLOW_EXCEPTIONS", subject))
    assert parked.headers["Onceflow-Reason"] == "ApprovalRequired"
    nc = await nats.connect(nats_server.url)
    try:
        await decide(nc.jetstream(), namespace, parked.seq, "approve", who="alice", why="a different company")
    finally:
        await nc.close()
    await eventually(lambda: _effects_reach(boxes, 2))

    def complete() -> dict[str, Any] | None:
        found = jaeger.trace(trace_id)
        settles = _named(found, "runner settle") if found else []
        return found if any(_tags(s).get("onceflow.outcome") == "settled" for s in settles) else None

    trace = await eventually(complete, within=30)
    assert {s["traceID"] for s in trace["spans"]} == {trace_id}
    services = {p["serviceName"] for p in trace["processes"].values()}
    assert services == {"onceflow-gateway", "onceflow-runner"}

    (receive,) = _named(trace, "gateway receive")
    assert _tags(receive)["http.response.status_code"] == 202
    assert _tags(receive)["onceflow.namespace"] == namespace
    (publish,) = _named(trace, "jetstream publish")
    assert publish["references"][0]["spanID"] == receive["spanID"]

    settles = _named(trace, "runner settle")
    outcomes = [(_tags(s)["onceflow.delivery"], _tags(s)["onceflow.outcome"]) for s in settles]
    assert outcomes == [(1, "retry"), (2, "parked"), (1, "settled")]
    assert all(s["references"][0]["spanID"] == publish["spanID"] for s in settles)
    retry, parked_span, decided = (_tags(s) for s in settles)
    assert retry["error"] is True
    assert parked_span["onceflow.reason"] == "ApprovalRequired"
    assert decided["onceflow.decision"] == "approved"
    for tags in (retry, parked_span, decided):
        assert tags["onceflow.integration"] == "customer-onboarding"
        assert tags["onceflow.revision"]
        assert tags["onceflow.namespace"] == namespace
    # ONCEFLOW_TRACE_HASH_KEYS=true: the tax id (the business key) never reaches the backend, only
    # its HMAC under the namespace's key (what `onceflow trace --span-key` prints).
    assert decided["onceflow.business_key"] == keyed_business_key(HASH_KEY.encode(), f"customer/{second}")
    assert second not in json.dumps(trace)

    steps = {s["operationName"] for s in trace["spans"] if s["operationName"].startswith("step ")}
    assert {"step canonical", "step checkCustomer", "step existing", "step createInErp", "step notifyWms"} <= steps
    (parking_step,) = [s for s in _named(trace, "step existing") if _tags(s).get("onceflow.outcome") == "parked"]
    assert parking_step["references"][0]["spanID"] == settles[1]["spanID"]

    calls = [_tags(s) for s in trace["spans"] if s["operationName"].startswith("HTTP ")]
    statuses = [c["http.response.status_code"] for c in calls if c["onceflow.connector"] == "erp"]
    assert statuses.count(503) == 3
    assert any(c["http.request.method"] == "POST" and c["http.response.status_code"] < 300 for c in calls)
    assert all("url.path" not in c for c in calls)  # paths may hold a business key

    # The canonical event the announce step published carries that step's span: its consumers join the trace.
    events = await stream_messages(nats_server.url, "ONCEFLOW_EVENTS", f"onceflow.{namespace}.events.customer.>")
    announced = [e.headers["traceparent"] for e in events if e.headers["traceparent"].split("-")[1] == trace_id]
    (announce,) = _named(trace, "step announce")
    assert announced == [f"00-{trace_id}-{announce['spanID']}-01"]


async def _effects_reach(boxes: Sandboxes, count: int) -> bool:
    return len(await sandbox_effects(boxes.erp)) >= count


async def test_a_record_jetstream_gave_up_on_is_dead_lettered_inside_a_span(nats_server: NatsServer) -> None:
    """The advisory path (no delivery settled it): its dead letter is a span too, in-process exporter."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from onceflow_operator.clients import topology
    from onceflow_runner import tracing
    from tests.integration.test_delivery_faults import start, stop

    def two_short_deliveries(raw: dict[str, Any]) -> None:
        raw["error_policy"].update({"ack_wait": 1.0, "max_deliver": 2, "backoff": [0.1]})

    exporter, provider = InMemorySpanExporter(), TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    h = await start(nats_server, in_process=True, plan_edit=two_short_deliveries)
    tracing.enable(provider)
    try:
        assert h.plan is not None
        nc = await nats.connect(h.nats.url)
        js = nc.jetstream()
        await topology.ensure_lane(js, h.plan)  # the operator owns topology; idempotent
        body = json.dumps({"key": "crashed", "name": "Crash Ltd"}).encode()
        await h.send("crashed", body)
        sub = await js.pull_subscribe_bind(h.plan.nats.consumer, stream=h.plan.nats.stream)
        for _ in range(2):  # a runner that takes the record and dies before settling it, twice
            await sub.fetch(1, timeout=10)
        await nc.close()
        await h.start_runner()
        await h.settled(1, within=30)
        (span,) = await eventually(
            lambda: [s for s in exporter.get_finished_spans() if s.name == "runner dead-letter"] or None
        )
        assert span.attributes is not None
        assert span.attributes["onceflow.outcome"] == "dead-letter"
        assert span.attributes["onceflow.delivery"] == 2
    finally:
        tracing.disable()
        await stop(h)
        provider.shutdown()


async def test_a_webhook_without_a_traceparent_starts_a_trace_its_record_carries_and_a_refusal_is_an_error_span(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """In-process gateway on a real nats-server, spans into the SDK's in-memory exporter."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import StatusCode

    from onceflow_runner import tracing
    from onceflow_runner.contract.subjects import IN_STREAM
    from tests.integration.gateway_harness import gateway_plan, running_gateway, signed_headers

    exporter, provider = InMemorySpanExporter(), TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.enable(provider)
    try:
        plan = gateway_plan(f"g{uuid.uuid4().hex[:8]}")
        async with running_gateway(plan, nats_server.url, tmp_path) as gw, httpx.AsyncClient() as client:
            body = b'{"key": "untraced"}'
            accepted = await client.post(f"{gw.url}", content=body, headers=signed_headers(body, "u-1"))
            refused = await client.post(f"{gw.url}", content=body, headers={"X-Signature": "sha256=00"})
        assert (accepted.status_code, refused.status_code) == (202, 401)
        nc = await nats.connect(nats_server.url)
        try:
            stored = await nc.jetstream().get_msg(IN_STREAM, accepted.json()["sequence"])
        finally:
            await nc.close()
        (publish,) = [s for s in exporter.get_finished_spans() if s.name == "jetstream publish"]
        receives = [s for s in exporter.get_finished_spans() if s.name == "gateway receive"]
        ok, bad = sorted(receives, key=lambda s: s.start_time or 0)
        assert ok.parent is None  # no traceparent from the sender: a new trace
        assert publish.parent is not None
        assert publish.parent.span_id == ok.context.span_id
        assert stored.headers is not None
        version, trace_id, span_id, flags = stored.headers["traceparent"].split("-")
        assert (version, trace_id, span_id) == (
            "00",
            f"{publish.context.trace_id:032x}",
            f"{publish.context.span_id:016x}",
        )
        assert int(flags, 16) & 1  # sampled
        assert bad.attributes is not None
        assert bad.attributes["http.response.status_code"] == 401
        assert bad.status.status_code is StatusCode.ERROR
    finally:
        tracing.disable()
        provider.shutdown()
