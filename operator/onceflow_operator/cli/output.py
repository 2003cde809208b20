"""What the commands share: the options several groups take, the `-f` file expansion, and how rows print.

Rows print as an aligned table (values cut at 60 characters), as JSON or as YAML, chosen by `-o`.
Only click is imported here; json and yaml load when a command prints.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from click.decorators import FC

__all__ = [
    "emit_rows",
    "expand_paths",
    "kubeconfig_option",
    "manifests_option",
    "namespace_option",
    "nats_option",
    "output_option",
]

#: `--nats` for the commands people run (review, trace, console): $ONCEFLOW_NATS_URL is honoured.
nats_option = click.option(
    "--nats",
    "nats_url",
    envvar="ONCEFLOW_NATS_URL",
    default="nats://127.0.0.1:4222",
    show_default=True,
    help="NATS URL (or $ONCEFLOW_NATS_URL).",
)
namespace_option = click.option("-n", "--namespace", default="default", show_default=True, help="Namespace.")
output_option = click.option(
    "-o", "--output", type=click.Choice(["table", "json", "yaml"]), default="table", show_default=True
)
kubeconfig_option = click.option(
    "--kubeconfig", envvar="KUBECONFIG", default=None, help="Kubeconfig (default: $KUBECONFIG)."
)


def manifests_option(help_text: str) -> Callable[[FC], FC]:
    """`-f/--filename FILE|FOLDER` (repeatable, required), as kubectl spells it."""
    return click.option(
        "-f",
        "--filename",
        "files",
        multiple=True,
        required=True,
        type=click.Path(exists=True, path_type=Path),
        help=help_text,
    )


def expand_paths(files: tuple[Path, ...]) -> list[Path]:
    """Files as given; folders as their YAML files, recursively, in a stable order."""
    paths: list[Path] = []
    for f in files:
        paths += sorted(p for p in f.rglob("*") if p.suffix in {".yaml", ".yml"}) if f.is_dir() else [f]
    return paths


def emit_rows(rows: list[dict[str, Any]], output: str, columns: list[str]) -> None:
    """Print rows as `output` says: json, yaml, or a table of `columns` (headers upper-cased)."""
    import json

    import yaml

    if output == "json":
        click.echo(json.dumps(rows, indent=2, default=str))
    elif output == "yaml":
        click.echo(yaml.safe_dump(rows, sort_keys=False))
    else:
        widths = {c: max([len(c), *(len(str(r.get(c, ""))[:60]) for r in rows)]) for c in columns}
        click.echo("  ".join(c.upper().ljust(widths[c]) for c in columns))
        for row in rows:
            click.echo("  ".join(str(row.get(c, ""))[:60].ljust(widths[c]) for c in columns))
