"""An account per namespace (issue #12, account mode), against a real nats-server on a full resolver.

The server trusts a fresh NATS operator (`build.natsauth.bootstrap`) and starts knowing only the
system and application accounts; each namespace's account is signed by the operator signing key
and pushed by the Onceflow operator (`clients.accounts`) over `$SYS.REQ.CLAIMS.UPDATE`.

What this proves: the two reflection attacks that one shared account cannot stop (the xfail tests
of `test_nats_namespace_identity.py`) have no effect across namespaces here; the user-mode
permission tests hold as well (imported below and run with this module's fixtures, where `admin`
is the *other* namespace's administrator); a gateway and a runner with a namespace's account
credentials settle a record; and the operator's own reads (heartbeats, stored-record lookups)
work through its per-namespace connections.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import nats
import nats.js.errors
import pytest
from click.testing import CliRunner
from nats.aio.client import Client, RawCredentials
from nats.js.api import ConsumerConfig

from onceflow_operator.build.natsauth import (
    AccountLimits,
    Bootstrap,
    Key,
    bootstrap,
    creds,
    namespace_account_key,
    namespace_permissions,
    user_jwt,
)
from onceflow_operator.cli import main
from onceflow_operator.clients import topology
from onceflow_operator.clients.accounts import AccountError, Accounts, AccountSettings, NatsLinks
from onceflow_operator.clients.kube import KubeClient
from onceflow_operator.controller.identity import NATS_SECRET, NamespaceIdentities
from onceflow_operator.controller.streams import record_reports, watch_streams
from onceflow_operator.dev.controlplane import ControlPlane, free_port
from onceflow_operator.dev.localrun import LocalRun
from onceflow_operator.dev.natsserver import NatsServer
from onceflow_operator.review.console import Console
from onceflow_operator.review.exceptions import decide, list_exceptions
from onceflow_runner.contract import subjects
from onceflow_runner.contract.environment import NATS_CREDS_KEY
from onceflow_runner.contract.plan import load_plan
from onceflow_runner.testing.sandbox import ErpSandbox
from tests.conftest import Kubectl
from tests.integration.nats_cluster import NatsCluster
from tests.integration.review_streams import park
from tests.integration.scenario import eventually, signed_post
from tests.integration.test_console import reviewers
from tests.integration.test_console_access import serving
from tests.integration.test_delivery_faults import SECRET, SIG, manifests
from tests.integration.test_nats_namespace_identity import (
    REFUSED,
    Refusals,
    _answered,
    test_a_namespace_cannot_create_or_delete_streams_or_consumers,
    test_a_namespace_cannot_read_another_namespaces_records_consumer_or_keys,
    test_a_namespace_cannot_subscribe_to_or_publish_into_another_namespace,
    test_listing_watching_system_and_prefix_tricks_are_refused,
)
from tests.integration.test_nats_namespace_identity import (
    test_a_reflected_message_on_a_decisions_subject_is_no_decision_and_a_person_still_decides as user_mode_reflected_decision,
)

# The user-mode permission tests, run here in account mode (their fixtures are this module's).
__all__ = [
    "test_a_namespace_cannot_create_or_delete_streams_or_consumers",
    "test_a_namespace_cannot_read_another_namespaces_records_consumer_or_keys",
    "test_a_namespace_cannot_subscribe_to_or_publish_into_another_namespace",
    "test_listing_watching_system_and_prefix_tricks_are_refused",
]


@pytest.fixture(scope="module")
def keys() -> Bootstrap:
    return bootstrap()


@pytest.fixture(scope="module")
def jwt_nats(keys: Bootstrap, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    folder = tmp_path_factory.mktemp("accounts")
    conf = folder / "auth.conf"
    conf.write_text(keys.server_config("full", str(folder / "jwt")))
    server = NatsServer(extra=["-c", str(conf)])
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def settings(keys: Bootstrap) -> AccountSettings:
    return AccountSettings(keys.operator_signing, keys.system_creds, AccountLimits(disk_storage=1 << 30))


def tenant_creds(settings: AccountSettings, namespace: str, integrations: list[str]) -> str:
    """A namespace user as the operator issues it in account mode: signed by the namespace's account."""
    account = Accounts("", settings).key(namespace)
    user = Key.new("user")
    permissions = namespace_permissions(namespace, integrations)
    return creds(user_jwt(account, account.public, user.public, namespace, permissions), user.seed)


async def refused_connect(url: str, user: str) -> None:
    """The servers refuse these credentials (the client is closed after: nats-py leaves a refused socket open)."""
    nc = Client()
    try:
        with pytest.raises(nats.errors.Error, match="Authorization Violation"):
            await nc.connect(
                url, user_credentials=RawCredentials(user), allow_reconnect=False, max_reconnect_attempts=0
            )
    finally:
        await nc.close()


async def _admin(url: str, accounts: Accounts, namespace: str) -> Client:
    """The operator's administrator in a namespace's account, after pushing the account."""
    await accounts.push(namespace)
    return await nats.connect(url, user_credentials=RawCredentials(accounts.admin_creds(namespace)))


@pytest.fixture
async def world(jwt_nats: NatsServer, settings: AccountSettings) -> AsyncIterator[dict[str, object]]:
    """Two namespaces, each in its account with the Onceflow streams; beta has a record, a consumer and a key."""
    alpha, beta = f"a{uuid.uuid4().hex[:6]}", f"b{uuid.uuid4().hex[:6]}"
    accounts = Accounts(jwt_nats.url, settings)
    admins = {ns: await _admin(jwt_nats.url, accounts, ns) for ns in (alpha, beta)}
    for ns, nc in admins.items():
        js = nc.jetstream()
        await topology.ensure_streams(js)
        await topology.ensure_buckets(js, ns)
    js = admins[beta].jetstream()
    consumer = subjects.consumer_name(beta, "ledger")
    await js.add_consumer(
        subjects.IN_STREAM,
        ConsumerConfig(durable_name=consumer, filter_subject=f"onceflow.{beta}.in.>", ack_policy="explicit"),
    )
    await js.publish(subjects.inbound_subject(beta, "src", "created"), b'{"secret": "beta"}')
    await (await js.key_value(subjects.kv_bucket(beta))).put("k1", b"done")
    yield {"alpha": alpha, "beta": beta, "beta_consumer": consumer, "admins": admins, "accounts": accounts}
    for nc in admins.values():
        await nc.close()
    await accounts.close()


@pytest.fixture
def admin(world: dict[str, object]) -> Client:
    """Beta's administrator: what the imported tests check for "nothing of beta changed"."""
    admins: dict[str, Client] = world["admins"]  # type: ignore[assignment]
    return admins[str(world["beta"])]


@pytest.fixture
async def tenant(
    jwt_nats: NatsServer, settings: AccountSettings, world: dict[str, object]
) -> AsyncIterator[tuple[Client, Refusals]]:
    refusals = Refusals()
    alpha = str(world["alpha"])
    nc = await nats.connect(
        jwt_nats.url,
        user_credentials=RawCredentials(tenant_creds(settings, alpha, ["ledger"])),
        inbox_prefix=subjects.inbox_prefix(alpha),
        error_cb=refusals.record,
    )
    yield nc, refusals
    await nc.close()


async def _count(nc: Client, stream: str, namespace: str) -> int:
    info = await nc.jetstream().stream_info(stream, subjects_filter=f"onceflow.{namespace}.>")
    return int(info.state.messages or 0)


async def test_stream_info_with_a_subjects_filter_reveals_no_other_namespace_in_account_mode(
    tenant: tuple[Client, Refusals], world: dict[str, object]
) -> None:
    """The user-mode leak: `STREAM.INFO` with a filter listed every namespace's subjects. Here it sees its own."""
    nc, _ = tenant
    alpha = str(world["alpha"])
    await nc.jetstream(timeout=3).publish(subjects.inbound_subject(alpha, "src", "created"), b"{}")
    request = json.dumps({"subjects_filter": "onceflow.>"}).encode()
    reply = await nc.request(f"$JS.API.STREAM.INFO.{subjects.IN_STREAM}", request, timeout=3)
    answer = json.loads(reply.data)
    assert set(answer["state"]["subjects"]) == {subjects.inbound_subject(alpha, "src", "created")}, answer
    assert str(world["beta"]) not in reply.data.decode()


async def test_a_reflected_jetstream_answer_never_reaches_another_namespaces_account(
    tenant: tuple[Client, Refusals], world: dict[str, object]
) -> None:
    """Pub acks, API answers and direct gets sent to beta's subjects land in alpha's own account, if anywhere."""
    nc, _ = tenant
    alpha, beta = str(world["alpha"]), str(world["beta"])
    admins: dict[str, Client] = world["admins"]  # type: ignore[assignment]
    streams = (subjects.IN_STREAM, subjects.DECISIONS_STREAM)
    before = {s: await _count(admins[beta], s, beta) for s in streams}
    targets = [subjects.inbound_subject(beta, "src", "forged"), subjects.decisions_subject(beta, "ledger")]
    for target in targets:
        await nc.publish(subjects.inbound_subject(alpha, "src", "created"), b"{}", reply=target)
        await nc.publish(f"$JS.API.STREAM.INFO.{subjects.IN_STREAM}", b"", reply=target)
        await nc.publish(
            f"$JS.API.DIRECT.GET.{subjects.IN_STREAM}.{subjects.inbound_subject(alpha, 'src', 'created')}",
            b"",
            reply=target,
        )
    await nc.flush()

    async def reflected() -> bool:
        # The attack did run: JetStream answered, into alpha's own account (its streams capture beta's names).
        found = [await _count(admins[alpha], s, beta) for s in streams]
        return min(found) >= 3  # an ack, an API answer and a direct get per target (at least)

    await eventually(reflected, within=10, interval=0.05)
    assert {s: await _count(admins[beta], s, beta) for s in streams} == before


async def test_the_servers_refuse_an_account_signed_by_a_key_the_operator_does_not_list(
    jwt_nats: NatsServer, keys: Bootstrap, settings: AccountSettings
) -> None:
    """A stolen system user alone cannot make a namespace's account: the servers trust the operator's keys only."""
    rogue = AccountSettings(Key.new("operator"), keys.system_creds)
    accounts = Accounts(jwt_nats.url, rogue)
    namespace = f"r{uuid.uuid4().hex[:6]}"
    try:
        await accounts.push(namespace)  # stored by the resolver, but never trusted
    except AccountError:
        pass
    finally:
        await accounts.close()
    await refused_connect(jwt_nats.url, accounts.admin_creds(namespace))


async def test_the_operator_pushes_the_account_limits_and_caps_streams_to_them(
    jwt_nats: NatsServer, keys: Bootstrap
) -> None:
    """JetStream refuses a stream whose consumer cap exceeds its account's limit: the operator lowers the cap."""
    limited = AccountSettings(keys.operator_signing, keys.system_creds, AccountLimits(streams=50, consumer=1000))
    links = NatsLinks(jwt_nats.url, lambda *_: None, accounts=limited)
    namespace = f"l{uuid.uuid4().hex[:6]}"
    try:
        await links.ensure_namespace(namespace)
        js = await links.jetstream(namespace)
        info = await js.account_info()
        assert (info.limits.max_streams, info.limits.max_consumers) == (50, 1000)
        assert info.streams == len(topology.STREAM_MAX_AGE) + len(topology.namespace_buckets(namespace))
        assert (await js.stream_info(subjects.IN_STREAM)).config.max_consumers == 1000
    finally:
        await links.close()


async def test_a_gateway_and_runner_with_account_credentials_settle_a_record_and_the_operator_reads_it(
    jwt_nats: NatsServer, settings: AccountSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The data path in account mode, and the operator's reads through its per-namespace connection."""
    namespace = f"e{uuid.uuid4().hex[:6]}"
    beats: list[tuple[str, object]] = []
    links = NatsLinks(jwt_nats.url, lambda ns, beat: beats.append((ns, beat)), accounts=settings)
    await links.ensure_namespace(namespace)  # pushes the account, creates its streams and buckets
    assert links.namespace_ensured(namespace)
    assert links.accounts is not None
    admin_creds = tmp_path / "admin.creds"
    admin_creds.write_text(links.accounts.admin_creds(namespace))
    monkeypatch.setenv("ONCEFLOW_NATS_CREDS_FILE", str(admin_creds))  # local run provisions the lanes
    erp = ErpSandbox()
    await erp.start()
    run = LocalRun.from_documents(
        manifests(erp.url), namespace=namespace, nats_url=jwt_nats.url, first_port=free_port()
    )
    for table in (run.gateways, run.runners):
        for name, (plan, _) in list(table.items()):
            table[name] = (plan, free_port())
    tenant = tenant_creds(settings, namespace, list(run.runners))
    run.process_env = {"ONCEFLOW_NATS_CREDS": tenant, "ONCEFLOW_NAMESPACE": namespace}
    await asyncio.to_thread(run.start)
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            body = b'{"key": "k1", "name": "Customer k1"}'
            resp = await signed_post(client, run.gateway_url("src"), "hmac", SECRET, body, "k1", **SIG)
            assert resp.status_code == 202, resp.text
        await eventually(lambda: "k/k1/create" in erp.effects, within=30, interval=0.2)
        plan = load_plan(run.runners["ledger"][0])
        js = await links.jetstream(namespace)

        async def quiet() -> bool:
            info = await js.consumer_info(plan.nats.stream, plan.nats.consumer)
            return info.num_pending == 0 and info.num_ack_pending == 0

        await eventually(quiet, within=20, interval=0.2)
        assert erp.effects["k/k1/create"] == 1
        # Heartbeats reach the operator's connection in the namespace's account (canary analysis reads them).
        await eventually(lambda: any(ns == namespace for ns, _ in beats), within=30, interval=0.2)
        lanes = await links.observe_lanes(plan)
        assert lanes.main_floor is not None
        assert lanes.main_floor >= 1
        # The stored-record lookup: the tenant asks in its account, the operator's link there answers.
        stored = (await js.stream_info(subjects.IN_STREAM)).state.first_seq
        nc = await nats.connect(
            jwt_nats.url, user_credentials=RawCredentials(tenant), inbox_prefix=subjects.inbox_prefix(namespace)
        )
        try:
            reply = await _answered(nc, subjects.stored_lookup_subject(namespace, subjects.IN_STREAM, stored))
            assert reply.headers is not None
            assert reply.headers["Onceflow-Stored-Status"] == "200"
            assert json.loads(reply.data)["key"] == "k1"
        finally:
            await nc.close()
        logs = "".join(p.read_text() for p in (run.workdir / "logs").glob("*.log"))
        assert "Permissions Violation" not in logs
    finally:
        await asyncio.to_thread(run.stop)
        await erp.stop()
        await links.close()


async def test_the_operators_lookup_in_one_account_answers_nothing_of_another_namespace(
    jwt_nats: NatsServer, settings: AccountSettings, tenant: tuple[Client, Refusals], world: dict[str, object]
) -> None:
    nc, _ = tenant
    alpha, beta = str(world["alpha"]), str(world["beta"])
    links = NatsLinks(jwt_nats.url, lambda *_: None, accounts=settings)
    try:
        own = await nc.jetstream(timeout=3).publish(subjects.inbound_subject(alpha, "src", "created"), b"mine")
        await links.jetstream(alpha)  # connected into alpha's account: it answers lookups there
        reply = await _answered(nc, subjects.stored_lookup_subject(alpha, subjects.IN_STREAM, own.seq))
        assert reply.data == b"mine"
        # Beta's record has sequence 1 in beta's account; alpha's sequence 1 is alpha's own or nothing.
        with pytest.raises(REFUSED):
            await nc.request(subjects.stored_lookup_subject(beta, subjects.IN_STREAM, 1), b"", timeout=2)
    finally:
        await links.close()


async def test_a_persons_creds_from_nats_auth_creds_review_their_namespaces_exceptions_only(
    jwt_nats: NatsServer, keys: Bootstrap, world: dict[str, object], tmp_path: Path
) -> None:
    """`onceflow exceptions` in account mode: a user minted for one namespace's account lists and decides there."""
    alpha, beta = str(world["alpha"]), str(world["beta"])
    admins: dict[str, Client] = world["admins"]  # type: ignore[assignment]
    sequence = await park(admins[alpha].jetstream(), alpha)
    await park(admins[beta].jetstream(), beta)
    key_file = tmp_path / "operator-signing-key"
    key_file.write_text(keys.operator_signing.seed)
    out = tmp_path / "person.creds"
    args = ["nats-auth", "creds", "-n", alpha, "--signing-key-file", str(key_file), "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    nc = await nats.connect(jwt_nats.url, user_credentials=str(out))
    try:
        js = nc.jetstream(timeout=5)
        assert [r.sequence for r in await list_exceptions(js, alpha)] == [sequence]
        assert await list_exceptions(js, beta) == []  # beta's are in beta's account
        decision = await decide(js, alpha, sequence, "discard", who="alice", why="checked")
        assert decision.who == "alice"
    finally:
        await nc.close()


async def test_a_revoked_user_is_disconnected_refused_and_stays_revoked_after_the_operator_pushes_again(
    jwt_nats: NatsServer, keys: Bootstrap, tmp_path: Path
) -> None:
    """A leaked .creds: `nats-auth revoke` cuts it off at once; the operator's next push (a restart) keeps that."""
    limited = AccountSettings(keys.operator_signing, keys.system_creds, AccountLimits(streams=40))
    namespace = f"v{uuid.uuid4().hex[:6]}"
    operator = Accounts(jwt_nats.url, limited)
    await operator.push(namespace)
    await operator.close()
    leaked, kept = tenant_creds(limited, namespace, []), operator.admin_creds(namespace)
    told = Refusals()
    victim = await nats.connect(
        jwt_nats.url, user_credentials=RawCredentials(leaked), error_cb=told.record, allow_reconnect=False
    )
    (tmp_path / "leaked.creds").write_text(leaked)
    (tmp_path / "key").write_text(keys.operator_signing.seed)
    (tmp_path / "system.creds").write_text(keys.system_creds)
    args = ["nats-auth", "revoke", "--nats", jwt_nats.url, "-n", namespace, "--signing-key-file"]
    args += [str(tmp_path / "key"), "--system-creds-file", str(tmp_path / "system.creds")]
    result = await asyncio.to_thread(CliRunner().invoke, main, [*args, "--creds-file", str(tmp_path / "leaked.creds")])
    assert result.exit_code == 0, result.output
    await eventually(lambda: not victim.is_connected, within=10, interval=0.05)  # the servers closed it
    await victim.close()

    await refused_connect(jwt_nats.url, leaked)
    # The operator restarts and pushes the account again, with its limits: the revocation stays.
    again = Accounts(jwt_nats.url, limited)
    await again.push(namespace)
    await again.close()
    await refused_connect(jwt_nats.url, leaked)
    other = await nats.connect(jwt_nats.url, user_credentials=RawCredentials(kept))  # other users are unaffected
    try:
        assert (await other.jetstream().account_info()).limits.max_streams == 40  # the CLI kept the limits
    finally:
        await other.close()


@pytest.mark.controlplane
async def test_the_review_console_lists_and_decides_in_the_namespaces_own_account(
    jwt_nats: NatsServer,
    keys: Bootstrap,
    settings: AccountSettings,
    admin_kubectl: Kubectl,
    control_plane: ControlPlane,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The console in account mode derives the namespace's account and a user of it, and reads there."""
    for name in ("ONCEFLOW_CONSOLE_PROXY_SECRET", "ONCEFLOW_CONSOLE_TRUSTED_PROXIES", "ONCEFLOW_CONSOLE_AUDIENCES"):
        monkeypatch.delenv(name, raising=False)
    namespace = f"c{uuid.uuid4().hex[:8]}"
    admin_kubectl.run("create", "namespace", namespace)
    Kubectl(admin_kubectl.kubeconfig, namespace).apply(*reviewers(namespace))
    accounts = Accounts(jwt_nats.url, settings)
    nc = await _admin(jwt_nats.url, accounts, namespace)
    kube = KubeClient.from_environment(str(control_plane.kubeconfig))
    try:
        await topology.ensure_streams(nc.jetstream())
        sequence = await park(nc.jetstream(), namespace)
        console = Console(jwt_nats.url, kube, auth="proxy", account_signing=keys.operator_signing)
        async with serving(console) as url, httpx.AsyncClient(headers={"X-Forwarded-User": "alice"}) as client:
            page = await client.get(f"{url}/exceptions?namespace={namespace}")
            assert page.status_code == 200, page.text
            assert "1 record(s) waiting for a decision." in page.text
            assert f"#{sequence}" in page.text
    finally:
        await nc.close()
        await accounts.close()
        await kube.close()


async def test_the_stream_watcher_puts_back_a_namespaces_deleted_stream_and_a_forgotten_namespace_reconnects(
    jwt_nats: NatsServer, settings: AccountSettings, caplog: pytest.LogCaptureFixture
) -> None:
    """Account mode: the watcher goes round every namespace's connection; `forget` closes one, the next use reopens it."""
    links = NatsLinks(jwt_nats.url, lambda *_: None, on_streams=record_reports, accounts=settings)
    alpha, beta = f"w{uuid.uuid4().hex[:6]}", f"x{uuid.uuid4().hex[:6]}"
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_streams(links, stop, 0.1))
    try:
        with caplog.at_level(logging.INFO, logger="onceflow.operator"):
            for namespace in (alpha, beta):
                await links.ensure_namespace(namespace)
        assert f"stream {subjects.IN_STREAM} (namespace {alpha}) created" in caplog.text
        js = await links.jetstream(beta)
        with caplog.at_level(logging.WARNING, logger="onceflow.operator"):
            await js.delete_stream(subjects.AUDIT_STREAM)

            async def back() -> bool:
                try:
                    await js.stream_info(subjects.AUDIT_STREAM)
                except nats.js.errors.NotFoundError:
                    return False
                return True

            await eventually(back, within=10, interval=0.1)
        assert f"streams {subjects.AUDIT_STREAM} (namespace {beta}) are missing" in caplog.text
        first = links.links()
        await links.forget(alpha)
        assert len(links.links()) == len(first) - 1
        assert not links.namespace_ensured(alpha)
        await links.ensure_namespace(alpha)  # a new object in the namespace: a new connection, same account
        assert (await (await links.jetstream(alpha)).stream_info(subjects.IN_STREAM)).state.messages == 0
    finally:
        stop.set()
        await watcher
        await links.close()


async def test_a_reflected_message_on_its_own_decisions_subject_is_no_decision_in_account_mode(
    tenant: tuple[Client, Refusals], world: dict[str, object]
) -> None:
    """Within its own account a tenant still reflects answers onto its own decisions subject: review's guards hold."""
    admins: dict[str, Client] = world["admins"]  # type: ignore[assignment]
    await user_mode_reflected_decision(tenant, world, admins[str(world["alpha"])])  # type: ignore[arg-type]


@pytest.mark.controlplane
async def test_the_operator_issues_secrets_whose_users_reach_the_namespaces_account(
    jwt_nats: NatsServer, settings: AccountSettings, kubectl: Kubectl, control_plane: ControlPlane
) -> None:
    """Account mode through the real API server: the Secret's user is signed by the namespace's account and works."""
    namespace = kubectl.namespace
    kube = KubeClient.from_environment(str(control_plane.kubeconfig))
    signing = settings.signing
    identities = NamespaceIdentities(signing, "", accounts=lambda ns: namespace_account_key(signing, ns))
    accounts = Accounts(jwt_nats.url, settings)
    admin = await _admin(jwt_nats.url, accounts, namespace)
    try:
        assert await identities.ensure(kube, namespace) == 1
        assert await identities.ensure(kube, namespace) == 0  # a resync writes nothing
        await topology.ensure_streams(admin.jetstream())
        await topology.ensure_buckets(admin.jetstream(), namespace)
        issued = base64.b64decode(kubectl.get("secret", NATS_SECRET)["data"][NATS_CREDS_KEY]).decode()
        nc = await nats.connect(
            jwt_nats.url, user_credentials=RawCredentials(issued), inbox_prefix=subjects.inbox_prefix(namespace)
        )
        try:
            await (await nc.jetstream(timeout=3).key_value(subjects.kv_bucket(namespace))).put("k", b"v")
        finally:
            await nc.close()
        value = await (await admin.jetstream().key_value(subjects.kv_bucket(namespace))).get("k")
        assert value.value == b"v"  # in the namespace's own account
    finally:
        await admin.close()
        await accounts.close()
        await kube.close()


async def test_on_a_three_node_cluster_an_account_pushed_to_one_server_serves_r3_streams_on_every_server(
    keys: Bootstrap, settings: AccountSettings, tmp_path: Path
) -> None:
    """What production runs: the full resolver shares a pushed account across the cluster, and its streams are R3."""
    cluster = NatsCluster()
    for node in cluster.nodes:
        conf = tmp_path / f"{node.name}.conf"
        conf.write_text(keys.server_config("full", str(tmp_path / f"jwt-{node.name}")))
        node.server.extra += ["-c", str(conf)]
    cluster.start()
    namespace = f"r{uuid.uuid4().hex[:6]}"
    accounts = Accounts(cluster.nodes[0].url, settings)
    try:
        await accounts.push(namespace)
        admin = await nats.connect(
            cluster.nodes[2].url, user_credentials=RawCredentials(accounts.admin_creds(namespace))
        )
        try:
            js = admin.jetstream(timeout=10)

            async def provisioned() -> bool:
                try:  # JetStream's meta leader is elected a moment after the servers start
                    await topology.ensure_streams(js, replicas=3)
                except Exception:
                    return False
                return True

            await eventually(provisioned, within=60, interval=0.5)
            tenant = await nats.connect(
                cluster.nodes[1].url,
                user_credentials=RawCredentials(tenant_creds(settings, namespace, [])),
                inbox_prefix=subjects.inbox_prefix(namespace),
            )
            try:
                ack = await tenant.jetstream(timeout=10).publish(subjects.inbound_subject(namespace, "src", "x"), b"{}")
            finally:
                await tenant.close()
            info = await js.stream_info(subjects.IN_STREAM)
            assert info.config.num_replicas == 3
            assert (ack.stream, info.state.messages) == (subjects.IN_STREAM, 1)
        finally:
            await admin.close()
    finally:
        await accounts.close()
        cluster.close()
