"""The README's "run it" command: the embedded demo plays every scenario exactly once."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml

from tests.conftest import ROOT

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
