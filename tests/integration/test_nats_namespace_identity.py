"""Least-privilege NATS identity per namespace (issue #12, item 2), against a real nats-server in
decentralized JWT mode (operator, system and application accounts from `build.natsauth.bootstrap`).

Namespace `alpha` gets the user the Onceflow operator issues for it; namespace `beta` holds records,
a consumer and keys of its own. Every forbidden action is refused by the server (a permissions
violation, and nothing changed), and the allowed data path works: a gateway and a runner running
with alpha's credentials only settle a signed webhook into the sandbox ERP.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import nats
import nats.errors
import pytest
from nats.aio.client import Client, RawCredentials
from nats.js.api import ConsumerConfig, StreamConfig

from onceflow_operator.build.natsauth import (
    Bootstrap,
    Key,
    bootstrap,
    creds,
    decode_jwt,
    namespace_permissions,
    user_jwt,
)
from onceflow_operator.clients import topology
from onceflow_operator.clients.jetstream import JetStreamLink
from onceflow_operator.clients.kube import KubeClient
from onceflow_operator.controller.identity import NATS_SECRET, NamespaceIdentities, integration_secret
from onceflow_operator.dev.controlplane import ControlPlane, free_port
from onceflow_operator.dev.localrun import LocalRun
from onceflow_operator.dev.natsserver import NatsServer
from onceflow_operator.review.exceptions import ReviewError, decide, get_exception, list_exceptions
from onceflow_operator.review.reading import read_all
from onceflow_runner.contract import subjects
from onceflow_runner.contract.environment import NATS_CREDS_KEY
from onceflow_runner.contract.messages import ReviewDecision
from onceflow_runner.contract.plan import load_plan
from onceflow_runner.testing.sandbox import ErpSandbox
from tests.conftest import Kubectl
from tests.integration.review_streams import park
from tests.integration.scenario import eventually, signed_post
from tests.integration.test_delivery_faults import SECRET, SIG, manifests

#: What a refused request looks like to a client: no answer (the server drops it and says why apart).
REFUSED = (nats.errors.TimeoutError, TimeoutError, nats.errors.NoRespondersError)


@pytest.fixture(scope="module")
def keys() -> Bootstrap:
    return bootstrap()


@pytest.fixture(scope="module")
def jwt_nats(keys: Bootstrap, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    conf = tmp_path_factory.mktemp("jwt") / "auth.conf"
    conf.write_text(keys.server_config())
    server = NatsServer(extra=["-c", str(conf)])
    server.start()
    yield server
    server.close()


def namespace_creds(keys: Bootstrap, namespace: str, integrations: list[str]) -> str:
    user = Key.new("user")
    token = user_jwt(
        keys.signing, keys.account.public, user.public, namespace, namespace_permissions(namespace, integrations)
    )
    return creds(token, user.seed)


class Refusals:
    """The server's permission errors a client was told (asynchronously), as text."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self._told = asyncio.Event()

    async def record(self, exc: Exception) -> None:
        self.seen.append(str(exc))
        self._told.set()

    async def refuse(self, call: Callable[[], Awaitable[object]]) -> None:
        """`call` must be refused: done once the server says a permission was violated, or the call
        fails the way a refused request fails (no reply in time, no responders).

        Why not wait out the call's own timeout: a refused request never gets an answer, so each
        refusal cost its full timeout; the server's violation is the proof (`saw` checks which).
        """
        before = len(self.seen)
        answer = asyncio.ensure_future(call())
        deadline = asyncio.get_running_loop().time() + 3
        try:
            while not answer.done():
                self._told.clear()
                if any("permissions violation" in s.lower() for s in self.seen[before:]):
                    return
                told = asyncio.ensure_future(self._told.wait())
                left = deadline - asyncio.get_running_loop().time()
                await asyncio.wait({answer, told}, timeout=max(left, 0), return_when=asyncio.FIRST_COMPLETED)
                told.cancel()
                if left <= 0:
                    raise AssertionError("neither refused nor failed within 3 s")
            with pytest.raises(REFUSED):
                answer.result()
        finally:
            answer.cancel()
            with contextlib.suppress(BaseException):
                await answer

    async def saw(self, *words: str) -> None:
        def found() -> bool:
            return any(all(w.lower() in s.lower() for w in words) for s in self.seen)

        try:
            await eventually(found, within=5, interval=0.05)
        except AssertionError:
            raise AssertionError(f"no refusal naming {words}; the client was told {self.seen}") from None


@pytest.fixture
async def admin(jwt_nats: NatsServer, keys: Bootstrap) -> AsyncIterator[Client]:
    nc = await nats.connect(jwt_nats.url, user_credentials=RawCredentials(keys.operator_creds))
    yield nc
    await nc.close()


@pytest.fixture
async def world(admin: Client) -> dict[str, str]:
    """Two namespaces provisioned by the operator's identity; beta has a record, a consumer and a key."""
    js = admin.jetstream()
    alpha, beta = f"a{uuid.uuid4().hex[:6]}", f"b{uuid.uuid4().hex[:6]}"
    await topology.ensure_streams(js)
    for ns in (alpha, beta):
        await topology.ensure_buckets(js, ns)
    consumer = subjects.consumer_name(beta, "ledger")
    await js.add_consumer(
        subjects.IN_STREAM,
        ConsumerConfig(durable_name=consumer, filter_subject=f"onceflow.{beta}.in.>", ack_policy="explicit"),
    )
    await js.publish(subjects.inbound_subject(beta, "src", "created"), b'{"secret": "beta"}')
    kv = await js.key_value(subjects.kv_bucket(beta))
    await kv.put("k1", b"done")
    return {"alpha": alpha, "beta": beta, "beta_consumer": consumer}


@pytest.fixture
async def tenant(
    jwt_nats: NatsServer, keys: Bootstrap, world: dict[str, str]
) -> AsyncIterator[tuple[Client, Refusals]]:
    refusals = Refusals()
    nc = await nats.connect(
        jwt_nats.url,
        user_credentials=RawCredentials(namespace_creds(keys, world["alpha"], ["ledger"])),
        inbox_prefix=subjects.inbox_prefix(world["alpha"]),
        error_cb=refusals.record,
    )
    yield nc, refusals
    await nc.close()


async def test_a_namespace_cannot_subscribe_to_or_publish_into_another_namespace(
    tenant: tuple[Client, Refusals], world: dict[str, str], admin: Client
) -> None:
    nc, refusals = tenant
    beta = world["beta"]
    await nc.subscribe(f"onceflow.{beta}.>")
    await refusals.saw("Permissions Violation for Subscription", f"onceflow.{beta}.>")
    await nc.subscribe(f"{subjects.inbox_prefix(beta)}.>")  # another namespace's replies
    await refusals.saw("Permissions Violation for Subscription", subjects.inbox_prefix(beta))
    before = (await admin.jetstream().stream_info(subjects.IN_STREAM)).state.messages
    await refusals.refuse(
        lambda: nc.jetstream(timeout=2).publish(subjects.inbound_subject(beta, "src", "x"), b"forged")
    )
    await refusals.saw("Permissions Violation for Publish", f"onceflow.{beta}.in.src.x")
    await nc.publish(subjects.stats_subject(beta, "ledger"), b"{}")  # a heartbeat canary analysis would trust
    await refusals.saw("Permissions Violation for Publish", f"onceflow.{beta}.stats.ledger")
    await nc.publish(subjects.decisions_subject(beta, "ledger"), b"{}")
    await refusals.saw("Permissions Violation for Publish", f"onceflow.{beta}.decisions.ledger")
    # Decisions are people's, even in its own namespace.
    await nc.publish(subjects.exception_decision_subject(world["alpha"], "ledger", 1), b"{}")
    await refusals.saw("Permissions Violation for Publish", f"onceflow.{world['alpha']}.decisions.ledger.1")
    await nc.flush()
    assert (await admin.jetstream().stream_info(subjects.IN_STREAM)).state.messages == before


async def test_a_namespace_cannot_create_or_delete_streams_or_consumers(
    tenant: tuple[Client, Refusals], world: dict[str, str], admin: Client
) -> None:
    nc, refusals = tenant
    js = nc.jetstream(timeout=2)
    await refusals.refuse(
        lambda: js.add_stream(StreamConfig(name="MINE", subjects=[f"onceflow.{world['alpha']}.mine.>"]))
    )
    await refusals.saw("Permissions Violation for Publish", "$JS.API.STREAM.CREATE.MINE")
    await refusals.refuse(lambda: js.update_stream(StreamConfig(name=subjects.IN_STREAM, num_replicas=1, max_bytes=1)))
    await refusals.saw("$JS.API.STREAM.UPDATE.ONCEFLOW_IN")
    await refusals.refuse(lambda: js.delete_stream(subjects.AUDIT_STREAM))
    await refusals.saw("$JS.API.STREAM.DELETE.ONCEFLOW_AUDIT")
    await refusals.refuse(lambda: js.add_consumer(subjects.IN_STREAM, ConsumerConfig(durable_name="mine")))
    await refusals.saw("Permissions Violation for Publish", "$JS.API.CONSUMER")
    await refusals.refuse(lambda: js.delete_consumer(subjects.IN_STREAM, world["beta_consumer"]))
    await refusals.saw("$JS.API.CONSUMER.DELETE.ONCEFLOW_IN")
    ajs = admin.jetstream()
    assert {s.config.name for s in await ajs.streams_info()} >= set(topology.STREAM_MAX_AGE)
    assert "MINE" not in {s.config.name for s in await ajs.streams_info()}
    assert (await ajs.consumer_info(subjects.IN_STREAM, world["beta_consumer"])).num_pending == 1


async def test_a_namespace_cannot_read_another_namespaces_records_consumer_or_keys(
    tenant: tuple[Client, Refusals], world: dict[str, str], admin: Client
) -> None:
    nc, refusals = tenant
    js = nc.jetstream(timeout=2)
    beta = world["beta"]
    sub = await js.pull_subscribe_bind(world["beta_consumer"], stream=subjects.IN_STREAM)
    await refusals.refuse(lambda: sub.fetch(1, timeout=2))
    await refusals.saw("$JS.API.CONSUMER.MSG.NEXT.ONCEFLOW_IN." + world["beta_consumer"])
    await refusals.refuse(lambda: js.get_msg(subjects.IN_STREAM, 1))  # a record by sequence, whoever's it is
    await refusals.saw("$JS.API.STREAM.MSG.GET.ONCEFLOW_IN")
    await refusals.refuse(lambda: js.get_last_msg(subjects.IN_STREAM, f"onceflow.{beta}.in.src.created", direct=True))
    await refusals.saw(f"$JS.API.DIRECT.GET.ONCEFLOW_IN.onceflow.{beta}")
    await refusals.refuse(lambda: js.key_value(subjects.kv_bucket(beta)))
    await refusals.saw(f"$JS.API.STREAM.INFO.KV_{subjects.kv_bucket(beta)}")
    await refusals.refuse(
        lambda: js.get_msg(subjects.kv_stream(subjects.kv_bucket(beta)), subject=f"$KV.{subjects.kv_bucket(beta)}.k1")
    )
    # Its own keys it reads and writes.
    own = await js.key_value(subjects.kv_bucket(world["alpha"]))
    await own.put("mine", b"1")
    assert (await own.get("mine")).value == b"1"
    assert (await admin.jetstream().consumer_info(subjects.IN_STREAM, world["beta_consumer"])).num_pending == 1


async def test_a_gateway_and_runner_with_namespace_credentials_settle_a_record_end_to_end(
    jwt_nats: NatsServer, keys: Bootstrap, admin: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace = f"e{uuid.uuid4().hex[:6]}"
    admin_creds = tmp_path / "operator.creds"
    admin_creds.write_text(keys.operator_creds)
    monkeypatch.setenv("ONCEFLOW_NATS_CREDS_FILE", str(admin_creds))  # local run provisions as the operator
    erp = ErpSandbox()
    await erp.start()
    run = LocalRun.from_documents(
        manifests(erp.url), namespace=namespace, nats_url=jwt_nats.url, first_port=free_port()
    )
    for table in (run.gateways, run.runners):
        for name, (plan, _) in list(table.items()):
            table[name] = (plan, free_port())
    run.process_env = {
        "ONCEFLOW_NATS_CREDS": namespace_creds(keys, namespace, list(run.runners)),
        "ONCEFLOW_NAMESPACE": namespace,
    }
    await asyncio.to_thread(run.start)
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            body = b'{"key": "k1", "name": "Customer k1"}'
            resp = await signed_post(client, run.gateway_url("src"), "hmac", SECRET, body, "k1", **SIG)
            assert resp.status_code == 202, resp.text
        await eventually(lambda: "k/k1/create" in erp.effects, within=30, interval=0.2)
        plan = load_plan(run.runners["ledger"][0])

        async def quiet() -> bool:
            info = await admin.jetstream().consumer_info(plan.nats.stream, plan.nats.consumer)
            return info.num_pending == 0 and info.num_ack_pending == 0

        await eventually(quiet, within=20, interval=0.2)
        assert erp.effects["k/k1/create"] == 1
        logs = "".join(p.read_text() for p in (run.workdir / "logs").glob("*.log"))
        assert "Permissions Violation" not in logs
    finally:
        await asyncio.to_thread(run.stop)
        await erp.stop()


async def test_the_operator_issues_a_namespace_and_an_integration_secret_once_and_they_work(
    keys: Bootstrap, jwt_nats: NatsServer, admin: Client, kubectl: Kubectl, control_plane: ControlPlane
) -> None:
    namespace = kubectl.namespace
    kube = KubeClient.from_environment(str(control_plane.kubeconfig))
    owner = kubectl.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "orders"}}, check=True)
    integration = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": kubectl.get("configmap", "orders")["metadata"]}
    identities = NamespaceIdentities(keys.signing, keys.account.public)
    try:
        assert await identities.ensure(kube, namespace, integration) == 2
        assert await identities.ensure(kube, namespace, integration) == 0  # a resync writes nothing
        # Another operator process (a restart) reads the digests and writes nothing either.
        assert await NamespaceIdentities(keys.signing, keys.account.public).ensure(kube, namespace, integration) == 0
        # Attack review: after a new signing key the old Secrets carried users no server accepts.
        rotated = NamespaceIdentities(Key.new("account"), keys.account.public)
        assert await rotated.ensure(kube, namespace, integration) == 2
        assert await NamespaceIdentities(keys.signing, keys.account.public).ensure(kube, namespace, integration) == 2
    finally:
        await kube.close()
    assert owner.returncode == 0
    secret = kubectl.get("secret", integration_secret("orders"))
    assert secret["metadata"]["ownerReferences"][0]["name"] == "orders"  # it goes with its Integration
    text = base64.b64decode(secret["data"][NATS_CREDS_KEY]).decode()
    claims = decode_jwt(text.split("-----BEGIN NATS USER JWT-----\n")[1].split("\n")[0])
    assert f"$JS.API.CONSUMER.MSG.NEXT.*.{namespace}_orders" in claims["nats"]["pub"]["allow"]
    assert claims["nats"]["issuer_account"] == keys.account.public
    shared = base64.b64decode(kubectl.get("secret", NATS_SECRET)["data"][NATS_CREDS_KEY]).decode()
    assert "CONSUMER" not in str(decode_jwt(shared.split("-----BEGIN NATS USER JWT-----\n")[1].split("\n")[0]))
    # The issued creds work against the server, for this namespace.
    js = admin.jetstream()
    await topology.ensure_streams(js)
    await topology.ensure_buckets(js, namespace)
    for issued in (text, shared):
        nc = await nats.connect(
            jwt_nats.url, user_credentials=RawCredentials(issued), inbox_prefix=subjects.inbox_prefix(namespace)
        )
        try:
            await (await nc.jetstream(timeout=3).key_value(subjects.kv_bucket(namespace))).put("k", b"v")
        finally:
            await nc.close()


async def _answered(nc: Client, subject: str, within: float = 10.0) -> nats.aio.msg.Msg:
    """The operator's answer to a lookup, once the tenant's server has its subscription (a condition, not a pause).

    On a loaded machine the operator's interest can reach the server after its connect returned;
    until then a request finds no responder.
    """
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            return await nc.request(subject, b"", timeout=5)
        except nats.errors.NoRespondersError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_the_operator_answers_a_namespaces_lookup_of_its_own_stored_record_only(
    tenant: tuple[Client, Refusals],
    world: dict[str, str],
    admin: Client,
    keys: Bootstrap,
    jwt_nats: NatsServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A dead letter from an advisory needs the record by sequence, which a namespace user may not read."""
    nc, _ = tenant
    alpha, beta = world["alpha"], world["beta"]
    own = await admin.jetstream().publish(
        subjects.inbound_subject(alpha, "src", "created"), b"mine", headers={"X-A": "1"}
    )
    theirs = (await admin.jetstream().stream_info(subjects.IN_STREAM, subjects_filter=f"onceflow.{beta}.>")).state
    operator_creds = tmp_path / "operator.creds"
    operator_creds.write_text(keys.operator_creds)
    monkeypatch.setenv("ONCEFLOW_NATS_CREDS_FILE", str(operator_creds))
    link = JetStreamLink(jwt_nats.url, lambda *_: None)
    await link.jetstream()  # connected: it answers lookups from now on
    try:
        reply = await _answered(nc, subjects.stored_lookup_subject(alpha, subjects.IN_STREAM, own.seq))
        assert reply.headers is not None
        assert reply.headers["Onceflow-Stored-Status"] == "200"
        assert reply.data == b"mine"
        assert reply.headers["X-A"] == "1"
        # Another namespace's record, asked for under its own namespace: not found, nothing revealed.
        reply = await nc.request(
            subjects.stored_lookup_subject(alpha, subjects.IN_STREAM, theirs.first_seq), b"", timeout=5
        )
        assert reply.headers == {"Onceflow-Stored-Status": "404"}
        assert reply.data == b""
        # And asking under the other namespace's subject is refused by the server.
        with pytest.raises(REFUSED):
            await nc.request(subjects.stored_lookup_subject(beta, subjects.IN_STREAM, theirs.first_seq), b"", timeout=2)
    finally:
        await link.close()


# Attacks by a tenant holding one namespace's .creds (attack review of issue #12).


async def _count(admin: Client, stream: str, namespace: str) -> int:
    info = await admin.jetstream().stream_info(stream, subjects_filter=f"onceflow.{namespace}.>")
    return int(info.state.messages or 0)


@pytest.mark.xfail(
    strict=True, reason="not closable with one NATS account: docs/install.md, What per-namespace users do not stop"
)
async def test_stream_info_with_a_subjects_filter_reveals_no_other_namespace(
    tenant: tuple[Client, Refusals], world: dict[str, str]
) -> None:
    """`STREAM.INFO` answers per-subject counts for any filter: beta's names and volumes would leak."""
    nc, _ = tenant
    request = json.dumps({"subjects_filter": "onceflow.>"}).encode()
    try:
        reply = await nc.request(f"$JS.API.STREAM.INFO.{subjects.IN_STREAM}", request, timeout=2)
    except REFUSED:
        return
    assert world["beta"] not in reply.data.decode(), reply.data.decode()


@pytest.mark.xfail(
    strict=True, reason="not closable with one NATS account: docs/install.md, What per-namespace users do not stop"
)
async def test_a_jetstream_ack_cannot_be_sent_into_another_namespaces_stream(
    tenant: tuple[Client, Refusals], world: dict[str, str], admin: Client
) -> None:
    """A publish with a reply subject makes JetStream send its ack there, whatever the publisher may publish."""
    nc, _ = tenant
    alpha, beta = world["alpha"], world["beta"]
    before = {s: await _count(admin, s, beta) for s in (subjects.IN_STREAM, subjects.DECISIONS_STREAM)}
    own_before = await _count(admin, subjects.DECISIONS_STREAM, alpha)
    targets = [
        subjects.inbound_subject(beta, "src", "forged"),
        subjects.decisions_subject(beta, "ledger"),
        subjects.decisions_subject(alpha, "ledger"),  # its own decisions are people's too
    ]
    for target in targets:
        await nc.publish(subjects.inbound_subject(alpha, "src", "created"), b"{}", reply=target)
        await nc.publish(f"$JS.API.STREAM.INFO.{subjects.IN_STREAM}", b"", reply=target)
        # A direct get answers with a stored record, headers and all: its own, reflected as beta's.
        await nc.publish(
            f"$JS.API.DIRECT.GET.{subjects.IN_STREAM}.{subjects.inbound_subject(alpha, 'src', 'created')}",
            b"",
            reply=target,
        )
    await nc.flush()
    await asyncio.sleep(0.5)  # nothing to wait for: the attack must have no effect
    after = {s: await _count(admin, s, beta) for s in (subjects.IN_STREAM, subjects.DECISIONS_STREAM)}
    assert after == before
    assert await _count(admin, subjects.DECISIONS_STREAM, alpha) == own_before


async def test_the_operators_stored_lookup_answers_only_into_the_asking_namespaces_inbox(
    tenant: tuple[Client, Refusals],
    world: dict[str, str],
    admin: Client,
    keys: Bootstrap,
    jwt_nats: NatsServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The operator answers with the stored record: its reply subject must not be a stream's subject."""
    nc, _ = tenant
    alpha, beta = world["alpha"], world["beta"]
    forged = json.dumps({"decision": "approve", "by": "someone"}).encode()
    own = await nc.jetstream(timeout=3).publish(subjects.inbound_subject(alpha, "src", "created"), forged)
    operator_creds = tmp_path / "operator.creds"
    operator_creds.write_text(keys.operator_creds)
    monkeypatch.setenv("ONCEFLOW_NATS_CREDS_FILE", str(operator_creds))
    link = JetStreamLink(jwt_nats.url, lambda *_: None)
    await link.jetstream()
    try:
        before = {s: await _count(admin, s, beta) for s in (subjects.IN_STREAM, subjects.DECISIONS_STREAM)}
        own_before = await _count(admin, subjects.DECISIONS_STREAM, alpha)
        ask = subjects.stored_lookup_subject(alpha, subjects.IN_STREAM, own.seq)
        for target in (
            subjects.inbound_subject(beta, "src", "forged"),
            subjects.decisions_subject(beta, "ledger"),
            subjects.decisions_subject(alpha, "ledger"),
        ):
            await nc.publish(ask, b"", reply=target)
        await nc.flush()
        # The same request with a proper inbox is answered: once that is, the forged ones were handled.
        reply = await nc.request(ask, b"", timeout=5)
        assert reply.data == forged
        await asyncio.sleep(0.3)
        after = {s: await _count(admin, s, beta) for s in (subjects.IN_STREAM, subjects.DECISIONS_STREAM)}
        assert after == before
        assert await _count(admin, subjects.DECISIONS_STREAM, alpha) == own_before
    finally:
        await link.close()


async def test_a_reflected_message_on_a_decisions_subject_is_no_decision_and_a_person_still_decides(
    tenant: tuple[Client, Refusals], world: dict[str, str], admin: Client
) -> None:
    """JetStream stores what it answers to any reply subject (docs/install.md): a publish ack
    reflected onto an exception's decision subject must not break the namespace's list, and a
    direct get of a record shaped like a decision must not pass for one or block the reviewer."""
    nc, _ = tenant
    alpha = world["alpha"]
    ajs = admin.jetstream()
    sequence = await park(ajs, alpha, original_subject=subjects.inbound_subject(alpha, "src", "parked"))
    integration = (await get_exception(ajs, alpha, sequence)).integration
    target = subjects.exception_decision_subject(alpha, integration, sequence)
    forged = ReviewDecision(
        exception_sequence=sequence,
        action="approve",
        who="mallory",
        time="2026-01-01T00:00:00Z",
        integration=integration,
    )
    own = subjects.inbound_subject(alpha, "src", "forged")
    await nc.jetstream(timeout=3).publish(own, forged.to_wire())
    await nc.publish(subjects.inbound_subject(alpha, "src", "ack"), b"{}", reply=target)  # a publish ack
    await nc.publish(f"$JS.API.DIRECT.GET.{subjects.IN_STREAM}.{own}", b"", reply=target)  # its own record
    await nc.flush()

    async def reflected() -> bool:
        return len(await read_all(ajs, subjects.DECISIONS_STREAM, target)) == 2

    await eventually(reflected, within=5, interval=0.05)
    assert (await get_exception(ajs, alpha, sequence)).decision is None
    assert sequence in [r.sequence for r in await list_exceptions(ajs, alpha)]
    decision = await decide(ajs, alpha, sequence, "discard", who="alice", why="the real one")
    assert decision.who == "alice"
    stored = await get_exception(ajs, alpha, sequence)
    assert stored.decision is not None
    assert stored.decision.who == "alice"
    with pytest.raises(ReviewError, match="already decided: discard by alice"):
        await decide(ajs, alpha, sequence, "approve", who="bob", why="too late")


async def test_listing_watching_system_and_prefix_tricks_are_refused(
    tenant: tuple[Client, Refusals], world: dict[str, str], admin: Client, jwt_nats: NatsServer, keys: Bootstrap
) -> None:
    """Attack review: what held. Each is refused by the server; none reaches another namespace."""
    nc, refusals = tenant
    beta = world["beta"]
    for api in (
        "$JS.API.STREAM.LIST",
        "$JS.API.STREAM.NAMES",
        f"$JS.API.CONSUMER.LIST.{subjects.IN_STREAM}",
        f"$JS.API.CONSUMER.NAMES.{subjects.IN_STREAM}",
        f"$JS.API.CONSUMER.CREATE.{subjects.IN_STREAM}",  # an ephemeral or ordered consumer
        f"$JS.API.DIRECT.GET.{subjects.IN_STREAM}",  # by sequence, without a subject
        f"$JS.API.STREAM.INFO.{subjects.kv_stream(subjects.kv_bucket(beta))}",
        "$SYS.REQ.SERVER.PING",
    ):
        await refusals.refuse(lambda api=api: nc.request(api, b"{}", timeout=2))  # type: ignore[misc]
        await refusals.saw("Permissions Violation for Publish", api)
    # Watching another namespace's bucket needs its stream's info and a consumer: both refused.
    await refusals.refuse(lambda: nc.jetstream(timeout=2).key_value(subjects.kv_bucket(beta)))
    await nc.subscribe("_INBOX.>")  # the default inbox prefix: others' replies
    await refusals.saw("Permissions Violation for Subscription", "_INBOX.>")
    await nc.subscribe("$SYS.>")
    await refusals.saw("Permissions Violation for Subscription", "$SYS.>")
    # A namespace whose name extends another's (alpha vs alpha-x) shares no subject with it.
    longer = f"{world['alpha']}-x"
    await nc.publish(subjects.stats_subject(longer, "ledger"), b"{}")
    await refusals.saw("Permissions Violation for Publish", f"onceflow.{longer}.stats.ledger")
    # An Integration's runners reach their own consumer only, not another's of the same namespace.
    other = subjects.consumer_name(world["alpha"], "orders")
    await admin.jetstream().add_consumer(
        subjects.IN_STREAM,
        ConsumerConfig(
            durable_name=other, filter_subject=f"onceflow.{world['alpha']}.in.orders.>", ack_policy="explicit"
        ),
    )
    sub = await nc.jetstream(timeout=2).pull_subscribe_bind(other, stream=subjects.IN_STREAM)
    await refusals.refuse(lambda: sub.fetch(1, timeout=2))
    await refusals.saw(f"$JS.API.CONSUMER.MSG.NEXT.ONCEFLOW_IN.{other}")
