"""The README's "run it" command: the embedded demo plays every scenario exactly once."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import KUBECTL, ROOT
from tests.integration.scenario import session_members

#: The example Integrations `dev up` applies (examples/erps are Connectors for real ERPs, left out).
DEMO_INTEGRATIONS = [
    doc["metadata"]["name"]
    for path in sorted((ROOT / "examples").rglob("*.yaml"))
    if not {"fixtures", "erps"} & set(path.parts)
    for doc in yaml.safe_load_all(path.read_text())
    if doc and doc.get("kind") == "Integration"
]

pytestmark = pytest.mark.controlplane


def test_dev_demo_plays_every_scenario_exactly_once() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "onceflow_operator", "dev", "demo", "--examples", str(ROOT / "examples")],
        capture_output=True,
        text=True,
        timeout=420,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "== every record arrived exactly once: doubled 0, missing none" in out
    assert "ERP         6 effect(s)" in out
    assert "order/edi/PO-8801/createSalesOrder x1" in out
    # The EDI partner (examples/edi-partner) dropped an 850 on its SFTP server and got a 997 and an 855.
    assert re.search(r"EDI partner 2 file\(s\) in its folder: 855_acme-edi_\d{9}\.x12, 997_acme-edi_\d{9}\.x12", out)
    assert "accounting  1 effect(s): invoice/ACC-SINV-2026-00017/postToAccounting x1" in out
    # The ERP sends no webhooks: the invoice was found by polling it, and the status shows the poll.
    assert "invoices-from-erp status.figures.poll: watermark 20" in out
    assert "exceptions waiting for a person (1)" in out
    assert "integration.onceflow.io/customer-onboarding     True    Healthy" in out


def _onceflow(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "onceflow_operator", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, cwd=ROOT)


def test_dev_up_then_down_leaves_no_process_behind_and_a_second_down_says_so(tmp_path: Path) -> None:
    """One cycle: docs/quickstart.md's test runs another, from a cache of its own."""
    state = tmp_path / "dev"
    try:
        _up_and_down(state)
    finally:  # never leave a background system behind a failed assertion
        _onceflow("dev", "down", "--state", str(state), timeout=180)
    assert "was not running" in _onceflow("dev", "down", "--state", str(state)).stdout


def _up_and_down(state: Path) -> None:
    started = _onceflow("dev", "up", "--examples", str(ROOT / "examples"), "--state", str(state))
    assert started.returncode == 0, started.stdout + started.stderr
    info = json.loads((state / "state.json").read_text())
    assert f"export KUBECONFIG={info['kubeconfig']}" in started.stdout
    assert "crm-webhooks" in started.stdout
    table = subprocess.run(
        [KUBECTL, f"--kubeconfig={info['kubeconfig']}", "get", "integrations", "-n", "demo", "--no-headers"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    rows = table.strip().splitlines()
    assert len(rows) == len(DEMO_INTEGRATIONS), rows  # every example Integration the demo applies
    assert all(" True " in row and " Healthy " in row for row in rows), rows
    assert session_members(info["pid"]), "the background system runs in its own session"
    stopped = _onceflow("dev", "down", "--state", str(state), timeout=180)
    assert stopped.returncode == 0
    assert "onceflow dev stopped" in stopped.stdout
    assert session_members(info["pid"]) == []
    assert not state.exists()
