"""`onceflow local run`: the gateways and runners of some manifests as local processes.

Like `rpk connect run`: no cluster, the same plans the operator would write, the same
`onceflow gateway` and `onceflow runner` processes a pod would run, Secrets read from the given
Secret manifests and written to a private folder laid out like Secret volumes.

Everything that can be known before a process starts is checked first and reported in one line
(`LocalRunError`): a Secret a plan reads that no manifest gives, a missing key, and a signing
secret that is empty or malformed (`contract.signing`), as the gateway itself would refuse it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from onceflow_operator.api import Connector, Integration, SyncPolicy
from onceflow_operator.clients import topology
from onceflow_operator.compiler.planner import InvalidSpec, gateway_plan, plan_from_integration
from onceflow_operator.compiler.validation import load_manifests
from onceflow_operator.dev.controlplane import free_port
from onceflow_runner.adapters import natsio
from onceflow_runner.contract.environment import METRICS_PORT_ENV
from onceflow_runner.contract.plan import AuthPlan, GatewayPlan, Plan, SecretRef, load_plan
from onceflow_runner.contract.signing import SECRET_FIELD, signing_secret_problem

__all__ = ["LocalRun", "LocalRunError"]


class LocalRunError(Exception):
    """The manifests cannot be run; the message says which object and why."""


@dataclass
class LocalRun:
    """Plans written to a folder, and the processes running them."""

    namespace: str
    nats_url: str
    workdir: Path
    gateways: dict[str, tuple[Path, int]] = field(default_factory=dict)
    runners: dict[str, tuple[Path, int]] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    #: Where each process answers /readyz: a runner's own port, a gateway's operations port.
    health_ports: dict[str, int] = field(default_factory=dict)
    #: Environment the processes get beyond this one's, e.g. a namespace's NATS credentials (the
    #: topology is still created with this process's own, as the operator's are not a namespace's).
    process_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_paths(
        cls,
        paths: list[Path],
        *,
        namespace: str,
        nats_url: str,
        first_port: int = 8080,
        base_urls: dict[str, str] | None = None,
        workdir: Path | None = None,
    ) -> LocalRun:
        """Read manifests, compile plans, write secrets; raise LocalRunError on any problem."""
        docs = [(p, d) for p in paths for d in load_manifests(p)]
        return cls.from_documents(
            [d for _, d in docs],
            namespace=namespace,
            nats_url=nats_url,
            first_port=first_port,
            base_urls=base_urls,
            workdir=workdir,
        )

    @classmethod
    def from_documents(
        cls,
        docs: list[dict[str, Any]],
        *,
        namespace: str,
        nats_url: str,
        first_port: int = 8080,
        base_urls: dict[str, str] | None = None,
        workdir: Path | None = None,
    ) -> LocalRun:
        run = cls(namespace, nats_url, workdir or Path(tempfile.mkdtemp(prefix="onceflow-local-")))
        secrets = run.workdir / "secrets"
        connectors: dict[str, Connector] = {}
        integrations: list[Integration] = []
        policies: dict[str, SyncPolicy] = {}
        given: dict[str, dict[str, bytes]] = {}
        for doc in docs:
            kind, name = doc.get("kind"), (doc.get("metadata") or {}).get("name", "?")
            try:
                if kind == "Secret":
                    given[name] = _write_secret(secrets, doc)
                elif kind == "Connector":
                    if base_urls and name in base_urls and doc.get("spec", {}).get("rest"):
                        doc = _with_base_url(doc, base_urls[name])
                    connectors[name] = Connector.model_validate(doc)
                elif kind == "Integration":
                    integrations.append(Integration.model_validate(doc))
                elif kind == "SyncPolicy":
                    policies[name] = SyncPolicy.model_validate(doc)
            except ValidationError as exc:
                raise LocalRunError(f"{kind}/{name}: {exc.errors(include_url=False)[0]['msg']}") from None
        port = first_port
        for name, connector in sorted(connectors.items()):
            if connector.spec.type == "Webhook":
                plan_file = run.workdir / "gateways" / f"{name}.json"
                plan_file.parent.mkdir(parents=True, exist_ok=True)
                gateway = gateway_plan(connector, namespace=namespace)
                _check_secrets(f"Connector/{name}", gateway, given)
                plan_file.write_text(gateway.to_json())
                run.gateways[name] = (plan_file, port)
                port += 1
        for integration in integrations:
            name = str(integration.metadata.get("name"))
            ref = integration.spec.sync_policy_ref
            try:
                plan = plan_from_integration(
                    integration, connectors, policies.get(ref.name) if ref else None, namespace=namespace
                )
            except InvalidSpec as exc:
                raise LocalRunError(f"Integration/{name}: {exc}") from None
            _check_secrets(f"Integration/{name}", plan, given)
            plan_file = run.workdir / "plans" / f"{name}.json"
            plan_file.parent.mkdir(parents=True, exist_ok=True)
            plan_file.write_text(plan.to_json())
            run.runners[name] = (plan_file, port)
            port += 1
        return run

    def _spawn(self, key: str, role: str, plan: Path, port: int) -> None:
        # One identity per process, as a pod name is: what a poll lease and a heartbeat are held by.
        env = {**os.environ, **self.process_env, "HOSTNAME": key}
        self.health_ports[key] = port
        if role == "gateway":
            # Webhooks on `port`; /readyz and /metrics on a port of their own, as in a pod.
            self.health_ports[key] = free_port()
            env[METRICS_PORT_ENV] = str(self.health_ports[key])
        cmd = [
            sys.executable,
            "-m",
            "onceflow_operator",
            role,
            "--plan",
            str(plan),
            "--nats",
            self.nats_url,
            "--secrets-dir",
            str(self.workdir / "secrets"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        with (self.workdir / "logs" / f"{key}.log").open("ab") as log:
            self.procs[key] = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )

    def provision(self) -> None:
        """Create the streams, buckets and consumers the processes bind to, as the operator would.

        No operator runs here, and gateways and runners never create topology themselves.
        """
        plans = [load_plan(path) for path, _ in self.runners.values()]

        async def ensure() -> None:
            nc = await natsio.connect(self.nats_url, name="onceflow-local-run")
            try:
                js = nc.jetstream(timeout=5)
                await topology.ensure_streams(js)
                await topology.ensure_buckets(js, self.namespace)
                for plan in plans:
                    await topology.ensure_lane(js, plan)
            finally:
                await nc.close()

        # A thread of its own: start() is called from inside running event loops too (tests, the demo).
        with ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(asyncio.run, ensure()).result()

    def start(self, timeout: float = 30.0) -> None:
        """Create the topology, start every gateway and runner and wait until each answers /readyz."""
        self.provision()
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        for name, (plan, port) in self.gateways.items():
            self._spawn(f"gateway-{name}", "gateway", plan, port)
        for name, (plan, port) in self.runners.items():
            self._spawn(f"runner-{name}", "runner", plan, port)
        deadline = time.monotonic() + timeout
        for key in list(self.health_ports):
            respawns = 0
            while not _ready(self.health_ports[key]):
                proc = self.procs[key]
                tail = ""
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = (self.workdir / "logs" / f"{key}.log").read_text(errors="replace")[-1500:]
                if proc.poll() is not None and "address already in use" in tail and respawns < 3:
                    # A port picked free was taken before the process bound it: pick another.
                    respawns += 1
                    self._respawn_on_new_port(key)
                    continue
                if tail:
                    self.stop()
                    raise LocalRunError(f"{key} did not become ready:\n{tail}")
                time.sleep(0.1)

    def _respawn_on_new_port(self, key: str) -> None:
        role, _, name = key.partition("-")
        table = self.gateways if role == "gateway" else self.runners
        plan, _ = table[name]
        table[name] = (plan, free_port())
        self._spawn(key, role, plan, table[name][1])

    def add_runner_process(self, name: str, timeout: float = 30.0) -> str:
        """Start one more process of Integration `name`'s runner on the same durable consumer.

        As a second replica, or a second process in the pod, would be. Returns its key once ready.
        """
        plan, _ = self.runners[name]
        key = f"runner-{name}-{sum(1 for k in self.procs if k.startswith(f'runner-{name}'))}"
        self._spawn(key, "runner", plan, free_port())
        deadline = time.monotonic() + timeout
        while not _ready(self.health_ports[key]):
            if self.procs[key].poll() is not None or time.monotonic() > deadline:
                raise LocalRunError(f"{key} did not become ready")
            time.sleep(0.1)
        return key

    def restart(self, key: str, *, kill: bool = False) -> None:
        """Stop one process (SIGKILL when `kill`) and start it again: for fault tests."""
        proc = self.procs[key]
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        proc.wait(timeout=60)
        role, _, name = key.partition("-")
        plan, port = (self.gateways if role == "gateway" else self.runners)[name]
        self._spawn(key, role, plan, port)
        deadline = time.monotonic() + 30
        while not _ready(self.health_ports[key]):
            if time.monotonic() > deadline:
                raise LocalRunError(f"{key} did not come back")
            time.sleep(0.1)

    def add_replica(self, integration: str, port: int, timeout: float = 30.0) -> str:
        """Start one more runner process of an Integration (as a second pod would be); return its key.

        For tests of what several replicas share: one consumer, one poller per schedule trigger.
        """
        plan, _ = self.runners[integration]
        key = f"runner-{integration}#{sum(1 for k in self.procs if k.startswith(f'runner-{integration}'))}"
        self._spawn(key, "runner", plan, port)
        deadline = time.monotonic() + timeout
        while not _ready(port):
            if self.procs[key].poll() is not None or time.monotonic() > deadline:
                raise LocalRunError(f"{key} did not become ready")
            time.sleep(0.1)
        return key

    def gateway_url(self, connector: str) -> str:
        plan, port = self.gateways[connector]
        path = json.loads(plan.read_text())["path"]
        return f"http://127.0.0.1:{port}{path}"

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM every process (runners drain in-flight records), then remove the folder."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()
        keep = os.environ.get("ONCEFLOW_KEEP_LOGS")
        if keep:
            shutil.copytree(self.workdir / "logs", Path(keep) / self.workdir.name, dirs_exist_ok=True)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def serve_forever(self) -> None:
        """Start, print where the gateways listen, and stop cleanly on Ctrl-C or SIGTERM.

        A process that does not become ready ends the run with exit code 1 and what it logged.
        """
        try:
            self.start()
        except LocalRunError as exc:
            print(f"onceflow local run: {exc}", file=sys.stderr)
            sys.exit(1)
        for name in self.gateways:
            print(f"gateway {name}: {self.gateway_url(name)}", flush=True)
        for name, (_, port) in self.runners.items():
            print(f"runner {name}: metrics http://127.0.0.1:{port}/metrics", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            while all(p.poll() is None for p in self.procs.values()):
                time.sleep(0.5)
            print("a process exited; stopping the rest", file=sys.stderr)
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            self.stop()


def _with_base_url(doc: dict[str, Any], url: str) -> dict[str, Any]:
    """Point a REST Connector (and an OAuth2 token URL on the same host) at another base URL."""
    doc = json.loads(json.dumps(doc))
    rest = doc["spec"]["rest"]
    old = rest["baseURL"].rstrip("/")
    rest["baseURL"] = url
    oauth2 = rest.get("auth", {}).get("oauth2")
    if oauth2 and str(oauth2.get("tokenURL", "")).startswith(old):
        oauth2["tokenURL"] = url.rstrip("/") + oauth2["tokenURL"][len(old) :]
    return doc


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _refs(plan: Plan | GatewayPlan) -> list[tuple[str, SecretRef]]:
    """Every Secret key a plan reads, with the field that names it."""
    if isinstance(plan, GatewayPlan):
        return [(SECRET_FIELD, plan.signature.secret)]
    found = []
    for connector in plan.connectors.values():
        for field_name in AuthPlan.model_fields:
            ref = getattr(connector.auth, field_name)
            if isinstance(ref, SecretRef):
                found.append((f"Connector/{connector.name} auth {field_name}", ref))
    return found


def _check_secrets(owner: str, plan: Plan | GatewayPlan, given: dict[str, dict[str, bytes]]) -> None:
    """Refuse, in one line, a Secret a plan reads that the manifests do not give, or an unusable signing secret."""
    for field_name, ref in _refs(plan):
        values = given.get(ref.name)
        if values is None:
            raise LocalRunError(
                f"{owner}: {field_name} names Secret {ref.name!r}, which none of the given manifests defines; "
                "add its manifest with -f"
            )
        if ref.key not in values:
            raise LocalRunError(f"{owner}: Secret {ref.name!r} has no key {ref.key!r} ({field_name})")
        if isinstance(plan, GatewayPlan):
            problem = signing_secret_problem(plan.signature.scheme, values[ref.key].decode(errors="replace"))
            if problem is not None:
                raise LocalRunError(f"{owner}: {SECRET_FIELD} ({ref.name}/{ref.key}): {problem}")


def _write_secret(folder: Path, doc: dict[str, Any]) -> dict[str, bytes]:
    name = doc["metadata"]["name"]
    target = folder / name
    target.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    try:
        values = {k: base64.b64decode(v, validate=True) for k, v in (doc.get("data") or {}).items()}
    except (binascii.Error, TypeError):
        raise LocalRunError(
            f"Secret/{name}: a value under data is not base64 (use stringData for plain text)"
        ) from None
    values |= {k: str(v).encode() for k, v in (doc.get("stringData") or {}).items()}
    for key, value in values.items():
        (target / key).write_bytes(value)
        (target / key).chmod(0o600)
    return values
