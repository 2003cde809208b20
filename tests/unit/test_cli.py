"""The `onceflow` command as people and pods start it: `python -m onceflow_operator <command>`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
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


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("nats://127.0.0.1:1", "connection refused"),  # nothing listens on port 1
        ("nats://nohost.invalid:4222", "unknown host"),
        ("http://127.0.0.1:4222", "is not a NATS URL"),
    ],
)
def test_exceptions_list_without_nats_says_why_in_one_line_at_once(url: str, reason: str) -> None:
    started = time.monotonic()
    result = CliRunner().invoke(main, ["exceptions", "list", "--nats", url])
    assert result.exit_code == 1
    assert reason in result.output
    assert "Traceback" not in result.output
    assert time.monotonic() - started < 7  # the first failure ends it, not the 8 s bound


def test_tables_shorten_long_cells_at_a_word_with_an_ellipsis_and_wide_shows_them_whole(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from onceflow_operator.cli.output import CELL_WIDTH, emit_rows, shorten

    error = "the record broke a rule: credit_limit 300000 exceeds the maximum of 250000 for new customers in DE"
    assert shorten("short") == "short"
    cut = shorten(error)
    assert len(cut) <= CELL_WIDTH
    assert cut.endswith("…")
    assert error.startswith(cut[:-1])
    assert error[len(cut) - 1] == " "  # cut between words, not mid-word
    assert shorten("line one\nline two") == "line one line two"  # a cell stays on its row

    rows = [{"sequence": 7, "error": error, "revision": "customer-sync-abc"}]
    emit_rows(rows, "table", ["sequence", "error"], ["revision"])
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["SEQUENCE", "ERROR"]
    assert table[1].endswith("…")
    emit_rows(rows, "wide", ["sequence", "error"], ["revision"])
    wide = capsys.readouterr().out.splitlines()
    assert wide[0].split() == ["SEQUENCE", "ERROR", "REVISION"]
    assert error in wide[1]
    assert wide[1].endswith("customer-sync-abc")


@pytest.mark.parametrize("output", ["yaml", "json"])
def test_yaml_and_json_rows_keep_utf8_text(output: str, capsys: pytest.CaptureFixture[str]) -> None:
    from onceflow_operator.cli.output import emit_rows

    emit_rows([{"city": "Köln", "name": "Müller & Söhne"}], output, ["city"])
    printed = capsys.readouterr().out
    assert "Köln" in printed
    assert "Müller & Söhne" in printed
    assert "\\x" not in printed
    assert "\\u" not in printed


def test_every_command_offers_the_same_output_formats() -> None:
    from onceflow_operator.cli.output import OUTPUT_FORMATS

    def commands(group: click.Group, ctx: click.Context) -> list[click.Command]:
        found: list[click.Command] = []
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            assert command is not None
            found += commands(command, ctx) if isinstance(command, click.Group) else [command]
        return found

    with_output = []
    for command in commands(main, click.Context(main)):
        for param in command.params:
            if isinstance(param, click.Option) and "-o" in param.opts and "--output" in param.opts:
                assert isinstance(param.type, click.Choice)
                assert tuple(param.type.choices) == OUTPUT_FORMATS, command.name
                with_output.append(command.name)
    assert {"status", "list", "show", "trace", "history"} <= set(with_output)


def test_every_command_that_reaches_the_cluster_or_nats_takes_kubectls_flags() -> None:
    ctx = click.Context(main)
    reaching = {
        ("status",),
        ("console",),
        ("trace",),
        *(("rollout", verb) for verb in ("status", "history", "promote", "abort", "retry", "pause", "resume")),
        *(("exceptions", verb) for verb in ("list", "show", "retry", "approve", "edit", "discard", "reject")),
    }
    for path in reaching:
        command: click.Command | None = main
        for name in path:
            assert isinstance(command, click.Group)
            command = command.get_command(ctx, name)
        assert command is not None, path
        flags = {opt for p in command.params for opt in getattr(p, "opts", [])}
        assert {"--kubeconfig", "--context", "-n", "--namespace"} <= flags, path
    for path in (("status",), ("exceptions", "list")):
        group = main.get_command(ctx, path[0])
        assert group is not None
        command = group.get_command(ctx, path[1]) if isinstance(group, click.Group) else group
        assert command is not None
        assert {"-A", "--all-namespaces"} <= {opt for p in command.params for opt in getattr(p, "opts", [])}


def test_exceptions_show_prints_time_text_payloads_and_candidates_without_yaml() -> None:
    from onceflow_operator.cli.exceptions import render_exception

    text = render_exception(
        {
            "sequence": 12,
            "namespace": "shop",
            "integration": "customer-sync",
            "revision": "customer-sync-abc",
            "reason": "ApprovalRequired",
            "step": "dedupe",
            "error": "possible duplicate",
            "businessKey": "customer/DE1",
            "time": "2026-05-04T10:11:12.131415+00:00",
            "decision": None,
            "suggestion": None,
            "payload": {"name": "Müller GmbH", "city": "Köln"},
            "candidates": [{"name": "Mueller GmbH", "city": "Köln"}],
        }
    )
    assert "Parked        2026-05-04T10:11:12.131415+00:00" in text
    assert '    "city": "Köln"' in text
    assert "Decision      waiting" in text
    assert "Candidates    1" in text
    assert "- " not in text  # no YAML list under -o table
    assert "\\x" not in text


def test_durations_on_the_cli_accept_days_and_the_api_keeps_gos_units() -> None:
    from onceflow_runner.contract.durations import parse_duration

    assert parse_duration("1d", days=True) == 86400
    assert parse_duration("2d12h", days=True) == 216000
    with pytest.raises(ValueError, match="not a duration such as 500ms"):
        parse_duration("1d")
    result = CliRunner().invoke(main, ["exceptions", "list", "--older-than", "1w", "-n", "x"])
    assert result.exit_code == 2
    assert "'1w' is not a duration such as 30m, 24h, 1d or 2d12h" in result.output


@pytest.mark.parametrize(
    "periods",
    [["--lease-renew", "20"], ["--lease-retry", "5"], ["--lease-retry", "0"], ["--lease-duration", "-1"]],
)
def test_lease_periods_that_would_let_two_operators_act_are_refused_at_start(periods: list[str]) -> None:
    """A renewal slower than the lease (or a standby trying faster than nothing) lets a standby take
    the Lease from a live leader: refused in one line before anything starts."""
    result = CliRunner().invoke(main, ["operator", "-A", "--leader-elect", *periods])
    assert result.exit_code == 2
    assert "--lease-retry < --lease-renew < --lease-duration, all above 0" in result.output
    assert "Traceback" not in result.output
