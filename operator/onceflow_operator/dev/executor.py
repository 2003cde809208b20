"""Local executor — for development and tests only, never production.

The test control plane has no nodes, so nothing would run the runner and gateway Deployments the
operator creates. This executor plays kubelet + Deployment controller for exactly those
Deployments (label `app.kubernetes.io/part-of=onceflow`): it runs each replica as a local
`onceflow runner|gateway` process with the container's own arguments, the plan from the
referenced ConfigMap and the Secrets from the referenced Secret volumes (written to a private
folder), keeps the process count equal to `spec.replicas`, restarts on a pod-template change,
and writes the Deployment's status (replicas, ready, available) as the real controller would.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from onceflow_operator.build.pods import PLAN_MOUNT, SECRETS_MOUNT
from onceflow_operator.clients.kube import KubeClient, KubeError
from onceflow_operator.dev.controlplane import free_port
from onceflow_runner.contract.environment import METRICS_PORT_ENV

__all__ = ["LocalExecutor", "spawn_operator"]

SELECTOR = "app.kubernetes.io/part-of=onceflow"


@dataclass
class _Replica:
    proc: asyncio.subprocess.Process
    port: int
    template_hash: str
    #: Where /readyz is served: `port` for a runner, a gateway's own operations port.
    health_port: int = 0

    @property
    def ready_port(self) -> int:
        return self.health_port or self.port


@dataclass
class LocalExecutor:
    """Runs Onceflow's Deployments as local processes and reports their status."""

    kube: KubeClient
    nats_url: str
    namespace: str | None = None
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="onceflow-exec-")))
    replicas: dict[tuple[str, str], list[_Replica]] = field(default_factory=dict)

    def port_of(self, namespace: str, deployment: str) -> int:
        """Local port of a Deployment's first replica (the gateway's webhook port, the runner's metrics)."""
        return self.replicas[(namespace, deployment)][0].port

    async def run(self, stop: asyncio.Event, interval: float = 0.5) -> None:
        """Sync until `stop` is set, then stop every process."""
        try:
            while not stop.is_set():
                # A failed round is retried by the next; the API server may be briefly away.
                with contextlib.suppress(KubeError, aiohttp.ClientError, OSError):
                    await self.sync_once()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval)
        finally:
            await self.stop_all()

    async def sync_once(self) -> None:
        deployments = await self.kube.list("apps/v1", "Deployment", self.namespace, selector=SELECTOR)
        seen = set()
        for deployment in deployments:
            meta = deployment["metadata"]
            key = (meta["namespace"], meta["name"])
            seen.add(key)
            template = deployment["spec"]["template"]
            template_hash = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:12]
            running = [
                r for r in self.replicas.get(key, []) if r.proc.returncode is None and r.template_hash == template_hash
            ]
            for stale in [r for r in self.replicas.get(key, []) if r not in running]:
                await _stop(stale)
            want = int(deployment["spec"].get("replicas", 1))
            while len(running) > want:
                await _stop(running.pop())
            while len(running) < want:
                running.append(await self._start(deployment, template_hash))
            self.replicas[key] = running
            ready = sum([await _ready(r.ready_port) for r in running])
            await self.kube.patch_status(
                "apps/v1",
                "Deployment",
                meta["namespace"],
                meta["name"],
                {
                    "observedGeneration": meta.get("generation", 1),
                    "replicas": len(running),
                    "updatedReplicas": len(running),
                    "readyReplicas": ready,
                    "availableReplicas": ready,
                },
                field_manager="onceflow-local-executor",
            )
        for key in [k for k in self.replicas if k not in seen]:
            for replica in self.replicas.pop(key):
                await _stop(replica)

    async def _start(self, deployment: dict[str, Any], template_hash: str) -> _Replica:
        meta = deployment["metadata"]
        namespace = meta["namespace"]
        pod = deployment["spec"]["template"]["spec"]
        folder = self.workdir / namespace / meta["name"] / template_hash
        secrets = folder / "secrets"
        for volume in pod.get("volumes", []):
            if "configMap" in volume:
                cm = await self.kube.get("v1", "ConfigMap", namespace, volume["configMap"]["name"])
                for name, text in ((cm or {}).get("data") or {}).items():
                    (folder / "plan").mkdir(parents=True, exist_ok=True)
                    (folder / "plan" / name).write_text(text)
            if "secret" in volume:
                name = volume["secret"]["secretName"]
                secret = await self.kube.get("v1", "Secret", namespace, name)
                (secrets / name).mkdir(parents=True, exist_ok=True)
                for k, v in ((secret or {}).get("data") or {}).items():
                    (secrets / name / k).write_bytes(base64.b64decode(v))
        port = free_port()
        args = _local_args(pod["containers"][0]["args"], folder, secrets, self.nats_url, port)
        env = {**os.environ, **await self._container_env(namespace, pod["containers"][0])}
        health_port = 0
        if METRICS_PORT_ENV in env:  # a gateway: its operations port, made local like --port
            health_port = free_port()
            env[METRICS_PORT_ENV] = str(health_port)
        log = folder / f"{port}.log"
        with log.open("ab") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "onceflow_operator",
                *args,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL,
                env=env,
            )
        return _Replica(proc, port, template_hash, health_port)

    async def _container_env(self, namespace: str, container: dict[str, Any]) -> dict[str, str]:
        """The container's env as a kubelet gives it: plain values and Secret keys (optional ones may be absent)."""
        secrets: dict[str, dict[str, str]] = {}
        out: dict[str, str] = {}
        for item in container.get("env", []):
            if "value" in item:
                out[item["name"]] = str(item["value"])
                continue
            field = ((item.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
            if field == "metadata.namespace":  # the one downward-API field the operator's pods read
                out[item["name"]] = namespace
                continue
            ref = (item.get("valueFrom") or {}).get("secretKeyRef")
            if not ref:
                continue
            if ref["name"] not in secrets:
                secret = await self.kube.get("v1", "Secret", namespace, ref["name"])
                secrets[ref["name"]] = {
                    k: base64.b64decode(v).decode() for k, v in ((secret or {}).get("data") or {}).items()
                }
            if ref["key"] in secrets[ref["name"]]:
                out[item["name"]] = secrets[ref["name"]][ref["key"]]
        return out

    async def stop_all(self) -> None:
        """Stop every process at once: each drains its own records, none waits for another's drain."""
        await asyncio.gather(*(_stop(replica) for replicas in self.replicas.values() for replica in replicas))
        self.replicas.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _local_args(args: list[str], folder: Path, secrets: Path, nats_url: str, port: int) -> list[str]:
    """The container's arguments with cluster paths and addresses made local."""
    out = list(args)
    replace = {"--nats": nats_url, "--secrets-dir": str(secrets), "--port": str(port)}
    for i, arg in enumerate(out[:-1]):
        if arg in replace:
            out[i + 1] = replace[arg]
        elif arg == "--plan":
            out[i + 1] = out[i + 1].replace(PLAN_MOUNT, str(folder / "plan"))
    assert SECRETS_MOUNT not in " ".join(out[1:]) or "--secrets-dir" in out
    return [*out, "--host", "127.0.0.1"]


async def _stop(replica: _Replica) -> None:
    """SIGTERM (a runner drains its in-flight records), SIGKILL after 30 s."""
    if replica.proc.returncode is None:
        replica.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(replica.proc.wait(), 30)
        except TimeoutError:
            replica.proc.kill()
            await replica.proc.wait()


async def _ready(port: int) -> bool:
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session,
            session.get(f"http://127.0.0.1:{port}/readyz") as resp,
        ):
            return resp.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


def spawn_operator(
    kubeconfig: Path,
    nats_url: str,
    *,
    resync_seconds: float = 30,
    log: Path | None = None,
    metrics_port: int | None = None,
    elect: bool = False,
    identity: str = "",
    env: dict[str, str] | None = None,
    lease: tuple[float, float, float] | None = None,
) -> subprocess.Popen[bytes]:
    """`onceflow operator -A` as a child process against a local control plane (dev and benchmarks).

    Metrics and liveness listen on 127.0.0.1 only, like every process of the embedded system.
    Its output goes to `log` when given (appended), else nowhere. `env` adds variables for the
    operator alone (account mode's signing key, say), not set in this process where the local
    executor's runner and gateway processes would inherit them. `lease`: with `elect`, the Lease's
    (duration, renew, retry) seconds instead of the defaults.
    """
    env = {
        **os.environ,
        **(env or {}),
        "KUBECONFIG": str(kubeconfig),
        "ONCEFLOW_NATS_URL": nats_url,
        "ONCEFLOW_RECONCILE_SECONDS": str(resync_seconds),
    }
    argv = [
        sys.executable,
        "-m",
        "onceflow_operator",
        "operator",
        "-A",
        "--metrics-port",
        str(metrics_port or free_port()),
        "--metrics-host",
        "127.0.0.1",
        "--liveness",
        f"http://127.0.0.1:{free_port()}/healthz",
        *(["--leader-elect", "--lease-namespace", "default"] if elect else []),
    ]
    if elect and lease is not None:
        duration, renew, retry = lease
        argv += ["--lease-duration", str(duration), "--lease-renew", str(renew), "--lease-retry", str(retry)]
    if identity:
        env["POD_NAME"] = identity
    if log is None:
        return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with log.open("ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
