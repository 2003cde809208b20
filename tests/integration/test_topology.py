"""The operator owns JetStream topology; gateways and runners only bind (issue #12, item 1).

Against a real nats-server of this module's own (its stream settings are changed on purpose):
a gateway's and a runner's start leave every stream, consumer and KV bucket exactly as the
operator configured it; a runner whose consumer does not exist waits, not ready, with a log line,
and starts once the operator creates it; an existing stream keeps what the operator was not told.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import nats.js.api
import nats.js.errors
import pytest
from nats.aio.client import Client

from onceflow_operator.clients import topology
from onceflow_operator.clients.jetstream import JetStreamLink
from onceflow_operator.clients.topology import TopologySettings
from onceflow_operator.compiler.planner import plan_from_integration
from onceflow_operator.controller.streams import watch_streams
from onceflow_operator.dev.natsserver import NatsServer
from onceflow_runner.contract import subjects
from onceflow_runner.contract.plan import Plan
from onceflow_runner.runner import Runner
from tests.integration.gateway_harness import gateway_plan, running_gateway
from tests.integration.scenario import eventually, example_documents
from tests.unit.test_planner import load_examples

#: What an SRE's operator was told: none of these is a default, so a reset would show.
SETTINGS = TopologySettings(
    max_bytes=512 * 1024 * 1024,
    duplicate_window=300.0,
    max_age={subjects.IN_STREAM: 3 * 86400.0},
)


@pytest.fixture(scope="module")
def own_nats() -> Iterator[NatsServer]:
    server = NatsServer()
    server.start()
    yield server
    server.close()


@pytest.fixture
async def nc(own_nats: NatsServer) -> AsyncIterator[Client]:
    client = await nats.connect(own_nats.url)
    yield client
    await client.close()


def mount_example_secrets(folder: Path) -> Path:
    """The example Secrets laid out as mounted volumes (the runner reads its Connectors' credentials at start)."""
    for doc in example_documents("customer-onboarding"):
        if doc["kind"] == "Secret":
            for key, value in {**(doc.get("stringData") or {})}.items():
                (folder / doc["metadata"]["name"]).mkdir(parents=True, exist_ok=True)
                (folder / doc["metadata"]["name"] / key).write_text(str(value))
            for key, value in (doc.get("data") or {}).items():
                (folder / doc["metadata"]["name"]).mkdir(parents=True, exist_ok=True)
                (folder / doc["metadata"]["name"] / key).write_bytes(base64.b64decode(value))
    return folder


def runner_plan(namespace: str) -> Plan:
    connectors, policies, integrations = load_examples()
    integration = next(i for i in integrations if i.metadata["name"] == "customer-onboarding")
    return plan_from_integration(integration, connectors, policies.get("customer"), namespace=namespace)


async def snapshot(nc: Client, plan: Plan) -> dict[str, Any]:
    """Every setting of every stream (KV buckets' included) and of the plan's consumers; no state."""
    js = nc.jetstream()
    streams = [*topology.STREAM_MAX_AGE, *map(subjects.kv_stream, topology.namespace_buckets(plan.namespace))]
    found: dict[str, Any] = {name: (await js.stream_info(name)).config.as_dict() for name in streams}
    for stream, consumer in (
        (plan.nats.stream, plan.nats.consumer),
        (subjects.ADVISORIES_STREAM, f"{plan.nats.consumer}_advisories"),
    ):
        found[f"{stream}/{consumer}"] = (await js.consumer_info(stream, consumer)).config.as_dict()
    names = []
    for stream in topology.STREAM_MAX_AGE:
        names += [c.name for c in await js.consumers_info(stream)]
    found["consumers"] = sorted(names)
    found["streams"] = sorted(str(s.config.name) for s in await js.streams_info())
    return found


async def test_a_gateway_and_a_runner_start_change_no_stream_consumer_or_bucket_setting(
    nc: Client, own_nats: NatsServer, tmp_path: Path
) -> None:
    namespace = f"t{uuid.uuid4().hex[:8]}"
    plan = runner_plan(namespace)
    await topology.ensure_plan(nc.jetstream(), plan, SETTINGS)
    before = await snapshot(nc, plan)
    assert before[subjects.IN_STREAM]["max_bytes"] == SETTINGS.max_bytes
    async with running_gateway(gateway_plan(namespace), own_nats.url, tmp_path / "gw") as gateway:
        runner = Runner(plan, nats_url=own_nats.url, secrets_dir=mount_example_secrets(tmp_path))
        await runner.start()
        try:
            assert runner.ready
            assert gateway.port
            during = await snapshot(nc, plan)
        finally:
            await runner.stop(grace=1)
    assert during == before
    assert await snapshot(nc, plan) == before


async def test_a_runner_waits_not_ready_until_the_operator_creates_its_consumer(
    nc: Client, own_nats: NatsServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plan = runner_plan(f"t{uuid.uuid4().hex[:8]}")
    js = nc.jetstream()
    await topology.ensure_streams(js, SETTINGS)
    runner = Runner(plan, nats_url=own_nats.url, secrets_dir=mount_example_secrets(tmp_path))
    caplog.set_level(logging.WARNING, logger="onceflow.nats")
    starting = asyncio.create_task(runner.start())
    try:
        for _ in range(100):  # until it said what it waits for
            if "waiting for the operator to create consumer" in caplog.text:
                break
            await asyncio.sleep(0.05)
        assert f"consumer {plan.nats.consumer} on stream {plan.nats.stream}" in caplog.text
        assert not starting.done()
        assert not runner.ready
        with pytest.raises(nats.js.errors.NotFoundError):  # it created nothing
            await js.consumer_info(plan.nats.stream, plan.nats.consumer)
        await topology.ensure_buckets(js, plan.namespace, SETTINGS)
        await topology.ensure_lane(js, plan)
        await asyncio.wait_for(starting, 20)
        assert runner.ready
    finally:
        if not starting.done():
            starting.cancel()
        await runner.stop(grace=1)


async def test_an_operator_enforces_only_what_it_was_told_and_refuses_what_jetstream_cannot_change(
    nc: Client,
) -> None:
    js = nc.jetstream()
    await topology.ensure_streams(js)
    # An SRE changes a limit by hand; an operator that was not told about that limit keeps it.
    config = (await js.stream_info(subjects.AUDIT_STREAM)).config
    config.max_msgs = 12345
    await js.update_stream(config)
    reports = {r.stream: r for r in await topology.ensure_streams(js)}
    assert reports[subjects.AUDIT_STREAM].action == "unchanged"
    assert (await js.stream_info(subjects.AUDIT_STREAM)).config.max_msgs == 12345
    # Told a duplicate window, it applies it and says what changed.
    reports = {r.stream: r for r in await topology.ensure_streams(js, TopologySettings(duplicate_window=120.0))}
    assert reports[subjects.AUDIT_STREAM].action == "updated"
    assert any(c.startswith("duplicate_window") for c in reports[subjects.AUDIT_STREAM].changes)
    assert (await js.stream_info(subjects.AUDIT_STREAM)).config.duplicate_window == 120.0
    # Told memory storage for file streams: refused and reported, nothing changed.
    reports = {r.stream: r for r in await topology.ensure_streams(js, TopologySettings(storage="memory"))}
    assert reports[subjects.IN_STREAM].action == "refused"
    assert "cannot change a live stream's storage" in reports[subjects.IN_STREAM].message
    health = {h.stream: h for h in await topology.stream_health(js) if not isinstance(h, str)}
    assert health[subjects.IN_STREAM].storage == "file"
    assert (health[subjects.IN_STREAM].replicas, health[subjects.IN_STREAM].current) == (1, 1)


async def test_a_stream_deleted_while_the_operator_runs_is_created_again(own_nats: NatsServer, nc: Client) -> None:
    """Attack review: before, a deleted stream stayed missing (health logged it) until NATS reconnected."""
    link = JetStreamLink(own_nats.url, lambda *_: None, SETTINGS)
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_streams(link, stop, 0.1))
    js = nc.jetstream()
    try:
        await eventually(lambda: link.streams_ensured, within=10, interval=0.05)
        await js.delete_stream(subjects.AUDIT_STREAM)

        async def back() -> bool:
            try:
                config = (await js.stream_info(subjects.AUDIT_STREAM)).config
            except nats.js.errors.NotFoundError:
                return False
            return config.duplicate_window == SETTINGS.duplicate_window  # with the operator's settings

        await eventually(back, within=10, interval=0.1)
    finally:
        stop.set()
        await watcher
        await link.close()


async def test_a_bucket_made_without_per_message_ttls_gets_them_and_keeps_its_entries(nc: Client) -> None:
    """An EDI bucket from an older version: its history could not expire until the operator turns TTLs on."""
    namespace = f"old{uuid.uuid4().hex[:8]}"
    js = nc.jetstream()
    bucket = subjects.edi_bucket(namespace)
    old = nats.js.api.StreamConfig(
        name=subjects.kv_stream(bucket),
        subjects=[f"$KV.{bucket}.>"],
        max_msgs_per_subject=1,
        allow_rollup_hdrs=True,
        deny_delete=True,
        allow_direct=True,
        allow_msg_ttl=False,
    )
    await js.add_stream(old)
    await js.publish(f"$KV.{bucket}.counter.acme", b'{"interchange": 7}')
    await topology.ensure_buckets(js, namespace)
    info = await js.stream_info(subjects.kv_stream(bucket))
    assert info.config.allow_msg_ttl is True
    assert info.config.max_msgs_per_subject == 1  # nothing else changed
    assert (await (await js.key_value(bucket)).get("counter.acme")).value == b'{"interchange": 7}'
    await js.publish(f"$KV.{bucket}.sent.acme.000000007", b"{}", msg_ttl=60)  # refused before


async def test_the_edi_store_says_wrong_last_sequence_for_a_race_and_names_a_bucket_without_ttls(nc: Client) -> None:
    """Attack on the history TTLs against a real nats-server: what callers catch is what it raises.

    A write over a stale revision and a create over a live entry are KeyWrongLastSequenceError (a
    race, which callers skip); a create over a purged entry succeeds and expires too; a bucket
    the operator has not yet given TTLs refuses with 10166, which `_number` re-raises (no number
    is used, nothing is uploaded) rather than take it for a racer's entry.
    """
    from onceflow_runner.adapters.control_numbers import HISTORY_TTL, ControlNumberStore

    js = nc.jetstream()
    namespace = f"race{uuid.uuid4().hex[:8]}"
    await topology.ensure_buckets(js, namespace)
    store = await ControlNumberStore.open(js, namespace)
    first = await store.keep("out.a", b"1")
    await store.keep("out.a", b"2", last=first)
    with pytest.raises(nats.js.errors.KeyWrongLastSequenceError):
        await store.keep("out.a", b"3", last=first)
    with pytest.raises(nats.js.errors.KeyWrongLastSequenceError):
        await store.keep_new("out.a", b"4")
    await store.keep_new("awaiting.x", b"w")
    await store.forget("awaiting.x")
    await store.keep_new("awaiting.x", b"again")  # over the purge marker, as over a delete's before
    bucket = subjects.edi_bucket(namespace)
    again = await js.get_last_msg(subjects.kv_stream(bucket), f"$KV.{bucket}.awaiting.x")
    assert again.data == b"again"
    assert (again.headers or {}).get("Nats-TTL") == str(HISTORY_TTL)

    old = subjects.edi_bucket(f"old{uuid.uuid4().hex[:8]}")
    config = nats.js.api.StreamConfig(
        name=subjects.kv_stream(old), subjects=[f"$KV.{old}.>"], max_msgs_per_subject=1, allow_rollup_hdrs=True
    )
    await js.add_stream(config)
    without = ControlNumberStore(await js.key_value(old), js, old)
    with pytest.raises(nats.js.errors.BadRequestError) as refused:
        await without.keep_new("out.b", b"1")
    assert refused.value.err_code == 10166
    assert not isinstance(refused.value, nats.js.errors.KeyWrongLastSequenceError)
