"""The `onceflow` command (also installed as `kubectl-onceflow`, so `kubectl onceflow` works).

One module per command group, plus `output` for what they share (options, how rows print):

- `validate`: `validate`, `crds`, `test` (offline).
- `dataplane`: `runner`, `gateway`, `reconcile`, `sandbox`, `local run`.
- `operator`: `operator`.
- `dev`: `dev demo|up|down`.
- `exceptions`: `exceptions ...`, `trace` (over NATS).
- `status`, `rollout` (with `rollout_text`), `console` (over the Kubernetes API).

Importing this package loads click and these modules only: each command imports what it needs
when it runs, so `onceflow runner` starts without the operator's dependencies.
"""

from __future__ import annotations

import click

from onceflow_operator.cli.console import console
from onceflow_operator.cli.dataplane import gateway, local, reconcile, runner, sandbox
from onceflow_operator.cli.dev import dev
from onceflow_operator.cli.exceptions import exceptions, trace
from onceflow_operator.cli.operator import operator
from onceflow_operator.cli.rollout import rollout
from onceflow_operator.cli.status import status
from onceflow_operator.cli.validate import crds, test_workflow, validate

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="onceflow")
def main() -> None:
    """Onceflow: key each business record once; let it flow to every system that needs it."""


for _command in (
    validate,
    crds,
    runner,
    gateway,
    reconcile,
    local,
    sandbox,
    operator,
    dev,
    test_workflow,
    exceptions,
    status,
    trace,
    rollout,
    console,
):
    main.add_command(_command)
