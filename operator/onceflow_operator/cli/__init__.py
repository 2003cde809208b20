"""The `onceflow` command (also installed as `kubectl-onceflow`, so `kubectl onceflow` works).

One module per command group, plus `output` for what they share (options, how rows print):

- `validate`: `validate`, `crds`, `test` (offline).
- `dataplane`: `runner`, `gateway`, `edi-inbound`, `drift-check` (and its old name `reconcile`, hidden), `sandbox`,
  `local run`.
- `operator`: `operator`.
- `dev`: `dev demo|up|down`.
- `exceptions`: `exceptions ...`, `trace` (over NATS).
- `status`, `rollout` (with `rollout_text`), `console` (over the Kubernetes API).
- `send`: one signed webhook to a Connector's gateway, as its sender would post it.
- `match`: `match train|eval`, a SyncPolicy's probabilistic matching estimated and measured.

Nothing is imported before it is needed: `main` imports a command's module only when that
command is looked up (`--help` of the whole group looks up every one), and each command imports
its dependencies when it runs. So `onceflow runner` loads click, `cli.dataplane` and the runner
package, never the operator's dependencies (kopf, the Kubernetes client).
"""

from __future__ import annotations

import importlib

import click

__all__ = ["main"]

#: Command name -> (module under onceflow_operator.cli, attribute), imported on first lookup.
_COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("validate", "validate"),
    "crds": ("validate", "crds"),
    "test": ("validate", "test_workflow"),
    "runner": ("dataplane", "runner"),
    "gateway": ("dataplane", "gateway"),
    "edi-inbound": ("dataplane", "edi_inbound"),
    "drift-check": ("dataplane", "drift_check"),
    "reconcile": ("dataplane", "reconcile"),
    "local": ("dataplane", "local"),
    "sandbox": ("dataplane", "sandbox"),
    "operator": ("operator", "operator"),
    "dev": ("dev", "dev"),
    "exceptions": ("exceptions", "exceptions"),
    "trace": ("exceptions", "trace"),
    "status": ("status", "status"),
    "rollout": ("rollout", "rollout"),
    "console": ("console", "console"),
    "send": ("send", "send"),
    "match": ("match", "match"),
    "nats-auth": ("natsauth", "nats_auth"),
}


class _LazyGroup(click.Group):
    """A click group whose commands live in other modules, imported when a command is looked up."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in _COMMANDS:
            return super().get_command(ctx, cmd_name)
        module, attribute = _COMMANDS[cmd_name]
        command = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{__name__}.{module}.{attribute} is not a click command")
        return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="onceflow")
def main() -> None:
    """Onceflow: key each business record once; let it flow to every system that needs it."""
