"""`onceflow exceptions` (list, show, and people's decisions on parked records) and `onceflow trace`.

Both read the review streams over NATS through `review.exceptions`; a decision records who made
it (`--as`, else the kubeconfig user, else the OS user) and why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from onceflow_operator.cli.output import emit_rows, namespace_option, nats_option, output_option
from onceflow_runner.contract.messages import ReviewAction

__all__ = ["exceptions", "trace"]


def _who(explicit: str | None) -> str:
    """Who decides: --as, else the kubeconfig user, else the OS user."""
    import getpass

    from onceflow_operator.clients.kube import kubeconfig_user

    return explicit or kubeconfig_user() or getpass.getuser()


def _decided(record: Any) -> dict[str, str]:
    """The decision columns of an exception row (empty while it waits)."""
    decision = record.decision
    return {"decision": decision.action if decision else "", "decidedBy": decision.who if decision else ""}


def _with_jetstream(nats_url: str, work: Any) -> Any:
    import asyncio

    import nats

    from onceflow_runner.adapters import natsio

    async def quiet(_: Exception) -> None:
        """The client would log a traceback per attempt; the one line below says enough."""

    async def run() -> Any:
        # A person is waiting: a bounded connect, not a runner's endless reconnects.
        nc = await asyncio.wait_for(
            nats.connect(
                nats_url,
                name="onceflow-cli",
                allow_reconnect=False,
                connect_timeout=3,
                error_cb=quiet,
                **natsio.auth_from_environment(),
            ),
            timeout=8,
        )
        try:
            return await work(nc.jetstream(timeout=5))
        finally:
            await nc.close()

    try:
        return asyncio.run(run())
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        raise click.ClickException(f"cannot reach NATS at {nats_url} ({type(exc).__name__}); check --nats") from None


@click.group()
def exceptions() -> None:
    """Records waiting for a person: list, show, and decide (retry, approve, edit, discard, reject)."""


@exceptions.command("list")
@namespace_option
@nats_option
@output_option
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
    from onceflow_runner.contract.timestamps import parse_time

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
        records = [r for r in records if (at := parse_time(r.time)) is not None and at < cutoff]
    rows = [r.summary() | _decided(r) for r in records]
    emit_rows(rows, output, ["sequence", "integration", "reason", "step", "businessKey", "time", "decision", "error"])


@exceptions.command("show")
@click.argument("sequence", type=int)
@namespace_option
@nats_option
@output_option
def exceptions_show(sequence: int, namespace: str, nats_url: str, output: str) -> None:
    """Show one exception with its payload and any duplicate candidates."""
    from onceflow_operator.review.exceptions import ReviewError, get_exception

    try:
        record = _with_jetstream(nats_url, lambda js: get_exception(js, namespace, sequence))
    except ReviewError as exc:
        raise click.ClickException(str(exc)) from None
    row = record.summary() | {"payload": record.payload.decode(errors="replace"), "candidates": record.candidates}
    emit_rows([row], "yaml" if output == "table" else output, [])


def _decide(
    action: ReviewAction,
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

_ACTIONS: tuple[tuple[ReviewAction, str], ...] = (
    ("retry", "Send the record through its Integration again, unchanged."),
    ("approve", "Approve a parked record (duplicate or pricing check) and let it continue."),
    ("discard", "Close the exception without sending anything (e.g. a test record)."),
    ("reject", "Refuse a parked record for good."),
)
for _action, _help in _ACTIONS:

    def _make(action: ReviewAction) -> Any:
        @click.argument("sequence", type=int)
        @namespace_option
        @nats_option
        @_AS
        @_WHY
        def command(sequence: int, namespace: str, nats_url: str, who: str | None, why: str) -> None:
            _decide(action, sequence, namespace, nats_url, who, why)

        return command

    exceptions.command(_action, help=_help)(_make(_action))


@exceptions.command("edit")
@click.argument("sequence", type=int)
@namespace_option
@nats_option
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


@click.command()
@click.argument("business_key")
@namespace_option
@nats_option
@output_option
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
    emit_rows(
        rows if output == "table" else events, output, ["time", "integration", "revision", "what", "steps", "detail"]
    )
