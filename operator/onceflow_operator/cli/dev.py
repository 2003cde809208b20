"""`onceflow dev`: the embedded system (real kube-apiserver + etcd, nats-server, local processes).

`demo` plays the scenarios once and stops; `up` starts it in the background (through the hidden
`serve`) and prints how to reach it, `env` prints the exports for a shell, `down` stops it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

__all__ = ["dev"]


@click.group()
def dev() -> None:
    """The embedded system for development and evaluation (real control plane, local processes)."""


@dev.command("demo")
@click.option(
    "--examples",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=Path("examples"),
    show_default=True,
    help="The examples folder to apply.",
)
def dev_demo(examples: Path) -> None:
    """Start everything, play the three distribution scenarios, print what arrived where, stop."""
    from onceflow_operator.dev.controlplane import ControlPlaneError
    from onceflow_operator.dev.demo import main_demo

    try:
        sys.exit(main_demo(examples.resolve()))
    except ControlPlaneError as exc:
        raise click.ClickException(str(exc)) from None


_STATE = click.option(
    "--state",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the background system keeps its state (default ~/.cache/onceflow/dev).",
)
_EXAMPLES = click.option(
    "--examples",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=Path("examples"),
    show_default=True,
    help="The examples folder to apply.",
)


@dev.command("up")
@_EXAMPLES
@_STATE
def dev_up(examples: Path, state: Path | None) -> None:
    """Start everything in the background and apply the examples; print how to reach each part."""
    import shutil

    from onceflow_operator.dev.devenv import DevError, default_state, describe, up

    folder = state or default_state()
    try:
        info = up(examples.resolve(), folder)
    except DevError as exc:
        raise click.ClickException(str(exc)) from None
    bin_dir = Path(sys.executable).parent
    plugin = shutil.which("kubectl-onceflow")
    on_path = plugin is not None and Path(plugin).parent.resolve() == bin_dir.resolve()
    click.echo("\n".join(describe(info, bin_dir=bin_dir, on_path=on_path)))


@dev.command("env")
@_STATE
def dev_env(state: Path | None) -> None:
    """Print the exports that point a shell at the running system: eval "$(onceflow dev env)"."""
    from onceflow_operator.dev.devenv import default_state, running, shell_exports

    info = running(state or default_state())
    if info is None:
        raise click.ClickException("onceflow dev is not running; start it with: onceflow dev up")
    click.echo("\n".join(shell_exports(info)))


@dev.command("down")
@_STATE
def dev_down(state: Path | None) -> None:
    """Stop the background system; no process of it is left behind."""
    from onceflow_operator.dev.devenv import default_state, down

    stopped = down(state or default_state())
    click.echo("onceflow dev stopped" if stopped else "onceflow dev was not running")


@dev.command("serve", hidden=True)
@_EXAMPLES
@_STATE
def dev_serve(examples: Path, state: Path | None) -> None:
    """What `dev up` runs in the background."""
    from onceflow_operator.dev.demo import main_serve
    from onceflow_operator.dev.devenv import default_state

    main_serve(examples.resolve(), state or default_state())
