"""`onceflow dev`: the embedded system (real kube-apiserver + etcd, nats-server, local processes).

`demo` plays the scenarios once and stops; `up` starts it in the background (through the hidden
`serve`), `down` stops it.
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
    """Start everything in the background and apply the examples; print how to reach it."""
    from onceflow_operator.dev.devenv import DevError, default_state, up

    folder = state or default_state()
    try:
        info = up(examples.resolve(), folder)
    except DevError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"onceflow dev is up (pid {info['pid']}, namespace {info['namespace']}).")
    click.echo(f"  export KUBECONFIG={info['kubeconfig']}")
    click.echo(f"  export ONCEFLOW_NATS_URL={info['nats']}")
    click.echo(f"  kubectl get onceflow -n {info['namespace']}")
    for name, url in sorted({**info["sandboxes"], **info["gateways"]}.items()):
        click.echo(f"  {name:14s} {url}")
    click.echo("Stop it with: onceflow dev down")


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
