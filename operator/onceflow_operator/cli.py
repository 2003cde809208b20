"""The `onceflow` command (also installed as `kubectl-onceflow`, so `kubectl onceflow` works).

Subcommands import what they need when they run: `onceflow runner` must start without loading
the operator's dependencies.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

__all__ = ["main"]


def expand_paths(files: tuple[Path, ...]) -> list[Path]:
    """Files as given; folders as their YAML files, recursively, in a stable order."""
    paths: list[Path] = []
    for f in files:
        paths += sorted(p for p in f.rglob("*") if p.suffix in {".yaml", ".yml"}) if f.is_dir() else [f]
    return paths


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

    checked, problems = validate_paths(expand_paths(files))
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


_NATS = click.option("--nats", "nats_url", default="nats://127.0.0.1:4222", show_default=True, help="NATS URL.")
_SECRETS = click.option(
    "--secrets-dir",
    default="/var/run/onceflow/secrets",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where Secrets are mounted, one folder per Secret.",
)
_HOST = click.option("--host", default="0.0.0.0", show_default=True, help="Address to serve HTTP on.")


@main.command()
@click.option("--plan", "plan_path", required=True, type=click.Path(path_type=Path), help="Plan JSON file.")
@_NATS
@_SECRETS
@_HOST
@click.option("--port", default=9090, show_default=True, help="Port for /metrics, /healthz, /readyz.")
def runner(plan_path: Path, nats_url: str, secrets_dir: Path, host: str, port: int) -> None:
    """Run one Integration revision's plan (the data plane). Exit 2 on an unusable plan."""
    from onceflow_runner.main import run_runner

    sys.exit(run_runner(plan_path, nats_url, secrets_dir, host, port))


@main.command()
@click.option("--plan", "plan_path", required=True, type=click.Path(path_type=Path), help="Gateway plan JSON file.")
@_NATS
@_SECRETS
@_HOST
@click.option("--port", default=8080, show_default=True, help="Port for webhooks, /healthz, /readyz, /metrics.")
def gateway(plan_path: Path, nats_url: str, secrets_dir: Path, host: str, port: int) -> None:
    """Serve one webhook Connector: check signatures, store in JetStream, answer 2xx after the PubAck."""
    from onceflow_runner.main import run_gateway

    sys.exit(run_gateway(plan_path, nats_url, secrets_dir, host, port))


@main.command()
@click.option("--plan", "plan_path", required=True, type=click.Path(path_type=Path), help="Reconcile plan JSON file.")
@_NATS
@_SECRETS
def reconcile(plan_path: Path, nats_url: str, secrets_dir: Path) -> None:
    """Compare a SyncPolicy's entity between its two systems once; publish the drift (a CronJob runs this)."""
    from onceflow_runner.main import run_reconcile_job

    sys.exit(run_reconcile_job(plan_path, nats_url, secrets_dir))


@main.group()
def local() -> None:
    """Run Connectors and Integrations without a cluster."""


@local.command("run")
@click.option(
    "-f",
    "--filename",
    "files",
    multiple=True,
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="Manifests: Connectors, Secrets, Integrations, SyncPolicies.",
)
@_NATS
@click.option("--port", default=8080, show_default=True, help="First gateway port; one port per webhook Connector.")
@click.option("-n", "--namespace", default="default", show_default=True, help="Namespace the objects act in.")
@click.option("--base-url", "base_urls", multiple=True, help="CONNECTOR=URL: call this URL instead (e.g. a sandbox).")
def local_run(files: tuple[Path, ...], nats_url: str, port: int, namespace: str, base_urls: tuple[str, ...]) -> None:
    """Run the gateways and runners for these manifests as local processes until Ctrl-C."""
    from .localrun import LocalRun, LocalRunError

    paths = expand_paths(files)
    try:
        overrides = dict(item.split("=", 1) for item in base_urls)
        run = LocalRun.from_paths(paths, namespace=namespace, nats_url=nats_url, first_port=port, base_urls=overrides)
    except LocalRunError as exc:
        click.echo(f"onceflow local run: {exc}", err=True)
        sys.exit(1)
    run.serve_forever()


@main.command()
@click.option("--erp-port", default=8100, show_default=True)
@click.option(
    "--recorder",
    "recorders",
    multiple=True,
    default=("wms=8101", "shop=8102", "portal=8103", "accounting=8104"),
    show_default=True,
    help="NAME=PORT of receiving systems.",
)
def sandbox(erp_port: int, recorders: tuple[str, ...]) -> None:
    """Start the sandbox ERP and receiving systems on 127.0.0.1 until Ctrl-C."""
    import asyncio

    from onceflow_runner.sandbox import ErpSandbox, RecorderSandbox

    async def serve() -> None:
        servers: list[ErpSandbox | RecorderSandbox] = [ErpSandbox(port=erp_port)]
        for spec in recorders:
            name, _, port = spec.partition("=")
            servers.append(RecorderSandbox(name, port=int(port)))
        for server in servers:
            await server.start()
            click.echo(f"{server.name}: {server.url}")
        await asyncio.Event().wait()

    asyncio.run(serve())


@main.command()
@click.option("-n", "--namespace", "namespaces", multiple=True, help="Watch this namespace (repeatable).")
@click.option("-A", "--all-namespaces", is_flag=True, help="Watch every namespace (needs the ClusterRole).")
@click.option("--liveness", default="http://0.0.0.0:8081/healthz", show_default=True, help="Kopf liveness endpoint.")
@click.option("--metrics-port", default=8080, show_default=True, help="Port for Prometheus /metrics.")
def operator(namespaces: tuple[str, ...], all_namespaces: bool, liveness: str, metrics_port: int) -> None:
    """Run the operator (one replica; Kopf peering is not used: deploy with strategy Recreate)."""
    if not namespaces and not all_namespaces:
        raise click.UsageError("give --namespace NS (repeatable) or --all-namespaces")
    import kopf
    from prometheus_client import start_http_server

    from . import handlers  # noqa: F401  (registers the handlers)

    start_http_server(metrics_port)
    kopf.run(standalone=True, clusterwide=all_namespaces, namespaces=list(namespaces), liveness_endpoint=liveness)


@main.command("test")
@click.option(
    "-f",
    "--filename",
    "files",
    multiple=True,
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="One Integration, plus the Connectors and SyncPolicy it uses (missing Connectors are stubbed).",
)
@click.option(
    "--fixtures",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder of fixture YAML files: input, responses, expect.",
)
def test_workflow(files: tuple[Path, ...], fixtures: Path) -> None:
    """Run golden fixtures through an Integration with no network; exit 1 when any fails."""
    from onceflow_runner.errors import OnceflowError

    from .planner import InvalidSpec
    from .workflowtest import run_fixtures

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


if __name__ == "__main__":
    main()
