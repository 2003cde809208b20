"""docs/quickstart.md followed literally: its `sh` blocks run verbatim against `onceflow dev up`.

The blocks run in order in bash, in the repository's root, one shell session carried from block
to block (what a block exports, e.g. `source .venv/bin/activate` or `eval "$(onceflow dev env)"`,
stays for the next), starting from a PATH without `.venv/bin`, as a reader's shell would be.
Each block's output must show what the page's `text` block after it says (tests/docblocks.py).
Editing the page or the code so they disagree fails here.

The same run also lists every socket the embedded system listens on (all must be 127.0.0.1), and
sends one webhook signed with the wrong key, to see the one-line answer a person gets.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.conftest import KUBECTL, ROOT
from tests.docblocks import ShellBlock, first_unmatched, shell_blocks
from tests.integration.scenario import session_members
from tests.integration.test_demo import DEMO_INTEGRATIONS

pytestmark = pytest.mark.controlplane

QUICKSTART = ROOT / "docs" / "quickstart.md"
#: How long a `repeat` block may take to show what the page says (a record flowing end to end).
REPEAT_WITHIN = 60.0


@dataclass
class QuickstartRun:
    """What following the page printed, block by block, and what was seen along the way."""

    results: list[tuple[ShellBlock, subprocess.CompletedProcess[str]]] = field(default_factory=list)
    #: (address, port, command line) of every listening TCP socket of the dev system after `dev up`.
    listening: list[tuple[str, int, str]] = field(default_factory=list)
    wrong_secret: subprocess.CompletedProcess[str] | None = None
    #: `kubectl get integrations -n demo` rows while the system ran (before `dev down`).
    integrations: list[str] = field(default_factory=list)
    #: Processes of the system's session before and after `dev down`, and whether its state was left.
    members_before: list[int] = field(default_factory=list)
    members_after: list[int] = field(default_factory=list)
    state_left: bool = True
    #: `onceflow dev down` once more, with nothing running.
    second_down: subprocess.CompletedProcess[str] | None = None


def _run(block: ShellBlock, session: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run one block in bash with the session so far; save what it exported for the next block."""
    script = f"source {session}\nset -e -o pipefail\n{block.commands}\nexport -p > {session}\n"
    return subprocess.run(
        ["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False
    )


def _reader_env(cache: Path) -> dict[str, str]:
    """This environment as a reader's shell has it: no venv on PATH; the dev system's state in `cache`."""
    venv_bin = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "KUBECONFIG", "ONCEFLOW_NATS_URL"}}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p and p != venv_bin)
    env["ONCEFLOW_CACHE"] = str(cache)  # `dev up` keeps its state here, never in the reader's own cache
    return env


def _hex_address(text: str) -> str:
    """An address of /proc/net/tcp{,6} (hex, host byte order per 32-bit word) as text."""
    import ipaddress
    import socket

    raw = bytes.fromhex(text)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, words)))


def listening_sockets(sid: int) -> list[tuple[str, int, str]]:
    """(address, port, command) of every TCP socket in LISTEN state held by a process of session `sid`."""
    owners: dict[str, int] = {}
    for pid in session_members(sid):
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                owners[target[len("socket:[") : -1]] = pid
    found = []
    for table in ("tcp", "tcp6"):
        for row in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            cols = row.split()
            if cols[3] == "0A" and cols[9] in owners:  # 0A: LISTEN; column 9: the socket's inode
                address, port = cols[1].split(":")
                try:
                    command = Path(f"/proc/{owners[cols[9]]}/cmdline").read_text().replace("\0", " ")[:120]
                except OSError:
                    command = "?"
                found.append((_hex_address(address), int(port, 16), command))
    return found


def _send_with_wrong_key(env: dict[str, str], session: Path, folder: Path) -> subprocess.CompletedProcess[str]:
    """`onceflow send` with the example Connector but a Secret whose (well-formed) key differs."""
    docs = [
        d
        for d in yaml.safe_load_all((ROOT / "examples/customer-onboarding/connectors.yaml").read_text())
        if d["metadata"]["name"] in {"crm-webhooks"}
    ]
    docs.append(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "crm-webhook"},
            "stringData": {"secret": "whsec_d3Jvbmcta2V5LW5vdC10aGUtZ2F0ZXdheXM="},
        }
    )
    manifests = folder / "wrong-key.yaml"
    manifests.write_text(yaml.safe_dump_all(docs))
    block = ShellBlock(0, f"onceflow send crm-webhooks -n demo -f {manifests} -d '{{}}'\n")
    return _run(block, session, env)


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QuickstartRun]:
    """Follow the page once; every test below reads what happened."""
    folder = tmp_path_factory.mktemp("quickstart")
    env = _reader_env(folder / "cache")
    session = folder / "session.sh"
    session.write_text("")
    run = QuickstartRun()
    state = folder / "cache" / "dev"
    try:
        for block in shell_blocks(QUICKSTART):
            if block.skip:
                continue
            stopping = "onceflow dev down" in block.commands
            if stopping:  # before stopping: what only a running system shows
                pid = int((state / "pid").read_text())
                run.listening = listening_sockets(pid)
                run.wrong_secret = _send_with_wrong_key(env, session, folder)
                run.integrations = _integration_rows(state)
                run.members_before = session_members(pid)
            deadline = time.monotonic() + (REPEAT_WITHIN if block.repeat else 0)
            result = _run(block, session, env)
            # polled: a reader runs a read-only command again until the record has flowed
            while block.repeat and first_unmatched(block.expected, result.stdout) and time.monotonic() < deadline:
                time.sleep(1)
                result = _run(block, session, env)
            run.results.append((block, result))
            if stopping:
                run.members_after, run.state_left = session_members(pid), state.exists()
                run.second_down = _dev_down(state)
            if result.returncode != 0:
                break
        yield run
    finally:
        _dev_down(state)


def _dev_down(state: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "onceflow_operator", "dev", "down", "--state", str(state)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _integration_rows(state: Path) -> list[str]:
    """`kubectl get integrations -n demo` of the running system, one row each."""
    kubeconfig = json.loads((state / "state.json").read_text())["kubeconfig"]
    table = subprocess.run(
        [KUBECTL, f"--kubeconfig={kubeconfig}", "get", "integrations", "-n", "demo", "--no-headers"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return table.strip().splitlines()


def test_every_quickstart_command_prints_what_the_page_says(quickstart: QuickstartRun) -> None:
    blocks = [b for b in shell_blocks(QUICKSTART) if not b.skip]
    for block, result in quickstart.results:
        assert result.returncode == 0, f"{block} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        missing = first_unmatched(block.expected, result.stdout)
        assert missing is None, f"{block}: the page promises\n  {missing}\nbut it printed:\n{result.stdout}"
    assert [b.line for b, _ in quickstart.results] == [b.line for b in blocks], "every runnable block ran"


def test_the_embedded_system_listens_on_loopback_only(quickstart: QuickstartRun) -> None:
    assert len(quickstart.listening) >= 10, quickstart.listening  # apiserver, etcd, NATS, operator, gateways, ...
    assert any("operator" in command for _, _, command in quickstart.listening), "the operator's metrics"
    exposed = [s for s in quickstart.listening if s[0] not in {"127.0.0.1", "::1"}]
    assert exposed == [], exposed


def test_send_signed_with_another_key_ends_in_one_line_naming_the_secret(quickstart: QuickstartRun) -> None:
    result = quickstart.wrong_secret
    assert result is not None
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "Error: crm-webhooks: 401 signature rejected; the gateway's signing secret differs from Secret "
        "crm-webhook/secret, or the clocks differ by more than the tolerance"
    ]
    assert "whsec_" not in result.stderr


def test_every_example_integration_is_healthy_and_dev_down_leaves_no_process_behind(quickstart: QuickstartRun) -> None:
    """What `dev up` applied all became Ready; `dev down` ended every process of its session and
    removed its state; a second `dev down` says nothing was running."""
    rows = quickstart.integrations
    assert len(rows) == len(DEMO_INTEGRATIONS), rows  # every example Integration the demo applies
    assert all(" True " in row and " Healthy " in row for row in rows), rows
    assert quickstart.members_before, "the background system runs in a session of its own"
    assert quickstart.members_after == []
    assert not quickstart.state_left
    assert quickstart.second_down is not None
    assert quickstart.second_down.returncode == 0
    assert "was not running" in quickstart.second_down.stdout
