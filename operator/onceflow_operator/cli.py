"""The `onceflow` command (also installed as `kubectl-onceflow`, so `kubectl onceflow` works).

Subcommands import what they need when they run: `onceflow runner` must start without loading
the operator's dependencies.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="onceflow")
def main() -> None:
    """Onceflow: key each business record once; let it flow to every system that needs it."""


@main.command()
@click.option(
    "-f",
    "--filename",
    "files",
    multiple=True,
    required=True,
    type=click.Path(exists=True, dir_okay=True, path_type=Path),
    help="Manifest file or folder (repeatable).",
)
def validate(files: tuple[Path, ...]) -> None:
    """Check Onceflow manifests offline: schema, CEL rules, step references.

    Prints one line per problem as `file:Kind/name: field.path: message` and exits 1 when any
    is found.
    """
    from .validation import validate_paths

    paths: list[Path] = []
    for f in files:
        paths += sorted(p for p in f.rglob("*") if p.suffix in {".yaml", ".yml"}) if f.is_dir() else [f]
    checked, problems = validate_paths(paths)
    for problem in problems:
        click.echo(str(problem))
    if problems:
        click.echo(f"{len(problems)} problem(s) in {checked} manifest(s)", err=True)
        sys.exit(1)
    click.echo(f"{checked} manifest(s) valid")


@main.command()
@click.option(
    "-o",
    "--output-dir",
    "output_dirs",
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Write one YAML file per CRD here (repeatable); print to stdout when absent.",
)
def crds(output_dirs: tuple[Path, ...]) -> None:
    """Print or write the CustomResourceDefinitions generated from the API models."""
    from .crdfiles import crd_files

    files = crd_files()
    if not output_dirs:
        click.echo("---\n".join(files.values()), nl=False)
        return
    for folder in output_dirs:
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (folder / name).write_text(text)
            click.echo(f"wrote {folder / name}")
