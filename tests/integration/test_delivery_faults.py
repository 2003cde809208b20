"""Nothing lost, nothing doubled: ledgers under faults (poison, 417, 503 storms, kill -9,
broker restart, SIGTERM drain, exhausted deliveries).

Every test ends with the same ledger, computed from the systems' own books:
accepted (202 from the gateway) = ERP effects + exceptions + dead letters, and no business key
has more than one ERP effect.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import nats
import pytest

from onceflow_operator.clients.topology import ensure_plan
from onceflow_operator.dev.localrun import LocalRun
from onceflow_operator.dev.natsserver import NatsServer
from onceflow_runner.adapters.pubacks import header_block
from onceflow_runner.contract.plan import Plan, load_plan
from onceflow_runner.engine.ports import Caller
from onceflow_runner.runner import Runner
from onceflow_runner.testing.sandbox import ErpSandbox, Fault
from tests.integration.scenario import eventually, new_namespace, signed_post, stream_messages

SECRET = "ledger-secret"
SIG = {"header": "X-Signature"}


def manifests(
    erp_url: str,
    *,
    max_deliver: int = 4,
    backoff: list[str] | None = None,
    rules: list[dict[str, Any]] | None = None,
    steps: list[dict[str, Any]] | None = None,
    path: str = '"/api/resource/Customer"',
    expression_timeout: str | None = None,
    sync_policy: dict[str, Any] | None = None,
    webhook: dict[str, Any] | None = None,
    auth: dict[str, Any] | None = None,
    erp_secret: dict[str, str] | None = None,
    call: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """A signed webhook source, the sandbox ERP and the `ledger` Integration between them.

    `steps` go between the map and the ERP call (e.g. a filter); the ERP Connector's timeouts fit
    inside the Integration's 5s ackWait, as validation requires. `sync_policy` is the spec of a
    SyncPolicy `ledger` the Integration then names (a dedupe step needs its match rules). inside the Integration's 5s ackWait, as validation requires. `auth` replaces the ERP
    Connector's token auth (its Secret `erp-api` then holds `erp_secret`); `call` replaces the
    create step's call block.
    """
    check = [{"name": "check", "validate": {"rules": rules}}] if rules else []
    policy = (
        [
            {
                "apiVersion": "onceflow.io/v1alpha1",
                "kind": "SyncPolicy",
                "metadata": {"name": "ledger"},
                "spec": sync_policy,
            }
        ]
        if sync_policy
        else []
    )
    return [
        *policy,
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "src"}, "stringData": {"secret": SECRET}},
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "erp-api"},
            "stringData": erp_secret or {"api-key": "sandbox-key", "api-secret": "sandbox-secret"},
        },
        {
            "apiVersion": "onceflow.io/v1alpha1",
            "kind": "Connector",
            "metadata": {"name": "src"},
            "spec": {
                "type": "Webhook",
                "webhook": {
                    "path": "/in",
                    "signature": {
                        "scheme": "hmac",
                        "header": "X-Signature",
                        "secretRef": {"name": "src", "key": "secret"},
                    },
                    **(webhook or {}),
                },
            },
        },
        {
            "apiVersion": "onceflow.io/v1alpha1",
            "kind": "Connector",
            "metadata": {"name": "erp"},
            "spec": {
                "type": "REST",
                "rest": {
                    "baseURL": erp_url,
                    "rateLimit": {"requestsPerSecond": 5000, "burst": 500},
                    "retry": {"attempts": 1},
                    "timeouts": {"connect": "1s", "read": "3s"},
                    "auth": auth
                    or {
                        "type": "ERPNextToken",
                        "erpnextToken": {
                            "apiKeyRef": {"name": "erp-api", "key": "api-key"},
                            "apiSecretRef": {"name": "erp-api", "key": "api-secret"},
                        },
                    },
                },
            },
        },
        {
            "apiVersion": "onceflow.io/v1alpha1",
            "kind": "Integration",
            "metadata": {"name": "ledger"},
            "spec": {
                "trigger": {"connector": {"name": "src"}},
                "businessKey": "'k/' + input.key",
                **({"syncPolicyRef": {"name": "ledger"}} if sync_policy else {}),
                "concurrency": 32,
                **({"expressionTimeout": expression_timeout} if expression_timeout else {}),
                "errorPolicy": {
                    "backoff": backoff or ["100ms", "200ms", "300ms"],
                    "maxDeliver": max_deliver,
                    "ackWait": "5s",
                },
                "steps": [
                    {
                        "name": "canonical",
                        "map": {"fields": {"customer_name": "input.name", "tax_id": "input.key"}},
                    },
                    *check,
                    *(steps or []),
                    {"name": "create", "call": call or {"connector": "erp", "path": path}},
                ],
            },
        },
    ]


@dataclass
class Ledger:
    accepted: set[str]
    effects: dict[str, int]
    exceptions: list[Any]
    dead_letters: list[Any]

    def check(self) -> None:
        doubled = {k: n for k, n in self.effects.items() if n > 1}
        assert doubled == {}, f"doubled effects: {doubled}"
        settled = len(self.effects) + len(self.exceptions) + len(self.dead_letters)
        assert settled == len(self.accepted), (
            f"accepted {len(self.accepted)} != effects {len(self.effects)} + exceptions {len(self.exceptions)}"
            f" + dead letters {len(self.dead_letters)}"
        )


class Harness:
    def __init__(self, nats: NatsServer, erp: ErpSandbox, run: LocalRun, namespace: str) -> None:
        self.nats, self.erp, self.run, self.namespace = nats, erp, run, namespace
        self.accepted: set[str] = set()
        self.client = httpx.AsyncClient(timeout=10)
        self.plan: Plan | None = None
        self.runner: Runner | None = None

    async def start_runner(self, caller: Caller | None = None) -> Runner:
        """Run the Integration's runner in this interpreter (after `start(..., in_process=True)`)."""
        assert self.plan is not None
        nc = await nats.connect(self.nats.url)  # the operator's part: the lane's consumers (streams exist)
        await ensure_plan(nc.jetstream(), self.plan)
        await nc.close()
        secrets = self.run.workdir / "secrets"
        self.runner = Runner(self.plan, nats_url=self.nats.url, secrets_dir=secrets, caller=caller)
        await self.runner.start()
        return self.runner

    async def send(
        self, key: str, body: bytes | None = None, *, delivery_id: str | None = None, deadline: float = 60.0
    ) -> None:
        """Post until the gateway answers 202 (a real sender retries 503 and connection errors).

        The delivery id is the key unless given: a sender firing the same record twice uses new ids.
        """
        payload = body if body is not None else json.dumps({"key": key, "name": f"Customer {key}"}).encode()
        url, delivery = self.run.gateway_url("src"), delivery_id or key
        stop = time.monotonic() + deadline
        while True:
            try:
                resp = await signed_post(self.client, url, "hmac", SECRET, payload, delivery, **SIG)
                if resp.status_code == 202:
                    self.accepted.add(key)
                    return
                assert resp.status_code == 503, resp.text
            except httpx.TransportError:
                pass
            assert time.monotonic() < stop, f"record {key} never accepted"
            await asyncio.sleep(0.1)

    async def send_many(self, keys: list[str], concurrency: int = 16) -> None:
        queue = list(keys)

        async def worker() -> None:
            while queue:
                await self.send(queue.pop())

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    async def ledger(self) -> Ledger:
        subject = "onceflow.{ns}.{kind}.ledger"
        return Ledger(
            set(self.accepted),
            {k.removeprefix("k/").removesuffix("/create"): n for k, n in self.erp.effects.items()},
            await stream_messages(
                self.nats.url, "ONCEFLOW_EXCEPTIONS", subject.format(ns=self.namespace, kind="exceptions")
            ),
            await stream_messages(self.nats.url, "ONCEFLOW_DLQ", subject.format(ns=self.namespace, kind="dlq")),
        )

    async def quiet(self) -> bool:
        """True when the Integration's consumer has settled every stored record: nothing left to
        deliver and nothing in flight or waiting for redelivery (its ack floor passed every record
        it acked; one JetStream gave up on holds the floor back but is no longer pending)."""
        nc = await nats.connect(self.nats.url.split(","))  # one URL, or a cluster's
        try:
            info = await nc.jetstream().consumer_info("ONCEFLOW_IN", f"{self.namespace}_ledger")
        finally:
            await nc.close()
        return info.num_pending == 0 and info.num_ack_pending == 0

    async def settled(self, expected: int, within: float = 60.0) -> Ledger:
        """Wait until `expected` records have an outcome and the consumer is quiet, then check the ledger once.

        Quiet means every delivery was acked: an effect, exception or dead letter happens before its
        ack, so a late double can no longer appear.
        """

        async def done() -> bool:
            ledger = await self.ledger()
            total = len(ledger.effects) + len(ledger.exceptions) + len(ledger.dead_letters)
            return total >= expected and await self.quiet()

        await eventually(done, within=within, interval=0.2)
        final = await self.ledger()
        final.check()
        return final


async def start(
    nats: NatsServer,
    *,
    erp: ErpSandbox | None = None,
    plan_edit: Callable[[dict[str, Any]], None] | None = None,
    in_process: bool = False,
    namespace: str | None = None,
    **kw: Any,
) -> Harness:
    """Start the sandbox ERP (or the one given), the gateway and the runner processes.

    `plan_edit` changes the compiled plan before the runner reads it: a plan made by hand, or one
    the operator's checks would refuse, as a runner may still meet it. `in_process` leaves the
    runner to the test (`Harness.start_runner`), e.g. to hand it a Caller that fails on purpose.
    `namespace`: one whose NATS topology the test made first (an R3 key bucket on a cluster).
    """
    from onceflow_operator.dev.controlplane import free_port

    erp = erp or ErpSandbox()
    await erp.start()
    namespace = namespace or new_namespace()
    run = LocalRun.from_documents(
        manifests(erp.url, **kw), namespace=namespace, nats_url=nats.url, first_port=free_port()
    )
    for table in (run.gateways, run.runners):
        for name, (plan, _) in list(table.items()):
            table[name] = (plan, free_port())
    plan_file = run.runners["ledger"][0]
    if plan_edit is not None:
        raw = json.loads(plan_file.read_text())
        plan_edit(raw)
        plan_file.write_text(json.dumps(raw))
    if in_process:
        del run.runners["ledger"]  # the test runs it in this interpreter, when it chooses to
    await asyncio.to_thread(run.start)
    h = Harness(nats, erp, run, namespace)
    h.plan = load_plan(plan_file)
    return h


async def stop(h: Harness) -> None:
    """Stop the runner started in this interpreter (if any), the gateway and runner processes, the ERP."""
    if h.runner is not None:
        await h.runner.stop(grace=5)
    await h.client.aclose()
    await asyncio.to_thread(h.run.stop)
    await h.erp.stop()


@pytest.fixture
async def harness(nats_server: NatsServer) -> AsyncIterator[Harness]:
    h = await start(nats_server)
    yield h
    await stop(h)


async def test_poison_message_goes_to_exceptions_and_the_consumer_keeps_going(harness: Harness) -> None:
    await harness.send("poison", b"{not json at all")
    await harness.send_many([f"p{i}" for i in range(20)])
    ledger = await harness.settled(21)
    (poison,) = ledger.exceptions
    assert poison.data == b"{not json at all"
    assert poison.headers["Onceflow-Reason"] == "MalformedInput"
    assert len(ledger.effects) == 20


@pytest.fixture(scope="module")
def roomless_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A nats-server that takes at most 32 KiB per message, headers included."""
    config = tmp_path_factory.mktemp("nats-32k") / "nats.conf"
    config.write_text("max_payload: 32768\n")
    server = NatsServer(extra=["-c", str(config)])
    server.start()
    yield server
    server.close()


async def test_a_record_stored_with_little_room_left_is_still_parked_whole_with_why_in_a_few_words(
    roomless_nats: NatsServer,
) -> None:
    """A polled row or an EDI file can fill max_payload (the gateway leaves room to park it): with its
    full error the park did not fit, so the record was retried until its deliveries ran out and
    dead-lettered as MaxDeliveriesExceeded, why it failed lost. Now it is an exception at once."""
    harness = await start(roomless_nats, rules=[{"expression": "input.name != ''", "message": "n" * 900}])
    try:
        assert harness.plan is not None
        headers = {"Nats-Msg-Id": f"{harness.namespace}/row/big", "Content-Type": "application/json"}
        shell = json.dumps({"key": "big", "name": "", "pad": ""}).encode()
        room = 32768 - len(header_block(headers)) - len(shell) - 900  # a full park needs more than this
        body = json.dumps({"key": "big", "name": "", "pad": "x" * room}).encode()
        nc = await nats.connect(roomless_nats.url)
        subject = harness.plan.nats.subject.replace(">", "polled")
        await nc.jetstream().publish(subject, body, headers=headers)
        await nc.close()
        harness.accepted.add("big")
        ledger = await harness.settled(1)
        (parked,) = ledger.exceptions
        assert parked.data == body
        assert parked.headers["Onceflow-Reason"] == "InvalidRecord"
        assert 0 < len(parked.headers["Onceflow-Error"]) <= 120
    finally:
        await stop(harness)


async def test_erp_417_goes_to_exceptions_with_the_original_bytes(harness: Harness) -> None:
    body = json.dumps({"key": "nameless", "name": ""}).encode()
    await harness.send("nameless", body)
    ledger = await harness.settled(1)
    (exc,) = ledger.exceptions
    assert exc.data == body
    assert exc.headers["Onceflow-Reason"] == "RejectedByTarget"
    assert exc.headers["Onceflow-Step"] == "create"
    assert "417" in exc.headers["Onceflow-Error"]
    assert "ValidationError" in exc.headers["Onceflow-Error"]


async def test_erp_redirect_goes_to_exceptions_not_acked_as_done(harness: Harness) -> None:
    harness.erp.faults.append(Fault(status=301, times=1, path_prefix="/api/resource/Customer"))
    await harness.send("moved")
    ledger = await harness.settled(1)
    (exc,) = ledger.exceptions
    assert exc.headers["Onceflow-Reason"] == "RejectedByTarget"
    assert exc.headers["Onceflow-Step"] == "create"
    assert "301" in exc.headers["Onceflow-Error"]
    assert "https://127.0.0.1" in exc.headers["Onceflow-Error"]
    assert "baseURL" in exc.headers["Onceflow-Error"]
    assert ledger.effects == {}


async def test_503_and_429_storm_ends_in_one_effect_per_key(nats_server: NatsServer) -> None:
    # 80 refusals over 60 records: with maxDeliver 4 one unlucky record could rightly end as a
    # dead letter; 30 deliveries make every record outlast the storm.
    h = await start(nats_server, max_deliver=30, backoff=["100ms"])
    try:
        h.erp.faults += [
            Fault(status=503, times=40, retry_after=0.1),
            Fault(status=429, times=40, retry_after=0.1),
        ]
        await h.send_many([f"s{i}" for i in range(60)])
        ledger = await h.settled(60)
        assert len(ledger.effects) == 60
        assert ledger.dead_letters == []
        assert sum(f.times for f in h.erp.faults) == 0
    finally:
        await stop(h)


async def test_duplicate_deliveries_of_many_records_make_one_effect_each(harness: Harness) -> None:
    keys = [f"d{i}" for i in range(40)]
    await harness.send_many(keys + keys + keys)
    ledger = await harness.settled(40)
    assert len(ledger.effects) == 40


async def test_kill_9_of_a_runner_mid_batch_loses_and_doubles_nothing(harness: Harness) -> None:
    harness.erp.faults.append(Fault(status=200, times=10_000, delay_seconds=0.02))
    sender = asyncio.create_task(harness.send_many([f"k{i}" for i in range(300)]))
    await eventually(lambda: len(harness.erp.effects) >= 40, within=60)
    await asyncio.to_thread(harness.run.restart, "runner-ledger", kill=True)
    await sender
    ledger = await harness.settled(300, within=90)
    assert len(ledger.effects) == 300


async def test_sigterm_drains_in_flight_records(harness: Harness) -> None:
    harness.erp.faults.append(Fault(status=200, times=10_000, delay_seconds=1.0))
    await harness.send_many([f"t{i}" for i in range(60)])
    await eventually(lambda: len(harness.erp.effects) >= 1, within=30)
    assert len(harness.erp.effects) < 60, "the runner must still have records in flight"
    proc = harness.run.procs["runner-ledger"]
    await asyncio.to_thread(harness.run.restart, "runner-ledger")
    assert proc.returncode == 0
    ledger = await harness.settled(60)
    assert len(ledger.effects) == 60


async def test_exhausted_deliveries_go_to_the_dead_letter_stream(nats_server: NatsServer) -> None:
    h = await start(nats_server, max_deliver=3, backoff=["100ms", "100ms"])
    try:
        h.erp.faults.append(Fault(status=503, times=10_000))
        body = json.dumps({"key": "doomed", "name": "Doomed Ltd"}).encode()
        await h.send("doomed", body)
        ledger = await h.settled(1)
        (dead,) = ledger.dead_letters
        assert dead.data == body
        assert dead.headers["Onceflow-Reason"] == "MaxDeliveriesExceeded"
        assert dead.headers["Onceflow-Deliveries"] == "3"
    finally:
        await stop(h)


async def test_nats_server_kill_and_restart_under_load_loses_nothing() -> None:
    nats = NatsServer()
    nats.start()
    h = await start(nats)
    try:
        sender = asyncio.create_task(h.send_many([f"r{i}" for i in range(200)], concurrency=8))
        await eventually(lambda: len(h.erp.effects) >= 30, within=60)
        await asyncio.to_thread(nats.stop, kill=True)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(nats.start)
        await sender
        ledger = await h.settled(200, within=120)
        assert len(ledger.effects) == 200
    finally:
        await stop(h)
        nats.close()


async def test_a_gateway_whose_port_was_taken_before_it_bound_gets_another_and_accepts(
    nats_server: NatsServer,
) -> None:
    # A port picked free can be taken before the process binds it. The gateway must not say ready
    # before its webhook port is bound, and a local run starts it again on another port.
    from onceflow_operator.dev.controlplane import free_port

    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    taken = int(blocker.getsockname()[1])
    erp = ErpSandbox()
    await erp.start()
    namespace = new_namespace()
    run = LocalRun.from_documents(
        manifests(erp.url), namespace=namespace, nats_url=nats_server.url, first_port=free_port()
    )
    run.gateways["src"] = (run.gateways["src"][0], taken)
    run.runners["ledger"] = (run.runners["ledger"][0], free_port())
    h = Harness(nats_server, erp, run, namespace)
    try:
        await asyncio.to_thread(run.start)
        assert run.gateways["src"][1] != taken
        await h.send("moved-port", deadline=20)
        ledger = await h.settled(1)
        assert ledger.effects == {"moved-port": 1}
    finally:
        blocker.close()
        await stop(h)
