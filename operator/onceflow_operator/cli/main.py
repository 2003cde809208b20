"""The `onceflow` command (also installed as `kubectl-onceflow`, so `kubectl onceflow` works).

Subcommands import what they need when they run: `onceflow runner` must start without loading
the operator's dependencies.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

import click

Action = Literal["retry", "approve", "edit", "discard", "reject"]

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
    from onceflow_operator.compiler.validation import validate_paths

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
@click.option(
    "--lane",
    type=click.Choice(["main", "canary"]),
    default="main",
    show_default=True,
    help="Which consumer to read: the stable lane or a rollout's canary lane.",
)
def runner(plan_path: Path, nats_url: str, secrets_dir: Path, host: str, port: int, lane: str) -> None:
    """Run one Integration revision's plan (the data plane). Exit 2 on an unusable plan."""
    from onceflow_runner.main import run_runner

    sys.exit(run_runner(plan_path, nats_url, secrets_dir, host, port, "canary" if lane == "canary" else "main"))


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
    from onceflow_operator.dev.localrun import LocalRun, LocalRunError

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
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 in a pod).")
def sandbox(erp_port: int, recorders: tuple[str, ...], host: str) -> None:
    """Start the sandbox ERP and receiving systems until Ctrl-C."""
    import asyncio

    from onceflow_runner.testing.sandbox import ErpSandbox, RecorderSandbox

    async def serve() -> None:
        servers: list[ErpSandbox | RecorderSandbox] = [ErpSandbox(host=host, port=erp_port)]
        for spec in recorders:
            name, _, port = spec.partition("=")
            servers.append(RecorderSandbox(name, host=host, port=int(port)))
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
    from onceflow_operator.controller.run import run_operator

    run_operator(
        namespaces=list(namespaces), all_namespaces=all_namespaces, liveness=liveness, metrics_port=metrics_port
    )


@main.group()
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


_NATS_ENV = click.option(
    "--nats",
    "nats_url",
    envvar="ONCEFLOW_NATS_URL",
    default="nats://127.0.0.1:4222",
    show_default=True,
    help="NATS URL (or $ONCEFLOW_NATS_URL).",
)
_NS = click.option("-n", "--namespace", default="default", show_default=True, help="Namespace.")
_OUTPUT = click.option(
    "-o", "--output", type=click.Choice(["table", "json", "yaml"]), default="table", show_default=True
)


def _who(explicit: str | None) -> str:
    """Who decides: --as, else the kubeconfig user, else the OS user."""
    import getpass
    import os

    import yaml

    if explicit:
        return explicit
    try:
        config = yaml.safe_load(Path(os.environ.get("KUBECONFIG", Path.home() / ".kube/config")).read_text())
        context = next(c["context"] for c in config["contexts"] if c["name"] == config["current-context"])
        return str(context["user"])
    except (OSError, KeyError, StopIteration, TypeError):
        return getpass.getuser()


def _with_jetstream(nats_url: str, work: Any) -> Any:
    import asyncio

    from onceflow_runner.adapters import natsio

    async def run() -> Any:
        nc = await natsio.connect(nats_url, name="onceflow-cli")
        try:
            return await work(nc.jetstream(timeout=5))
        finally:
            await nc.close()

    return asyncio.run(run())


def _emit(rows: list[dict[str, Any]], output: str, columns: list[str]) -> None:
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


@main.group()
def exceptions() -> None:
    """Records waiting for a person: list, show, and decide (retry, approve, edit, discard, reject)."""


@exceptions.command("list")
@_NS
@_NATS_ENV
@_OUTPUT
@click.option("--integration", help="Only this Integration.")
@click.option("--reason", help="Only this reason, e.g. InvalidRecord, ApprovalRequired.")
@click.option("--key", "business_key", help="Only this business key.")
@click.option("--step", help="Only exceptions raised at this step.")
@click.option("--older-than", help="Only exceptions parked longer ago than this, e.g. 30m, 24h.")
@click.option("--all", "include_decided", is_flag=True, help="Include exceptions already decided.")
def exceptions_list(
    namespace: str,
    nats_url: str,
    output: str,
    integration: str | None,
    reason: str | None,
    business_key: str | None,
    step: str | None,
    older_than: str | None,
    include_decided: bool,
) -> None:
    """List exceptions, oldest first."""
    from datetime import UTC, datetime, timedelta

    from onceflow_operator.review.exceptions import list_exceptions
    from onceflow_runner.contract.durations import parse_duration

    try:
        cutoff = datetime.now(UTC) - timedelta(seconds=parse_duration(older_than)) if older_than else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--older-than") from None

    records = _with_jetstream(
        nats_url,
        lambda js: list_exceptions(
            js,
            namespace,
            integration=integration,
            reason=reason,
            business_key=business_key,
            include_decided=include_decided,
        ),
    )
    if step:
        records = [r for r in records if r.step == step]
    if cutoff is not None:
        records = [r for r in records if r.time and datetime.fromisoformat(r.time) < cutoff]
    rows = [
        r.summary() | {"decision": (r.decision or {}).get("action", ""), "decidedBy": (r.decision or {}).get("who", "")}
        for r in records
    ]
    _emit(rows, output, ["sequence", "integration", "reason", "step", "businessKey", "time", "decision", "error"])


@exceptions.command("show")
@click.argument("sequence", type=int)
@_NS
@_NATS_ENV
@_OUTPUT
def exceptions_show(sequence: int, namespace: str, nats_url: str, output: str) -> None:
    """Show one exception with its payload and any duplicate candidates."""
    from onceflow_operator.review.exceptions import ReviewError, get_exception

    try:
        record = _with_jetstream(nats_url, lambda js: get_exception(js, namespace, sequence))
    except ReviewError as exc:
        raise click.ClickException(str(exc)) from None
    row = record.summary() | {"payload": record.payload.decode(errors="replace"), "candidates": record.candidates}
    _emit([row], "yaml" if output == "table" else output, [])


def _decide(
    action: Action,
    sequence: int,
    namespace: str,
    nats_url: str,
    who: str | None,
    why: str,
    payload: bytes | None = None,
) -> None:
    from onceflow_operator.review.exceptions import ReviewError, decide

    try:
        decision = _with_jetstream(
            nats_url, lambda js: decide(js, namespace, sequence, action, who=_who(who), why=why, payload=payload)
        )
    except ReviewError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"exception {sequence}: {decision.action} by {decision.who}")


_AS = click.option("--as", "who", help="Who decides (default: the kubeconfig user).")
_WHY = click.option("-m", "--reason", "why", required=True, help="Why: kept in the audit trail.")

_ACTIONS: tuple[tuple[Action, str], ...] = (
    ("retry", "Send the record through its Integration again, unchanged."),
    ("approve", "Approve a parked record (duplicate or pricing check) and let it continue."),
    ("discard", "Close the exception without sending anything (e.g. a test record)."),
    ("reject", "Refuse a parked record for good."),
)
for _action, _help in _ACTIONS:

    def _make(action: Action) -> Any:
        @click.argument("sequence", type=int)
        @_NS
        @_NATS_ENV
        @_AS
        @_WHY
        def command(sequence: int, namespace: str, nats_url: str, who: str | None, why: str) -> None:
            _decide(action, sequence, namespace, nats_url, who, why)

        return command

    exceptions.command(_action, help=_help)(_make(_action))


@exceptions.command("edit")
@click.argument("sequence", type=int)
@_NS
@_NATS_ENV
@_AS
@_WHY
@click.option(
    "--payload-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Corrected payload; without it $EDITOR opens the original.",
)
def exceptions_edit(
    sequence: int, namespace: str, nats_url: str, who: str | None, why: str, payload_file: Path | None
) -> None:
    """Correct the payload, check it is still JSON, and send it through its Integration again."""
    import json

    from onceflow_operator.review.exceptions import get_exception

    if payload_file is not None:
        payload = payload_file.read_bytes()
    else:
        record = _with_jetstream(nats_url, lambda js: get_exception(js, namespace, sequence))
        edited = click.edit(record.payload.decode(errors="replace"), extension=".json")
        if edited is None:
            raise click.ClickException("nothing changed; exception left as it is")
        payload = edited.encode()
    try:
        json.loads(payload)
    except ValueError as exc:
        raise click.ClickException(f"the edited payload is not JSON ({exc}); nothing was sent") from None
    _decide("edit", sequence, namespace, nats_url, who, why, payload)


@main.command()
@click.option("-n", "--namespace", default=None, help="Namespace (default: all namespaces).")
@_OUTPUT
@click.option("--kubeconfig", envvar="KUBECONFIG", default=None, help="Kubeconfig (default: $KUBECONFIG).")
def status(namespace: str | None, output: str, kubeconfig: str | None) -> None:
    """Every Connector, Integration and SyncPolicy: Ready, revision, rollout, business figures."""
    import asyncio

    from onceflow_operator.clients.kube import KubeClient

    async def collect() -> list[dict[str, Any]]:
        kube = KubeClient.from_environment(kubeconfig)
        rows = []
        try:
            for kind in ("Connector", "Integration", "SyncPolicy"):
                for obj in await kube.list("onceflow.io/v1alpha1", kind, namespace):
                    st = obj.get("status") or {}
                    ready: dict[str, Any] = next((c for c in st.get("conditions", []) if c["type"] == "Ready"), {})
                    figures = st.get("figures") or {}
                    rows.append(
                        {
                            "kind": kind,
                            "namespace": obj["metadata"]["namespace"],
                            "name": obj["metadata"]["name"],
                            "ready": ready.get("status", "Unknown"),
                            "reason": ready.get("reason", ""),
                            "revision": st.get("revision", ""),
                            "phase": st.get("phase", ""),
                            "weight": st.get("canaryWeight", ""),
                            "processed": figures.get("processed", ""),
                            "failed": figures.get("failed", ""),
                            "exceptions": figures.get("exceptions", ""),
                            "deadLettered": figures.get("deadLettered", ""),
                            "lag": figures.get("consumerLag", ""),
                            "drift": (st.get("drift") or {}).get("total", ""),
                        }
                    )
        finally:
            await kube.close()
        return rows

    _emit(
        asyncio.run(collect()),
        output,
        [
            "kind",
            "namespace",
            "name",
            "ready",
            "reason",
            "revision",
            "phase",
            "processed",
            "failed",
            "exceptions",
            "deadLettered",
            "lag",
            "drift",
        ],
    )


@main.command()
@click.argument("business_key")
@_NS
@_NATS_ENV
@_OUTPUT
def trace(business_key: str, namespace: str, nats_url: str, output: str) -> None:
    """The life of one record: every step outcome, exception and decision, in time order."""
    from onceflow_operator.review.exceptions import trace as trace_key

    events = _with_jetstream(nats_url, lambda js: trace_key(js, namespace, business_key))
    if not events:
        raise click.ClickException(f"nothing recorded for {business_key!r} in {namespace}")
    rows = [
        {
            "time": e.get("time"),
            "integration": e.get("integration"),
            "revision": e.get("revision", ""),
            "what": e.get("outcome") or e.get("reason"),
            "detail": e.get("detail") or e.get("error", ""),
            "steps": " ".join(f"{s['step']}={s['outcome']}" for s in e.get("steps", [])),
        }
        for e in events
    ]
    _emit(rows if output == "table" else events, output, ["time", "integration", "revision", "what", "steps", "detail"])


if __name__ == "__main__":
    main()


_KUBECONFIG = click.option("--kubeconfig", envvar="KUBECONFIG", default=None, help="Kubeconfig (default: $KUBECONFIG).")


@main.group()
def rollout() -> None:
    """See and steer an Integration's rollout: status, history, promote, abort, retry, pause, resume.

    Verbs are an annotation the operator consumes, never a spec edit, so Argo CD's self-heal
    does not undo them.
    """


async def _integration_and_revisions(
    kube: Any, namespace: str, name: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    obj = await kube.get("onceflow.io/v1alpha1", "Integration", namespace, name)
    if obj is None:
        raise click.ClickException(f"Integration {name} not found in namespace {namespace}")
    revisions = await kube.list("apps/v1", "ControllerRevision", namespace, selector=f"onceflow.io/integration={name}")
    return obj, revisions


@rollout.command("status")
@click.argument("name")
@_NS
@_KUBECONFIG
@click.option("-w", "--watch", is_flag=True, help="Print again on every change until the rollout settles.")
@click.option("--timeout", default=600.0, show_default=True, help="Seconds --watch waits at most.")
def rollout_status(name: str, namespace: str, kubeconfig: str | None, watch: bool, timeout: float) -> None:
    """Revisions, weight, canary steps (✔ done, ▶ current), analysis and conditions.

    With --watch, exit 0 when Ready, 1 when the rollout is aborted or stalled, 2 on timeout.
    """
    import asyncio
    import time

    from onceflow_operator.cli.rollout_text import render_status
    from onceflow_operator.clients.kube import KubeClient

    async def show() -> int:
        kube = KubeClient.from_environment(kubeconfig)
        shown, deadline = "", time.monotonic() + timeout
        try:
            while True:
                obj, revisions = await _integration_and_revisions(kube, namespace, name)
                numbers = {r["metadata"]["name"]: int(r["revision"]) for r in revisions}
                text = render_status(obj, numbers)
                if text != shown:
                    click.echo(("\n" if shown else "") + text)
                    shown = text
                if not watch:
                    return 0
                conditions = {c["type"]: c for c in (obj.get("status") or {}).get("conditions", [])}
                current = (obj.get("status") or {}).get("observedGeneration") == obj["metadata"].get("generation")
                if current and conditions.get("Ready", {}).get("status") == "True":
                    return 0
                if current and "Stalled" in conditions:
                    return 1
                if time.monotonic() > deadline:
                    return 2
                await asyncio.sleep(1.0)
        finally:
            await kube.close()

    sys.exit(asyncio.run(show()))


@rollout.command("history")
@click.argument("name")
@_NS
@_KUBECONFIG
@_OUTPUT
def rollout_history(name: str, namespace: str, kubeconfig: str | None, output: str) -> None:
    """The Integration's revisions (ControllerRevisions), newest first."""
    import asyncio

    from onceflow_operator.cli.rollout_text import history_rows
    from onceflow_operator.clients.kube import KubeClient

    async def collect() -> list[dict[str, Any]]:
        kube = KubeClient.from_environment(kubeconfig)
        try:
            obj, revisions = await _integration_and_revisions(kube, namespace, name)
        finally:
            await kube.close()
        return history_rows(obj, revisions)

    _emit(asyncio.run(collect()), output, ["revision", "name", "version", "created", "status"])


def _verb(action: str, summary: str) -> None:
    @rollout.command(action, help=summary)
    @click.argument("name")
    @_NS
    @_KUBECONFIG
    def command(name: str, namespace: str, kubeconfig: str | None) -> None:
        import asyncio

        from onceflow_operator.clients.kube import KubeClient, KubeError
        from onceflow_operator.controller.handlers import ACTION_ANNOTATION

        async def send() -> None:
            kube = KubeClient.from_environment(kubeconfig)
            try:
                await kube.annotate("onceflow.io/v1alpha1", "Integration", namespace, name, {ACTION_ANNOTATION: action})
            except KubeError as exc:
                raise click.ClickException(f"could not {action} {namespace}/{name}: {exc}") from None
            finally:
                await kube.close()

        asyncio.run(send())
        click.echo(f"integration.onceflow.io/{name} {action} requested; `onceflow rollout status {name} -w` to follow")


for _verb_name, _verb_summary in (
    ("promote", "Finish the current pause or analysis step and go on with the next."),
    ("promote-full", "Skip the remaining steps: the canary revision becomes stable now."),
    ("abort", "Stop the canary: weight 0, the stable revision serves and finishes the canary's records."),
    ("retry", "Start an aborted revision's canary again from the first step."),
    ("pause", "Hold the rollout at its current step (records keep flowing at the current weight)."),
    ("resume", "Continue a paused rollout (also re-measures an inconclusive analysis)."),
):
    _verb(_verb_name, _verb_summary)


@main.command()
@click.option(
    "--auth",
    type=click.Choice(["token", "proxy"]),
    default="token",
    show_default=True,
    help="token: Kubernetes bearer tokens (TokenReview). proxy: trust X-Forwarded-User/-Groups from an OIDC proxy.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve on.")
@click.option("--port", default=8088, show_default=True, help="Port to serve on.")
@_NS
@_NATS_ENV
@_KUBECONFIG
def console(auth: str, host: str, port: int, namespace: str, nats_url: str, kubeconfig: str | None) -> None:
    """The review web page: exceptions waiting, one record with its candidates, and the decisions.

    Access follows the cluster's RBAC: `get` / `update` on `exceptions.onceflow.io` in the
    record's namespace (checked with a SubjectAccessReview per request).
    """
    from onceflow_operator.clients.kube import KubeClient
    from onceflow_operator.review.console import Console, serve

    mode: Literal["token", "proxy"] = "proxy" if auth == "proxy" else "token"
    app = Console(nats_url, KubeClient.from_environment(kubeconfig), auth=mode, default_namespace=namespace)
    click.echo(f"onceflow console on http://{host}:{port} (auth: {auth})")
    serve(app, host, port)
