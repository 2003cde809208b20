"""The `onceflow` command as people and pods start it: `python -m onceflow_operator <command>`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from onceflow_operator.cli import main

COMMANDS = main.list_commands(click.Context(main))


def test_every_listed_command_is_found_under_its_own_name() -> None:
    ctx = click.Context(main)
    assert {"rollout", "console", "runner", "exceptions", "dev"} <= set(COMMANDS)
    for name in COMMANDS:
        command = main.get_command(ctx, name)
        assert command is not None, name
        assert command.name == name


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_python_m_onceflow_operator_answers_help_for_every_command_group(command: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "onceflow_operator", *([command] if command else []), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Usage: python -m onceflow_operator")


def test_runner_starts_without_loading_the_operators_modules_or_kopf(tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"planVersion": "onceflow.io/plan/v0"}))
    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: print(sorted(m for m in sys.modules"
        " if m.split('.')[0] in {'kopf', 'kubernetes', 'onceflow_operator'})))\n"
        "from onceflow_operator.cli import main\n"
        "main(['runner', '--plan', sys.argv[1]])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(plan)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 2, proc.stderr  # the runner refused the plan: it ran, then stopped
    loaded = proc.stdout.strip().splitlines()[-1]
    assert loaded == str(
        [
            "onceflow_operator",
            "onceflow_operator.cli",
            "onceflow_operator.cli.dataplane",
            "onceflow_operator.cli.output",
        ]
    )


def test_reconcile_is_a_hidden_alias_of_drift_check_that_says_so_on_stderr(tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"planVersion": "onceflow.io/plan/v0"}))
    drift = CliRunner().invoke(main, ["drift-check", "--plan", str(plan)])
    alias = CliRunner().invoke(main, ["reconcile", "--plan", str(plan)])
    assert (drift.exit_code, alias.exit_code) == (2, 2)  # both ran the check, which refused the plan
    assert alias.stdout == drift.stdout
    note, *rest = alias.stderr.splitlines()
    assert note == (
        "DeprecationWarning: The command 'reconcile' is deprecated."
        " Use 'onceflow drift-check'; this alias goes in the next release."
    )
    assert rest == drift.stderr.splitlines()
    listed = CliRunner().invoke(main, ["--help"]).stdout.splitlines()
    assert any(line.split()[:1] == ["drift-check"] for line in listed)
    assert not any(line.split()[:1] == ["reconcile"] for line in listed)


def test_who_decides_is_the_kubeconfig_current_contexts_user_or_none_without_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from onceflow_operator.clients.kube import kubeconfig_user

    config = tmp_path / "config"
    config.write_text(
        "current-context: work\n"
        "contexts:\n"
        "- {name: home, context: {cluster: c, user: bob}}\n"
        "- {name: work, context: {cluster: c, user: alice}}\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(config))
    assert kubeconfig_user() == "alice"
    assert kubeconfig_user(str(tmp_path / "missing")) is None
    config.write_text("current-context: gone\ncontexts: []\n")
    assert kubeconfig_user() is None


def test_exceptions_list_without_nats_says_so_in_one_line_and_exits() -> None:
    # Nothing listens on port 1: the command must end with one line, not retry for minutes.
    result = CliRunner().invoke(main, ["exceptions", "list", "--nats", "nats://127.0.0.1:1"])
    assert result.exit_code == 1
    assert "cannot reach NATS at nats://127.0.0.1:1" in result.output
    assert "Traceback" not in result.output
