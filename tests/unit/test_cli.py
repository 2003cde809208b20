"""The `onceflow` command as people and pods start it: `python -m onceflow_operator <command>`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest

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
