"""The CLI against the real kube-apiserver (issue 18, items 2 and 3): merged KUBECONFIG files,
`--context`, the context's namespace and `-A`; decisions made as the user the API server
authenticates (client certificates and an exec credential plugin), allowed by the same RBAC rule
as the console, refused in one line for people without it, and audited under their real name."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
import yaml
from click.testing import CliRunner, Result

from onceflow_operator.cli import main
from onceflow_operator.clients import topology
from onceflow_operator.dev.controlplane import ControlPlane
from onceflow_operator.dev.natsserver import NatsServer
from tests import cases
from tests.conftest import Kubectl
from tests.integration.review_streams import park
from tests.integration.test_console import reviewers

pytestmark = pytest.mark.controlplane


async def cli(*argv: str, env: dict[str, str | None] | None = None) -> Result:
    """`onceflow ARGV` in a thread (the CLI runs its own event loop); KUBECONFIG unset unless `env` sets it."""
    return await asyncio.to_thread(CliRunner().invoke, main, list(argv), env={"KUBECONFIG": None, **(env or {})})


@dataclass
class Team:
    namespace: str
    nats_url: str
    kubectl: Kubectl
    folder: Path
    control_plane: ControlPlane

    def person(self, user: str, *groups: str) -> str:
        """A kubeconfig for `user` whose context's namespace is the team's (so no -n is needed)."""
        path = self.folder / f"{user}.kubeconfig"
        return str(self.control_plane.user_kubeconfig(path, user, groups, namespace=self.namespace))

    async def park(self) -> int:
        nc = await nats.connect(self.nats_url)
        try:
            return await park(nc.jetstream(), self.namespace, business_key=f"customer/{uuid.uuid4().hex[:8]}")
        finally:
            await nc.close()

    async def listed(self, *extra: str) -> list[dict[str, object]]:
        result = await cli("exceptions", "list", "-n", self.namespace, "--nats", self.nats_url, "-o", "json", *extra)
        assert result.exit_code == 0, result.output
        return list(json.loads(result.output))


@pytest.fixture
async def team(admin_kubectl: Kubectl, control_plane: ControlPlane, nats_server: NatsServer, tmp_path: Path) -> Team:
    """A namespace where alice may look and decide and bob may only look (the console's test roles)."""
    namespace = f"cli-{uuid.uuid4().hex[:8]}"
    admin_kubectl.run("create", "namespace", namespace)
    kubectl = Kubectl(admin_kubectl.kubeconfig, namespace)
    kubectl.apply(*reviewers(namespace))
    nc = await nats.connect(nats_server.url)
    await topology.ensure_streams(nc.jetstream())
    await nc.close()
    return Team(namespace, nats_server.url, kubectl, tmp_path, control_plane)


async def test_a_decision_is_recorded_under_the_name_the_api_server_authenticated(team: Team) -> None:
    sequence = await team.park()
    alice = team.person("alice", "shop-reviewers")
    # No -n: the namespace is alice's context's; no --as: who she is comes from the API server.
    decided = await cli(
        "exceptions", "discard", str(sequence), "-m", "a test record", "--kubeconfig", alice, "--nats", team.nats_url
    )
    assert decided.exit_code == 0, decided.output
    assert decided.output.strip() == f"exception {sequence}: discard by alice"
    (row,) = [r for r in await team.listed("--all") if r["sequence"] == sequence]
    assert (row["decision"], row["decidedBy"]) == ("discard", "alice")
    business_key = str(row["businessKey"])
    traced = await cli("trace", business_key, "-n", team.namespace, "--nats", team.nats_url, "-o", "json")
    details = [e.get("detail") for e in json.loads(traced.output) if e.get("outcome") == "decision"]
    assert details == ["discard by alice: a test record"]
    everywhere = await cli("exceptions", "list", "-A", "--all", "--nats", team.nats_url, "-o", "json")
    assert (team.namespace, sequence) in {(r["namespace"], r["sequence"]) for r in json.loads(everywhere.output)}


@pytest.mark.parametrize("user", ["bob", "carol"])
async def test_a_person_without_the_rbac_to_decide_is_refused_in_one_line_and_nothing_is_recorded(
    team: Team, user: str
) -> None:
    # bob may look (get) but not decide (update); carol has no Role at all.
    sequence = await team.park()
    refused = await cli(
        "exceptions", "approve", str(sequence), "-m", "looks fine", "--kubeconfig", team.person(user),
        "--nats", team.nats_url,
    )  # fmt: skip
    assert refused.exit_code == 1
    assert refused.output.splitlines() == [
        f"Error: {user} may not update exceptions.onceflow.io in namespace {team.namespace}: nothing was decided; "
        "ask a cluster admin for a Role granting it (docs/operations.md, 'Who may decide')"
    ]
    assert sequence in [r["sequence"] for r in await team.listed()]  # still waiting


def exec_kubeconfig(team: Team, token: str) -> str:
    """The admin kubeconfig with its user replaced by an exec plugin that prints `token`."""
    plugin = team.folder / "login.py"
    plugin.write_text(
        "import json\n"
        "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1', 'kind': 'ExecCredential',"
        f" 'status': {{'token': {token!r}}}}}))\n"
    )
    config = yaml.safe_load(Path(team.kubectl.kubeconfig).read_text())
    config["users"] = [
        {
            "name": "sso",
            "user": {
                "exec": {
                    "apiVersion": "client.authentication.k8s.io/v1",
                    "command": sys.executable,
                    "args": [str(plugin)],
                    "interactiveMode": "Never",
                }
            },
        }
    ]
    config["contexts"][0]["context"].update({"user": "sso", "namespace": team.namespace})
    kubeconfig = team.folder / "sso.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    return str(kubeconfig)


async def test_an_exec_credential_plugin_logs_in_and_its_service_account_decides(team: Team) -> None:
    # How EKS, GKE and AKS users log in: a command prints the token. Here it prints one the test API
    # server issued to a service account bound to the deciding Role.
    team.kubectl.run("create", "serviceaccount", "robot")
    team.kubectl.run(
        "create", "rolebinding", "robot-decides", "--role=exceptions-alice", f"--serviceaccount={team.namespace}:robot"
    )
    token = team.kubectl.run("create", "token", "robot").stdout.strip()
    kubeconfig = exec_kubeconfig(team, token)
    sequence = await team.park()
    decided = await cli(
        "exceptions", "reject", str(sequence), "-m", "spam", "--kubeconfig", kubeconfig, "--nats", team.nats_url
    )
    assert decided.exit_code == 0, decided.output
    assert decided.output.strip() == f"exception {sequence}: reject by system:serviceaccount:{team.namespace}:robot"


@pytest.fixture
def two_namespaces(admin_kubectl: Kubectl, crds_installed: None, tmp_path: Path) -> tuple[str, str, str]:
    """A Connector in each of two fresh namespaces, and the admin kubeconfig split as people keep theirs.

    The first file holds the cluster, the user and context `one` (the current one, namespace one);
    the second only context `two` (namespace two) and a current-context that must not win.
    """
    one, two = (f"ns-{uuid.uuid4().hex[:6]}" for _ in range(2))
    for namespace, connector in ((one, "erp-one"), (two, "erp-two")):
        admin_kubectl.run("create", "namespace", namespace)
        Kubectl(admin_kubectl.kubeconfig, namespace).apply(cases.connector_rest(connector))
    admin = yaml.safe_load(admin_kubectl.kubeconfig.read_text())
    (context,) = admin["contexts"]
    first = {**admin, "contexts": [{"name": "one", "context": {**context["context"], "namespace": one}}]}
    first["current-context"] = "one"
    second = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [],
        "users": [],
        "contexts": [{"name": "two", "context": {**context["context"], "namespace": two}}],
        "current-context": "two",
    }
    (tmp_path / "first").write_text(yaml.safe_dump(first))
    (tmp_path / "second").write_text(yaml.safe_dump(second))
    return os.pathsep.join([str(tmp_path / "first"), str(tmp_path / "second")]), one, two


async def test_merged_kubeconfig_files_contexts_namespaces_and_all_namespaces(
    two_namespaces: tuple[str, str, str],
) -> None:
    merged, one, two = two_namespaces
    env: dict[str, str | None] = {"KUBECONFIG": merged}

    async def names(*argv: str) -> set[tuple[str, str]]:
        result = await cli("status", "-o", "json", *argv, env=env)
        assert result.exit_code == 0, result.output
        return {(r["namespace"], r["name"]) for r in json.loads(result.output) if r["namespace"] in {one, two}}

    assert await names() == {(one, "erp-one")}  # the first file's current context and its namespace
    assert await names("--context", "two") == {(two, "erp-two")}  # a context only the second file has
    assert await names("-n", two) == {(two, "erp-two")}
    assert await names("-A") == {(one, "erp-one"), (two, "erp-two")}
    table = await cli("status", "-A", env=env)
    assert table.output.splitlines()[0].split()[:3] == ["NAMESPACE", "KIND", "NAME"]
    assert "NAMESPACE" not in (await cli("status", env=env)).output  # one namespace: no column for it


async def test_an_api_server_the_kubeconfig_does_not_trust_is_named_with_the_tls_reason(
    admin_kubectl: Kubectl, tmp_path: Path
) -> None:
    """A kubeconfig whose certificate-authority is another CA: one line saying why, as kubectl would."""
    from tests.unit.test_kubeconfig import _client_certificate

    other_ca, _ = _client_certificate(tmp_path / "other")
    config = yaml.safe_load(admin_kubectl.kubeconfig.read_text())
    for cluster in config["clusters"]:
        cluster["cluster"].pop("certificate-authority", None)
        cluster["cluster"]["certificate-authority-data"] = base64.b64encode(other_ca.read_bytes()).decode()
    (tmp_path / "untrusting").write_text(yaml.safe_dump(config))
    result = await cli("status", "--kubeconfig", str(tmp_path / "untrusting"))
    assert result.exit_code == 1
    assert "cannot verify the Kubernetes API server" in result.output
    assert "certificate" in result.output.split("cannot verify", 1)[1]
    assert "Operation not permitted" not in result.output
    assert "Traceback" not in result.output


def rotating_exec_kubeconfig(team: Team, tokens: list[str]) -> tuple[str, Path]:
    """An exec plugin that prints `tokens` one per run (the last one from then on); returns the kubeconfig and its run log."""
    runs = team.folder / "runs"
    plugin = team.folder / "rotating-login.py"
    plugin.write_text(
        "import json, pathlib\n"
        f"runs = pathlib.Path({str(runs)!r})\n"
        f"tokens = {tokens!r}\n"
        "done = len(runs.read_text().splitlines()) if runs.exists() else 0\n"
        "runs.open('a').write('run\\n')\n"
        "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1', 'kind': 'ExecCredential',"
        " 'status': {'token': tokens[min(done, len(tokens) - 1)]}}))\n"
    )
    config = yaml.safe_load(Path(team.kubectl.kubeconfig).read_text())
    config["users"] = [
        {
            "name": "sso",
            "user": {
                "exec": {
                    "apiVersion": "client.authentication.k8s.io/v1",
                    "command": sys.executable,
                    "args": [str(plugin)],
                    "interactiveMode": "Never",
                }
            },
        }
    ]
    config["contexts"][0]["context"].update({"user": "sso", "namespace": team.namespace})
    kubeconfig = team.folder / "rotating.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    return str(kubeconfig), runs


async def test_status_and_rollout_verbs_work_through_an_exec_plugin_even_when_its_token_went_stale(
    team: Team,
) -> None:
    # How EKS, GKE and AKS users reach a cluster. The first token the plugin prints is refused (an
    # expired one): the client runs the plugin again, once, as client-go does, and goes on.
    team.kubectl.apply(
        cases.integration("flow"),
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "operators"},
            "rules": [
                {
                    "apiGroups": ["onceflow.io"],
                    "resources": ["connectors", "integrations", "syncpolicies"],
                    "verbs": ["get", "list", "patch"],
                },
                {"apiGroups": ["apps"], "resources": ["controllerrevisions"], "verbs": ["get", "list"]},
            ],
        },
    )
    team.kubectl.run("create", "serviceaccount", "ops")
    team.kubectl.run("create", "rolebinding", "ops", "--role=operators", f"--serviceaccount={team.namespace}:ops")
    token = team.kubectl.run("create", "token", "ops").stdout.strip()
    kubeconfig, runs = rotating_exec_kubeconfig(team, ["expired-token", token])

    listed = await cli("status", "-o", "json", "--kubeconfig", kubeconfig)
    assert listed.exit_code == 0, listed.output
    assert ("Integration", "flow") in {(row["kind"], row["name"]) for row in json.loads(listed.output)}
    assert len(runs.read_text().splitlines()) == 2  # refused once, asked the plugin again

    # The kubectl plugin, as people run it: `kubectl onceflow ...` found through PATH.
    bin_dir = str(Path(sys.executable).parent)
    shown = await asyncio.to_thread(
        subprocess.run,
        [str(Path(bin_dir) / "kubectl"), "onceflow", "rollout", "history", "flow", "--kubeconfig", kubeconfig],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "KUBECONFIG": ""},
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert "Traceback" not in shown.stderr
