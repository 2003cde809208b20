"""Keyed business-key hashes in spans: the operator's per-namespace key, against a real API server.

An unkeyed SHA-256 of a tax id is reversed by trying every value; the operator therefore writes a
key derived from its master key into each namespace (`onceflow-trace`), the runners hash with it,
and an SRE with the right to read that Secret finds a record's spans with `onceflow trace --span-key`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from pathlib import Path

from click.testing import CliRunner

from onceflow_operator.cli import main
from onceflow_operator.clients.kube import KubeClient
from onceflow_operator.controller.tracekeys import TraceKeys
from onceflow_operator.dev.controlplane import ControlPlane
from onceflow_runner.contract.environment import TRACE_HASH_KEY_SECRET, TRACE_HASH_KEY_SECRET_KEY
from onceflow_runner.tracing import keyed_business_key
from tests.conftest import Kubectl

MASTER = b"0123456789abcdef0123456789abcdef-master"


async def test_each_namespace_gets_its_own_key_once_and_the_cli_prints_the_spans_hash(
    kubectl: Kubectl, control_plane: ControlPlane
) -> None:
    namespace = kubectl.namespace
    kube = KubeClient.from_environment(str(control_plane.kubeconfig))
    try:
        assert await TraceKeys(MASTER).ensure(kube, namespace) == 1
        # A restarted (or standby) operator reads the digest and writes nothing; a resync neither.
        again = TraceKeys(MASTER)
        assert await again.ensure(kube, namespace) == 0
        assert await again.ensure(kube, namespace) == 0
        key = base64.b64decode(kubectl.get("secret", TRACE_HASH_KEY_SECRET)["data"][TRACE_HASH_KEY_SECRET_KEY])
        # A new master key gives the namespace a new key.
        assert await TraceKeys(MASTER + b"-rotated").ensure(kube, namespace) == 1
        rotated = base64.b64decode(kubectl.get("secret", TRACE_HASH_KEY_SECRET)["data"][TRACE_HASH_KEY_SECRET_KEY])
        assert rotated != key
    finally:
        await kube.close()
    secret = kubectl.get("secret", TRACE_HASH_KEY_SECRET)
    assert MASTER.decode() not in str(secret)  # the master key itself never leaves the operator

    argv = ["trace", "DE123456789", "--span-key", "--kubeconfig", str(control_plane.kubeconfig), "-n", namespace]
    result = await asyncio.to_thread(CliRunner().invoke, main, argv, env={"KUBECONFIG": None})
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"onceflow.business_key={keyed_business_key(rotated, 'DE123456789')}"


async def test_without_a_key_the_cli_prints_the_plain_hash_the_runners_use(
    kubectl: Kubectl, control_plane: ControlPlane
) -> None:
    argv = ["trace", "DE1", "--span-key", "--kubeconfig", str(control_plane.kubeconfig), "-n", kubectl.namespace]
    result = await asyncio.to_thread(CliRunner().invoke, main, argv, env={"KUBECONFIG": None})
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "onceflow.business_key=sha256:" + hashlib.sha256(b"DE1").hexdigest()


async def test_a_deleted_or_emptied_key_secret_is_written_again_without_an_operator_restart(
    kubectl: Kubectl, control_plane: ControlPlane
) -> None:
    """Attack: the operator remembered what it wrote and never looked again, so a deleted (or
    emptied) `onceflow-trace` Secret stayed gone until it restarted, and every runner pod started
    meanwhile hashed business keys with the plain, reversible SHA-256."""
    namespace = kubectl.namespace
    keys = TraceKeys(MASTER, recheck_seconds=0)  # the default reads a namespace's Secret at most every 30 s
    kube = KubeClient.from_environment(str(control_plane.kubeconfig))
    try:
        assert await keys.ensure(kube, namespace) == 1
        key = kubectl.get("secret", TRACE_HASH_KEY_SECRET)["data"][TRACE_HASH_KEY_SECRET_KEY]
        kubectl.run("delete", "secret", TRACE_HASH_KEY_SECRET)
        assert await TraceKeys(MASTER).ensure(kube, namespace) == 1  # a fresh operator reads it at once
        kubectl.run("delete", "secret", TRACE_HASH_KEY_SECRET)
        assert await keys.ensure(kube, namespace) == 1
        assert kubectl.get("secret", TRACE_HASH_KEY_SECRET)["data"][TRACE_HASH_KEY_SECRET_KEY] == key
        # Emptied, its digest annotation left in place: written again too.
        patch = json.dumps({"data": {TRACE_HASH_KEY_SECRET_KEY: ""}})
        kubectl.run("patch", "secret", TRACE_HASH_KEY_SECRET, "--type=merge", "-p", patch)
        assert await keys.ensure(kube, namespace) == 1
        assert kubectl.get("secret", TRACE_HASH_KEY_SECRET)["data"][TRACE_HASH_KEY_SECRET_KEY] == key
        assert await keys.ensure(kube, namespace) == 0  # and a resync writes nothing
    finally:
        await kube.close()


async def test_span_key_without_the_right_to_read_the_secret_is_one_line_naming_the_refusal(
    kubectl: Kubectl, control_plane: ControlPlane, tmp_path: Path
) -> None:
    """Attack: a person without `get` on Secrets asks for a span key: one line, no traceback, exit 1."""
    kube = KubeClient.from_environment(str(control_plane.kubeconfig))
    try:
        await TraceKeys(MASTER).ensure(kube, kubectl.namespace)
    finally:
        await kube.close()
    person = control_plane.user_kubeconfig(tmp_path / "p.kubeconfig", "nosecrets", namespace=kubectl.namespace)
    argv = ["trace", "DE1", "--span-key", "--kubeconfig", str(person)]
    result = await asyncio.to_thread(CliRunner().invoke, main, argv, env={"KUBECONFIG": None})
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    [line] = result.output.strip().splitlines()
    assert line.startswith("Error: the Kubernetes API server at ")
    assert "forbidden" in line.lower()
    assert "hmac-sha256" not in line
