"""The whole operator in NATS account mode (issue #12), end to end with real parts.

`test_nats_account_isolation.py` proves account mode part by part; here the operator runs as its
own process (`onceflow operator -A`, `ONCEFLOW_NATS_ISOLATION=account`) against a control plane of
its own (the session's in-process operator watches every namespace, in user mode), a nats-server
on a full resolver that starts knowing only the system and application accounts, and the local
executor running the gateway and runner Deployments with the Secrets their pods would get.

Two namespaces get the same webhook -> validate -> ERP Integration. The operator must push each
namespace's account, issue the namespace's Secrets with users of *that* account, create the
streams and buckets in each account, and read each namespace's runner heartbeats through its
connection there; a record parked in one namespace is listed by `onceflow exceptions` with that
namespace's credentials and is not visible with the other's.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from nats.aio.client import Client, RawCredentials

from onceflow_operator.build.natsauth import Bootstrap, bootstrap, decode_jwt, namespace_account_key
from onceflow_operator.clients import topology
from onceflow_operator.clients.accounts import namespace_user_creds
from onceflow_operator.clients.kube import KubeClient
from onceflow_operator.controller.identity import NATS_SECRET, integration_secret
from onceflow_operator.dev.controlplane import ControlPlane, free_port
from onceflow_operator.dev.executor import LocalExecutor, spawn_operator
from onceflow_operator.dev.natsserver import NatsServer
from onceflow_runner.contract import subjects
from onceflow_runner.contract.environment import NATS_CREDS_KEY
from onceflow_runner.testing.sandbox import ErpSandbox
from tests.conftest import ROOT, Kubectl
from tests.integration.scenario import eventually, signed_post
from tests.integration.test_delivery_faults import SECRET, SIG, manifests

pytestmark = pytest.mark.controlplane

#: The validate step: a record without a name is a rule violation, parked as an exception.
RULES = [{"expression": "input.name != ''", "message": "a customer needs a name"}]


@dataclass
class System:
    """What the test drives: the control plane, NATS, the ERP, the executor, the NATS keys."""

    cp: ControlPlane
    nats: NatsServer
    keys: Bootstrap
    erp: ErpSandbox
    executor: LocalExecutor
    log: Path
    operator: subprocess.Popen[bytes] | None = None
    metrics_port: int = 0

    def start_operator(self) -> None:
        """`onceflow operator -A` in account mode, as its own process (the chart's variables)."""
        self.metrics_port = free_port()
        self.operator = spawn_operator(
            self.cp.kubeconfig,
            self.nats.url,
            resync_seconds=2,
            log=self.log,
            metrics_port=self.metrics_port,
            env={
                "ONCEFLOW_NATS_ISOLATION": "account",
                "ONCEFLOW_NATS_OPERATOR_SIGNING_KEY": self.keys.operator_signing.seed,
                "ONCEFLOW_NATS_SYSTEM_CREDS": self.keys.system_creds,
                "ONCEFLOW_NATS_ACCOUNT_MAX_DISK": str(1 << 30),
                "ONCEFLOW_REVIEW_SECONDS": "2",  # exceptions read into the figures every 2 s, not every minute
            },
        )

    def stop_operator(self) -> None:
        """SIGTERM by PID (Kopf closes its NATS connections), SIGKILL after 20 s."""
        if self.operator is None:
            return
        self.operator.send_signal(signal.SIGTERM)
        try:
            self.operator.wait(20)
        except subprocess.TimeoutExpired:
            self.operator.kill()
            self.operator.wait()
        self.operator = None

    def reconciled(self) -> int:
        """Integration reconciles the running operator finished, from its /metrics (0 while it starts)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as answer:
                text = answer.read().decode()
        except OSError:
            return 0
        return sum(
            int(float(line.rsplit(" ", 1)[1]))
            for line in text.splitlines()
            if line.startswith("onceflow_operator_reconciles_total{") and 'kind="Integration"' in line
        )

    def kubectl(self, namespace: str) -> Kubectl:
        return Kubectl(self.cp.kubeconfig, namespace)

    def operator_log(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    async def consumers(self, namespace: str) -> list[str]:
        """The durable consumers of the namespace's intake stream, in its account."""
        nc = await self.admin(namespace)
        try:
            return sorted(c.name for c in await nc.jetstream(timeout=5).consumers_info(subjects.IN_STREAM))
        finally:
            await nc.close()

    async def settled(self, namespace: str) -> bool:
        """Every consumer of the namespace's intake, in its account, has nothing pending or unacked."""
        nc = await self.admin(namespace)
        try:
            consumers = await nc.jetstream(timeout=5).consumers_info(subjects.IN_STREAM)
            return bool(consumers) and all(c.num_pending == 0 and c.num_ack_pending == 0 for c in consumers)
        finally:
            await nc.close()

    def pod_logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.executor.workdir.rglob("*.log"))

    def diagnosis(self, namespace: str) -> str:
        """What a failed wait shows: the objects' conditions, the operator's and the pods' last lines."""
        kubectl = self.kubectl(namespace)
        found = kubectl.run("get", "integration,connector", "-o", "json", check=False).stdout
        conditions = [
            (o["kind"], o["metadata"]["name"], (o.get("status") or {}).get("conditions"))
            for o in (json.loads(found or '{"items": []}')["items"])
        ]
        pods = "".join(
            f"\n== {p}\n{p.read_text(errors='replace')[-1500:]}" for p in self.executor.workdir.rglob("*.log")
        )
        return f"{conditions}\n== operator\n{self.operator_log()[-3000:]}{pods}"

    async def admin(self, namespace: str) -> Client:
        """A user with every right in the namespace's account (as the operator mints for itself)."""
        creds = namespace_user_creds(self.keys.operator_signing, namespace, "test")
        return await nats.connect(self.nats.url, user_credentials=RawCredentials(creds))


@pytest.fixture(scope="module")
def control_plane_of_its_own() -> Iterator[ControlPlane]:
    with ControlPlane() as cp:
        admin = Kubectl(cp.kubeconfig)
        admin.run("apply", "--server-side", "-k", str(ROOT / "crds"))
        admin.run("wait", "--for=condition=Established", "--timeout=60s", "crd/integrations.onceflow.io")
        yield cp


@pytest.fixture
async def system(control_plane_of_its_own: ControlPlane, tmp_path: Path) -> AsyncIterator[System]:
    keys = bootstrap()
    conf = tmp_path / "auth.conf"
    conf.write_text(keys.server_config("full", str(tmp_path / "jwt")))
    server = NatsServer(extra=["-c", str(conf)])
    server.start()
    erp = ErpSandbox()
    await erp.start()
    kube = KubeClient.from_environment(str(control_plane_of_its_own.kubeconfig))
    executor = LocalExecutor(kube, server.url)
    found = System(control_plane_of_its_own, server, keys, erp, executor, tmp_path / "operator.log")
    found.start_operator()
    stop = asyncio.Event()
    task = asyncio.create_task(executor.run(stop, interval=0.3))
    try:
        yield found
    finally:
        stop.set()
        await task
        await asyncio.to_thread(found.stop_operator)
        await kube.close()
        await erp.stop()
        server.close()


def _versions(kubectl: Kubectl) -> dict[str, str]:
    """resourceVersion of each of the namespace's NATS Secrets: unchanged means not issued again."""
    names = (NATS_SECRET, integration_secret("ledger"))
    return {name: kubectl.get("secret", name)["metadata"]["resourceVersion"] for name in names}


def labelled(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The manifests with their Secrets labelled for Onceflow (it sends no other Secret to its pods)."""
    for doc in docs:
        if doc["kind"] == "Secret":
            doc["metadata"].setdefault("labels", {})["onceflow.io/credentials"] = "true"
    return docs


def secret_creds(kubectl: Kubectl, name: str) -> str:
    return base64.b64decode(kubectl.get("secret", name)["data"][NATS_CREDS_KEY]).decode()


def account_of(creds: str) -> str:
    """The account a `.creds` user belongs to (its JWT's issuer, or `issuer_account` with a signing key)."""
    token = creds.split("-----BEGIN NATS USER JWT-----")[1].split("------END NATS USER JWT------")[0].strip()
    claims = decode_jwt(token)
    return str(claims["nats"].get("issuer_account") or claims["iss"])


def exceptions_listed(system: System, namespace: str, creds: Path) -> list[dict[str, Any]]:
    """`onceflow exceptions list -n NAMESPACE -o json` as its own process, reading NATS with `creds`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONCEFLOW_NATS")}
    env |= {"ONCEFLOW_NATS_CREDS_FILE": str(creds), "KUBECONFIG": str(system.cp.kubeconfig)}
    argv = [sys.executable, "-m", "onceflow_operator", "exceptions", "list", "-n", namespace]
    done = subprocess.run(
        [*argv, "--nats", system.nats.url, "-o", "json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows


def person_creds(system: System, namespace: str, folder: Path) -> Path:
    """A person's short-lived user of the namespace's account, from `onceflow nats-auth creds`."""
    key = folder / "operator-signing-key"
    key.write_text(system.keys.operator_signing.seed)
    out = folder / f"{namespace}.creds"
    argv = [sys.executable, "-m", "onceflow_operator", "nats-auth", "creds", "-n", namespace]
    argv += ["--signing-key-file", str(key), "--out", str(out), "--expires", "1h"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return out


async def test_the_whole_operator_runs_two_namespaces_in_accounts_of_their_own(system: System, tmp_path: Path) -> None:
    spaces = [f"acct-a-{uuid.uuid4().hex[:6]}", f"acct-b-{uuid.uuid4().hex[:6]}"]
    admin = Kubectl(system.cp.kubeconfig)
    for namespace in spaces:
        admin.run("create", "namespace", namespace)
        system.kubectl(namespace).apply(*labelled(manifests(system.erp.url, rules=RULES)))

    # 1. Both Integrations become Ready: the operator pushed each account and provisioned each one.
    for namespace in spaces:
        wait = ("wait", "--for=condition=Ready", "integration/ledger", "connector/src", "--timeout=60s")
        done = await asyncio.to_thread(system.kubectl(namespace).run, *wait, check=False)
        assert done.returncode == 0, f"{namespace}: {done.stderr}\n{system.diagnosis(namespace)}"
    signing = system.keys.operator_signing
    for namespace in spaces:
        account = namespace_account_key(signing, namespace).public
        kubectl = system.kubectl(namespace)
        # The namespace's Secrets hold users of the namespace's own account (the pods' identities).
        assert account_of(secret_creds(kubectl, NATS_SECRET)) == account
        assert account_of(secret_creds(kubectl, integration_secret("ledger"))) == account
        nc = await system.admin(namespace)
        try:
            js = nc.jetstream(timeout=5)
            names = {info.config.name for info in await js.streams_info()}
            wanted = set(topology.STREAM_MAX_AGE) | {f"KV_{b}" for b in topology.namespace_buckets(namespace)}
            assert wanted <= names, f"{namespace}'s account holds {sorted(names)}"
            other = next(ns for ns in spaces if ns != namespace)
            assert not {f"KV_{b}" for b in topology.namespace_buckets(other)} & names  # nothing of the other
        finally:
            await nc.close()

    # 2. A signed webhook to each namespace's gateway, sent twice (a retried delivery), lands once.
    keys = {namespace: f"{namespace}-c1" for namespace in spaces}
    async with httpx.AsyncClient(timeout=10) as client:
        for namespace in spaces:
            url = f"http://127.0.0.1:{system.executor.port_of(namespace, 'src-gateway')}/in"
            body = json.dumps({"key": keys[namespace], "name": f"Customer of {namespace}"}).encode()
            for _ in range(2):
                resp = await signed_post(client, url, "hmac", SECRET, body, f"d-{namespace}", **SIG)
                assert resp.status_code == 202, resp.text
        # 4 (intake): a record without a name, in the first namespace only: an exception there.
        parked = spaces[0]
        url = f"http://127.0.0.1:{system.executor.port_of(parked, 'src-gateway')}/in"
        body = json.dumps({"key": f"{parked}-nameless", "name": ""}).encode()
        resp = await signed_post(client, url, "hmac", SECRET, body, "d-nameless", **SIG)
        assert resp.status_code == 202, resp.text
    effects = {f"k/{keys[namespace]}/create" for namespace in spaces}
    await eventually(lambda: effects <= set(system.erp.effects), within=30, interval=0.2)

    # 3. Each Integration's status shows its own runner's heartbeat figures, read in its account.
    def figures(namespace: str) -> dict[str, Any]:
        status = system.kubectl(namespace).get("integration", "ledger").get("status") or {}
        return dict(status.get("figures") or {})

    await eventually(lambda: figures(spaces[0]).get("processed") == 1, within=30, interval=0.5)
    await eventually(lambda: figures(spaces[0]).get("exceptionsWaiting") == 1, within=30, interval=0.5)
    await eventually(lambda: figures(spaces[1]).get("processed") == 1, within=30, interval=0.5)
    for namespace in spaces:  # nothing left to deliver (a duplicate would still be on its way)
        await eventually(lambda ns=namespace: system.settled(ns), within=20, interval=0.2)
    assert {k: v for k, v in system.erp.effects.items() if k in effects} == dict.fromkeys(effects, 1)
    assert not any("nameless" in k for k in system.erp.effects)
    assert figures(spaces[1]).get("exceptions", 0) == 0

    # 4. The parked record is listed with the first namespace's credentials, and not with the other's.
    mine = exceptions_listed(system, parked, person_creds(system, parked, tmp_path))
    assert [(r["integration"], r["reason"], r["businessKey"]) for r in mine] == [
        ("ledger", "InvalidRecord", f"k/{parked}-nameless")
    ], mine
    other = spaces[1]
    theirs = person_creds(system, other, tmp_path)
    assert exceptions_listed(system, other, theirs) == []
    assert exceptions_listed(system, parked, theirs) == []  # asked for by name: not in the other's account

    # 5. A restarted operator derives the same accounts (no state kept): it issues no Secret again,
    # pushes the accounts again, and reads the heartbeats of pods that never restarted.
    before = {ns: _versions(system.kubectl(ns)) for ns in spaces}
    await asyncio.to_thread(system.stop_operator)
    system.start_operator()
    await eventually(lambda: system.reconciled() >= 2 * len(spaces), within=30, interval=0.3)
    assert {ns: _versions(system.kubectl(ns)) for ns in spaces} == before
    async with httpx.AsyncClient(timeout=10) as client:
        url = f"http://127.0.0.1:{system.executor.port_of(other, 'src-gateway')}/in"
        body = json.dumps({"key": f"{other}-c2", "name": "After the restart"}).encode()
        resp = await signed_post(client, url, "hmac", SECRET, body, "d-after", **SIG)
        assert resp.status_code == 202, resp.text
    await eventually(lambda: figures(other).get("processed") == 2, within=30, interval=0.5)
    assert system.erp.effects[f"k/{other}-c2/create"] == 1

    # 6. Deleting an Integration removes its consumers from its own namespace's account only.
    done = await asyncio.to_thread(system.kubectl(parked).run, "delete", "integration", "ledger", "--timeout=30s")
    assert done.returncode == 0, done.stderr
    assert await system.consumers(parked) == []
    assert len(await system.consumers(other)) >= 1

    log = system.operator_log()
    assert "Traceback" not in log, log[-3000:]
    assert "Permissions Violation" not in system.pod_logs()  # each pod's user reaches what its account holds
    assert system.keys.operator_signing.seed not in log
