"""`onceflow validate`, `crds` and `test`: offline checks of manifests, the generated CRDs, golden fixtures."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from onceflow_operator.cli.output import expand_paths, manifests_option

__all__ = ["crds", "test_workflow", "validate"]


@click.command()
@manifests_option("Manifest file or folder (repeatable).")
@click.option(
    "-n",
    "--namespace",
    default=None,
    help="Namespace the manifests will be applied in (a manifest's own metadata.namespace wins); "
    "checks that trigger subjects stay inside it.",
)
@click.option(
    "--external",
    "external",
    multiple=True,
    type=click.Choice(["Connector", "SyncPolicy", "Secret"], case_sensitive=False),
    help="A kind whose objects exist outside the given files (in the cluster, from a vault): names of "
    "that kind not among the files are not reported (repeatable).",
)
def validate(files: tuple[Path, ...], namespace: str | None, external: tuple[str, ...]) -> None:
    """Check Onceflow manifests offline: schema, CEL rules, step references, names between manifests.

    Every Connector, SyncPolicy and Secret a manifest names must be among the files (in its
    namespace, of the right type; a Secret labelled for Onceflow, with the key named), unless its
    kind is given with --external. Prints one line per problem as
    `file:Kind/name: field.path: message` and exits 1 when any is found.
    """
    from onceflow_operator.compiler.validation import validate_paths

    checked, problems = validate_paths(expand_paths(files), namespace, external=external)
    for problem in problems:
        click.echo(str(problem))
    if problems:
        click.echo(f"{len(problems)} problem(s) in {checked} manifest(s)", err=True)
        sys.exit(1)
    if checked == 0:
        click.echo(
            "no Onceflow manifests (apiVersion onceflow.io/...) in the files given; nothing was checked", err=True
        )
        sys.exit(1)
    click.echo(f"{checked} manifest(s) valid")


@click.command()
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
    from onceflow_operator.gen.crdfiles import crd_files

    files = crd_files()
    if not output_dirs:
        click.echo("---\n".join(files.values()), nl=False)
        return
    for folder in output_dirs:
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (folder / name).write_text(text)
            click.echo(f"wrote {folder / name}")


@click.command("test")
@manifests_option("One Integration, plus the Connectors and SyncPolicy it uses (missing Connectors are stubbed).")
@click.option(
    "--fixtures",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder of fixture YAML files: input, responses, expect.",
)
def test_workflow(files: tuple[Path, ...], fixtures: Path) -> None:
    """Run golden fixtures through an Integration with no network; exit 1 when any fails."""
    from onceflow_operator.compiler.planner import InvalidSpec
    from onceflow_operator.dev.workflowtest import run_fixtures
    from onceflow_runner.errors import OnceflowError

    try:
        results = run_fixtures([p for p in expand_paths(files) if fixtures not in p.parents], fixtures)
    except (InvalidSpec, OnceflowError) as exc:
        click.echo(f"onceflow test: {exc}", err=True)
        sys.exit(1)
    for result in results:
        click.echo(f"{'PASS' if not result.problems else 'FAIL'} {result.name}")
        for problem in result.problems:
            click.echo(f"  {problem}")
    failed = sum(1 for r in results if r.problems)
    click.echo(f"{len(results) - failed} passed, {failed} failed")
    if failed or not results:
        sys.exit(1)
