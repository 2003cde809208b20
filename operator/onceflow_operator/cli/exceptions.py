"""`onceflow exceptions` (list, show, and people's decisions on parked records) and `onceflow trace`.

Both read the review streams over NATS through `review.exceptions`. A decision is made as the
Kubernetes user the kubeconfig authenticates (a SelfSubjectReview says who that is, not a name
anyone can type) and only if the API server allows it: a SelfSubjectAccessReview for `update` on
`exceptions.onceflow.io` in the record's namespace, the rule the console applies (`review.rbac`).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import click

from onceflow_operator.cli.cluster import Cluster, all_namespaces_option, cluster_options
from onceflow_operator.cli.output import dump, emit_rows, nats_option, output_option, shorten, terminal_safe
from onceflow_runner.contract.messages import MatchVerdict, ReviewAction

__all__ = ["decider", "exceptions", "explain_candidate", "render_exception", "trace"]


async def decider(kube: Any, namespace: str) -> str:
    """Who is deciding, as the API server knows them; ClickException when they may not decide in `namespace`."""
    from onceflow_operator.review.rbac import DECIDE_VERB, REVIEW_GROUP, REVIEW_RESOURCE

    user, _ = await kube.who_am_i()
    if not user:
        raise click.ClickException("the API server did not say who you are (SelfSubjectReview); nothing was decided")
    allowed = await kube.may_i(verb=DECIDE_VERB, namespace=namespace, group=REVIEW_GROUP, resource=REVIEW_RESOURCE)
    if not allowed:
        raise click.ClickException(
            f"{user} may not {DECIDE_VERB} {REVIEW_RESOURCE}.{REVIEW_GROUP} in namespace {namespace}: nothing was "
            "decided; ask a cluster admin for a Role granting it (docs/operations.md, 'Who may decide')"
        )
    return str(user)


def _decided(record: Any) -> dict[str, str]:
    """The decision columns of an exception row (empty while it waits)."""
    decision = record.decision
    return {"decision": decision.action if decision else "", "decidedBy": decision.who if decision else ""}


def _with_jetstream(nats_url: str, work: Any) -> Any:
    import asyncio
    import socket

    import nats

    from onceflow_runner.adapters import natsio

    schemes = ("nats://", "tls://", "ws://", "wss://")
    if not all(url.strip().startswith(schemes) for url in nats_url.split(",")):
        raise click.ClickException(f"{nats_url!r} is not a NATS URL such as nats://host:4222; check --nats")

    async def run() -> Any:
        # A person is waiting: the first failure to connect ends the command. (The client keeps
        # retrying its first connect whatever allow_reconnect says, reporting each attempt to
        # error_cb; the first report is the reason.)
        failed: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

        async def first_error(exc: Exception) -> None:
            if not failed.done():
                failed.set_result(exc)

        connecting = asyncio.ensure_future(
            nats.connect(
                natsio.server_urls(nats_url),
                name="onceflow-cli",
                allow_reconnect=False,
                connect_timeout=3,
                error_cb=first_error,
                **natsio.auth_from_environment(),
            )
        )
        waiting: set[asyncio.Future[Any]] = {connecting, failed}
        done, _ = await asyncio.wait(waiting, timeout=8, return_when=asyncio.FIRST_COMPLETED)
        if connecting not in done:
            connecting.cancel()
            with contextlib.suppress(BaseException):
                await connecting
            raise failed.result() if failed.done() else TimeoutError()
        nc = connecting.result()
        try:
            return await work(nc.jetstream(timeout=5))
        finally:
            await nc.close()

    try:
        return asyncio.run(run())
    except socket.gaierror:
        raise click.ClickException(f"cannot reach NATS at {nats_url}: unknown host; check --nats") from None
    except ConnectionRefusedError:
        raise click.ClickException(f"cannot reach NATS at {nats_url}: connection refused; check --nats") from None
    except TimeoutError:
        raise click.ClickException(f"cannot reach NATS at {nats_url}: no answer within 8s; check --nats") from None
    except (OSError, ValueError, nats.errors.Error) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise click.ClickException(f"cannot reach NATS at {nats_url}: {reason}; check --nats") from None


@click.group()
def exceptions() -> None:
    """Records waiting for a person: list, show, and decide (retry, approve, edit, discard, reject)."""


@exceptions.command("list")
@cluster_options
@all_namespaces_option
@nats_option
@output_option
@click.option("--integration", help="Only this Integration.")
@click.option("--reason", help="Only this reason, e.g. InvalidRecord, ApprovalRequired.")
@click.option("--key", "business_key", help="Only this business key.")
@click.option("--step", help="Only exceptions raised at this step.")
@click.option("--older-than", help="Only exceptions parked longer ago than this, e.g. 30m, 24h, 1d.")
@click.option("--all", "include_decided", is_flag=True, help="Include exceptions already decided.")
def exceptions_list(
    cluster: Cluster,
    all_namespaces: bool,
    nats_url: str,
    output: str,
    integration: str | None,
    reason: str | None,
    business_key: str | None,
    step: str | None,
    older_than: str | None,
    include_decided: bool,
) -> None:
    """List exceptions, oldest first; `-o wide` adds the revision and the whole error."""
    from datetime import UTC, datetime, timedelta

    from onceflow_operator.review.exceptions import list_exceptions
    from onceflow_runner.contract import subjects
    from onceflow_runner.contract.durations import parse_duration
    from onceflow_runner.contract.timestamps import parse_time

    try:
        age = parse_duration(older_than, days=True) if older_than else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--older-than") from None
    try:
        cutoff = datetime.now(UTC) - timedelta(seconds=age) if age is not None else None
    except (OverflowError, ValueError):
        raise click.BadParameter(
            f"{older_than} reaches before year 1; give a shorter age", param_hint="--older-than"
        ) from None
    namespace = subjects.ANY_TOKEN if all_namespaces else cluster.namespace_or_default()

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
    columns = [*(["namespace"] if all_namespaces else []), "sequence", "integration", "reason", "step", "businessKey"]
    emit_rows(rows, output, [*columns, "time", "decision", "error"], ["decidedBy", "revision"])


def _payload(payload: bytes) -> Any:
    """The payload as people read it: parsed JSON when it is JSON, else the text (undecodable bytes replaced)."""
    import json

    try:
        return json.loads(payload)
    except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth: its text
        return payload.decode(errors="replace")


def render_exception(row: dict[str, Any]) -> str:
    """`exceptions show` as a table: one field a line, like `kubectl describe`; payload and candidates as JSON."""
    import json

    decision = row.get("decision") or {}
    lines = [
        f"Exception     {row['sequence']} (namespace {row.get('namespace', '')})",
        f"Integration   {row['integration']} (revision {row.get('revision') or '-'})",
        f"Reason        {row['reason']} at step {row.get('step') or '-'}",
        f"Error         {row.get('error', '')}",
        f"Business key  {row.get('businessKey', '')}",
        f"Parked        {row.get('time') or 'unknown'}",
    ]
    if decision:
        lines.append(
            f"Decision      {decision.get('action')} by {decision.get('who')} at {decision.get('time')}: "
            f"{decision.get('why', '')}"
        )
    else:
        lines.append("Decision      waiting (retry, approve, edit, discard or reject it)")
    suggestion = row.get("suggestion")
    if suggestion:
        value = json.dumps(suggestion.get("value"), ensure_ascii=False)
        lines.append(f"Suggestion    set {suggestion.get('field')} to {shorten(value)} (not applied)")

    def block(value: Any) -> list[str]:
        text = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)
        return ["  " + line for line in text.splitlines()]

    lines += ["Payload", *block(row.get("payload"))]
    candidates = row.get("candidates") or []
    omitted = row.get("candidatesOmitted") or 0
    lines.append(f"Candidates    {len(candidates) or 'none'}" + (f" ({omitted} weaker left out)" if omitted else ""))
    for i, match in enumerate(candidates, 1):
        lines += explain_candidate(i, match)
    return terminal_safe("\n".join(lines))


def _number(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, int | float) and not isinstance(value, bool) else "-"


def explain_candidate(index: int, match: dict[str, Any]) -> list[str]:
    """One candidate beside the record: per field both values, level and weight, then the total and the row."""
    import json

    def text(value: Any) -> str:
        return shorten(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str))

    said = f", {match['decision']}" if match.get("decision") else ""
    weight = f", weight {_number(match['weight'])}" if match.get("weight") is not None else ""
    lines = [f"  Candidate {index}: rule {match.get('rule', '-')}, score {_number(match.get('score'))}{weight}{said}"]
    listed = match.get("fields")
    fields = [f for f in listed if isinstance(f, dict)] if isinstance(listed, list) else []
    if fields:
        table = [("FIELD", "THIS RECORD", "CANDIDATE", "LEVEL", "WEIGHT")] + [
            (
                str(f.get("field", "")),
                text(f.get("record")),
                text(f.get("candidate")),
                str(f.get("level", "")),
                _number(f.get("weight")),
            )
            for f in fields
        ]
        widths = [max(len(r[c]) for r in table) for c in range(5)]
        lines += ["    " + "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in table]
    row = json.dumps(match.get("candidate"), indent=2, ensure_ascii=False, default=str)
    lines += ["    Row", *("      " + line for line in row.splitlines())]
    return lines


@exceptions.command("show")
@click.argument("sequence", type=int)
@cluster_options
@nats_option
@output_option
def exceptions_show(sequence: int, cluster: Cluster, nats_url: str, output: str) -> None:
    """Show one exception: why it stopped, its payload, any duplicate candidates and its decision."""
    from onceflow_operator.review.exceptions import ReviewError, get_exception

    namespace = cluster.namespace_or_default()
    try:
        record = _with_jetstream(nats_url, lambda js: get_exception(js, namespace, sequence))
    except ReviewError as exc:
        raise click.ClickException(str(exc)) from None
    row = record.summary() | {
        "payload": _payload(record.payload),
        "candidates": record.candidates,
        "candidatesOmitted": record.candidates_omitted,
    }
    click.echo(render_exception(row) if output in {"table", "wide"} else dump(row, output))


def _decide(
    action: ReviewAction,
    sequence: int,
    cluster: Cluster,
    nats_url: str,
    why: str,
    payload: bytes | None = None,
    who: str | None = None,
    *,
    same_as: int | None = None,
    not_same: bool = False,
) -> None:
    """Decide as the authenticated user (`who`, when the caller already asked the API server).

    `same_as` (1-based, as `show` numbers the candidates) or `not_same` give a duplicate verdict.
    """
    from onceflow_operator.review.exceptions import ReviewError, decide

    if same_as is not None and not_same:
        raise click.UsageError("--same-as and --not-same say opposite things: give one")
    if same_as is not None and same_as < 1:
        raise click.UsageError("--same-as counts candidates from 1, as `exceptions show` lists them")
    verdict: MatchVerdict | None = "same" if same_as is not None else "notSame" if not_same else None
    namespace = cluster.namespace
    if who is None:
        who = cluster.run(lambda kube: decider(kube, namespace))
    try:
        decision = _with_jetstream(
            nats_url,
            lambda js: decide(
                js,
                namespace,
                sequence,
                action,
                who=who,
                why=why,
                payload=payload,
                verdict=verdict,
                same_as=None if same_as is None else same_as - 1,
            ),
        )
    except ReviewError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"exception {sequence}: {decision.action} by {decision.who}")


def _no_as(_: click.Context, __: click.Parameter, value: str | None) -> None:
    if value is not None:
        raise click.UsageError(
            "--as is gone: a decision is recorded as the user your kubeconfig authenticates as; "
            "to decide as someone else, use their --context or --kubeconfig"
        )


#: Kept hidden so old scripts get the reason instead of "no such option".
_AS = click.option("--as", "who", hidden=True, expose_value=False, callback=_no_as, is_eager=True)
_WHY = click.option("-m", "--reason", "why", required=True, help="Why: kept in the audit trail.")

_SAME_AS = click.option(
    "--same-as",
    type=int,
    metavar="N",
    help="On a possible duplicate (reject or discard): it is the same record as candidate N (kept as a label).",
)
_NOT_SAME = click.option(
    "--not-same",
    is_flag=True,
    help="On a possible duplicate (approve or edit): it is none of the candidates (kept as a label).",
)

_ACTIONS: tuple[tuple[ReviewAction, str], ...] = (
    ("retry", "Send the record through its Integration again, unchanged."),
    ("approve", "Approve a parked record (duplicate or pricing check) and let it continue."),
    ("discard", "Close the exception without sending anything (e.g. a test record)."),
    ("reject", "Refuse a parked record for good."),
)
for _action, _help in _ACTIONS:

    def _make(action: ReviewAction) -> Any:
        @click.argument("sequence", type=int)
        @cluster_options
        @nats_option
        @_AS
        @_WHY
        @_SAME_AS
        @_NOT_SAME
        def command(
            sequence: int, cluster: Cluster, nats_url: str, why: str, same_as: int | None, not_same: bool
        ) -> None:
            _decide(action, sequence, cluster, nats_url, why, same_as=same_as, not_same=not_same)

        return command

    exceptions.command(_action, help=_help)(_make(_action))


@exceptions.command("edit")
@click.argument("sequence", type=int)
@cluster_options
@nats_option
@_AS
@_WHY
@click.option(
    "--payload-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Corrected payload; without it $EDITOR opens the original.",
)
def exceptions_edit(sequence: int, cluster: Cluster, nats_url: str, why: str, payload_file: Path | None) -> None:
    """Correct the payload, check it is still JSON, and send it through its Integration again."""
    import json

    from onceflow_operator.review.exceptions import get_exception

    namespace = cluster.namespace
    # Asked first, so nobody edits a payload only to be refused.
    who = cluster.run(lambda kube: decider(kube, namespace))
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
    _decide("edit", sequence, cluster, nats_url, why, payload, who)


@click.command()
@click.argument("business_key")
@click.option(
    "--span-key",
    is_flag=True,
    help="Print only how spans show this business key (search your tracing backend for it); reads no NATS.",
)
@cluster_options
@nats_option
@output_option
def trace(business_key: str, span_key: bool, cluster: Cluster, nats_url: str, output: str) -> None:
    """The life of one record: every step outcome, exception and decision, in time order."""
    from onceflow_operator.review.exceptions import trace as trace_key

    if span_key:
        click.echo(_span_key(cluster, business_key))
        return
    namespace = cluster.namespace_or_default()
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
        rows if output in {"table", "wide"} else events,
        output,
        ["time", "integration", "revision", "what", "steps", "detail"],
    )


def _span_key(cluster: Cluster, business_key: str) -> str:
    """`onceflow.business_key=<value>` as the namespace's runners put it on spans with hashed keys.

    Keyed with the namespace's `onceflow-trace` Secret when it has one (reading it needs the
    right to get that Secret); else the plain SHA-256 runners use without a key.
    """
    import base64
    import hashlib

    from onceflow_runner.contract.environment import TRACE_HASH_KEY_SECRET, TRACE_HASH_KEY_SECRET_KEY
    from onceflow_runner.tracing import BUSINESS_KEY, keyed_business_key

    namespace = cluster.namespace
    secret = cluster.run(lambda kube: kube.get("v1", "Secret", namespace, TRACE_HASH_KEY_SECRET)) or {}
    encoded = (secret.get("data") or {}).get(TRACE_HASH_KEY_SECRET_KEY)
    if not encoded:
        return f"{BUSINESS_KEY}=sha256:{hashlib.sha256(business_key.encode()).hexdigest()}"
    return f"{BUSINESS_KEY}={keyed_business_key(base64.b64decode(encoded).strip(), business_key)}"
