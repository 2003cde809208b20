"""The quickstart without a cluster: its commands exist, `dev up`'s summary, `make demo`'s needs.

The full check runs the page against `dev up` (tests/integration/test_quickstart.py); these catch
the cheap drifts in a second: an option renamed, a skipped block without a reason, a summary that
loses a gateway's path.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from onceflow_operator.cli import main
from onceflow_operator.dev.devenv import SAMPLE_WEBHOOK, describe, shell_exports
from tests.conftest import ROOT
from tests.docblocks import first_unmatched, shell_blocks

QUICKSTART = ROOT / "docs" / "quickstart.md"


def test_every_quickstart_block_is_run_or_says_why_not() -> None:
    blocks = shell_blocks(QUICKSTART)
    run = [b for b in blocks if not b.skip]
    assert len(run) >= 10
    assert all(b.skip != "(no reason given)" for b in blocks)
    assert any("onceflow dev up" in b.commands for b in run)
    assert any("onceflow send" in b.commands for b in run)
    assert any("onceflow exceptions" in b.commands for b in run)
    assert "onceflow dev down" in run[-1].commands
    promised = [b.commands.split()[-1] for b in run if b.expected]
    assert {"up", "demo", "crm-evt-1", "down"} <= set(promised), promised  # what each prints is checked


def _onceflow_commands() -> list[list[str]]:
    return [
        shlex.split(line)[1:]
        for block in shell_blocks(QUICKSTART)
        for line in block.commands.splitlines()
        if line.startswith("onceflow ")
    ]


@pytest.mark.parametrize("argv", _onceflow_commands(), ids=lambda a: " ".join(a[:2]))
def test_every_onceflow_command_of_the_quickstart_takes_the_options_it_is_given(argv: list[str]) -> None:
    # --help after the arguments: click parses every option first, so a renamed one fails here.
    result = CliRunner().invoke(main, [*argv, "--help"])
    assert result.exit_code == 0, result.output


def test_every_file_the_quickstart_names_exists() -> None:
    named = {
        word.lstrip("@")
        for block in shell_blocks(QUICKSTART)
        for word in shlex.split(block.commands, comments=True)
        if word.lstrip("@").startswith("examples/")
    }
    assert named
    assert [n for n in named if not (ROOT / n).exists()] == []


def test_expected_output_matches_in_order_with_any_spacing_and_ellipses() -> None:
    output = "NAME   READY\ncrm    True   x\nerp  True  y\n"
    assert first_unmatched(["NAME READY", "crm True ...", "erp ... y"], output) is None
    assert first_unmatched(["erp True ...", "crm True ..."], output) == "crm True ..."
    assert first_unmatched(["crm True"], output) == "crm True"  # a line matches whole, not a prefix


INFO = {
    "pid": 42,
    "namespace": "demo",
    "kubeconfig": "/home/me/.cache/onceflow/dev/kubeconfig",
    "nats": "nats://127.0.0.1:4222",
    "examples": str(ROOT / "examples"),
    "sandboxes": {"erp": "http://127.0.0.1:8100", "wms": "http://127.0.0.1:8101"},
    "ediPartner": {"folder": "/tmp/onceflow-edi-partner-x", "sftp": "127.0.0.1:2222"},
    "gateways": {
        "crm-webhooks": {
            "url": "http://127.0.0.1:9001/crm",
            "scheme": "standard-webhooks",
            "secret": {"name": "crm-webhook", "key": "secret"},
        },
        "edi-partner": {
            "url": "http://127.0.0.1:9002/edi/acme",
            "scheme": "hmac",
            "secret": {"name": "edi-partner", "key": "secret"},
        },
    },
}


def test_dev_up_summary_names_each_gateway_with_path_scheme_and_secret_and_each_sandbox() -> None:
    text = "\n".join(describe(INFO, bin_dir=Path("/repo/.venv/bin"), on_path=True))
    assert (
        first_unmatched(
            [
                "onceflow dev is up (pid 42, namespace demo).",
                'eval "$(onceflow dev env)"',
                "export KUBECONFIG=/home/me/.cache/onceflow/dev/kubeconfig",
                "export ONCEFLOW_NATS_URL=nats://127.0.0.1:4222",
                "CONNECTOR URL SCHEME SIGNING SECRET",
                "crm-webhooks http://127.0.0.1:9001/crm standard-webhooks Secret crm-webhook, key secret (-n demo)",
                "edi-partner http://127.0.0.1:9002/edi/acme hmac Secret edi-partner, key secret (-n demo)",
                "SANDBOX URL",
                "erp http://127.0.0.1:8100",
                "wms http://127.0.0.1:8101",
                "EDI partner (SFTP 127.0.0.1:2222): drop X12 850s in /tmp/onceflow-edi-partner-x/to-onceflow/;",
                "997s, 855s, 856s and 810s for it land in /tmp/onceflow-edi-partner-x/from-onceflow/",
                f"onceflow send crm-webhooks -n demo -d @{ROOT / 'examples' / SAMPLE_WEBHOOK}",
                "curl -s http://127.0.0.1:8100/_sandbox/state",
                "Stop it with: onceflow dev down",
            ],
            text,
        )
        is None
    ), text
    assert "PATH" not in text
    assert (ROOT / "examples" / SAMPLE_WEBHOOK).exists()


def test_dev_up_summary_says_how_to_put_the_venv_on_path_when_it_is_not() -> None:
    text = "\n".join(describe(INFO, bin_dir=Path("/repo/.venv/bin"), on_path=False))
    assert "  export PATH=/repo/.venv/bin:$PATH" in text.splitlines()
    assert "kubectl onceflow" in text


def test_dev_env_quotes_what_a_shell_would_split() -> None:
    assert shell_exports(INFO | {"kubeconfig": "/home/my user/kubeconfig"})[0] == (
        "export KUBECONFIG='/home/my user/kubeconfig'"
    )


def _make_dry_run(target: str) -> str:
    return subprocess.run(
        ["make", "-n", "-B", target], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    ).stdout


def test_make_demo_needs_only_the_venv_and_the_control_plane() -> None:
    demo = _make_dry_run("demo")
    assert "hack/build-control-plane.sh" in demo
    for tool in ("build-helm", "install-prometheus", "build-monitoring-crds", "install-checkov", "install-chromium"):
        assert tool not in demo
        assert tool in _make_dry_run("test")
