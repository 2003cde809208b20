"""The README's "run it" command: the embedded demo plays every scenario exactly once."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.controlplane


def test_dev_demo_plays_every_scenario_exactly_once() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "onceflow_operator.cli", "dev", "demo", "--examples", str(ROOT / "examples")],
        capture_output=True,
        text=True,
        timeout=420,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "== every record arrived exactly once: doubled 0, missing []" in out
    assert "ERP         5 effect(s)" in out
    assert "accounting  1 effect(s): invoice/ACC-SINV-2026-00017/postToAccounting x1" in out
    assert "exceptions waiting for a person (1)" in out
    assert "integration.onceflow.io/customer-onboarding     True    Healthy" in out
