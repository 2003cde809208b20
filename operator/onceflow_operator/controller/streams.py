"""The streams as the operator sees them: what each ensure did, and their health, in log and metrics.

Why a loop of its own and not a reconcile: streams belong to no one Kubernetes object. The loop
ensures the streams as soon as the operator starts (a gateway binds to ONCEFLOW_IN before any
Integration exists) and again on each new NATS connection, then reads every stream's replicas,
leader, lagging replicas, bytes and messages into `onceflow_stream_*` gauges (what an SRE's
dashboard and the chart's alerts read) and logs a stream that lost replicas once per change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from onceflow_operator.clients.accounts import NatsLinks
from onceflow_operator.clients.jetstream import JetStreamLink
from onceflow_operator.clients.topology import StreamHealth, StreamReport
from onceflow_operator.controller.metrics import (
    STREAM_BYTES,
    STREAM_CHANGES,
    STREAM_CURRENT_REPLICAS,
    STREAM_LAGGING_REPLICAS,
    STREAM_LEADER,
    STREAM_MESSAGES,
    STREAM_REPLICAS,
)

__all__ = ["record_health", "record_reports", "watch_streams"]

log = logging.getLogger("onceflow.operator")


def record_reports(reports: list[StreamReport], namespace: str | None = None) -> None:
    """Count what an ensure did; log each change, and each refusal as a warning naming what to do.

    `namespace`: the account's namespace in account mode (each has its own copy of every stream).
    """
    where = f" (namespace {namespace})" if namespace else ""
    for report in reports:
        STREAM_CHANGES.labels(stream=report.stream, action=report.action).inc()
        if report.action == "refused":
            log.warning("stream %s%s not changed: %s", report.stream, where, report.message)
        elif report.action != "unchanged":
            log.info("stream %s%s %s %s", report.stream, where, report.action, "; ".join(report.changes))


def record_health(found: list[StreamHealth | str], leaders: dict[str, str], *, gauges: bool = True) -> list[str]:
    """Set the stream gauges (unless `gauges` is False); return one line per stream missing or short of replicas.

    `leaders` (stream -> last leader seen) is updated, so the leader gauge moves with the leader.
    """
    problems = []
    for item in found:
        if isinstance(item, str):
            problems.append(f"stream {item} is missing")
            continue
        if gauges:
            _set_gauges(item, leaders)
        if item.lagging:
            problems.append(
                f"stream {item.stream}: {item.current} of {item.replicas} replicas current"
                f" (lagging or offline: {', '.join(item.lagging)}; leader {item.leader or 'none'})"
            )
    return problems


def _set_gauges(item: StreamHealth, leaders: dict[str, str]) -> None:
    STREAM_REPLICAS.labels(stream=item.stream).set(item.replicas)
    STREAM_CURRENT_REPLICAS.labels(stream=item.stream).set(item.current)
    STREAM_LAGGING_REPLICAS.labels(stream=item.stream).set(len(item.lagging))
    STREAM_BYTES.labels(stream=item.stream).set(item.bytes)
    STREAM_MESSAGES.labels(stream=item.stream).set(item.messages)
    before = leaders.get(item.stream)
    if before is not None and before != item.leader:
        STREAM_LEADER.labels(stream=item.stream, server=before).set(0)
    STREAM_LEADER.labels(stream=item.stream, server=item.leader).set(1)
    leaders[item.stream] = item.leader


async def watch_streams(links: JetStreamLink | NatsLinks, stop: asyncio.Event, interval: float) -> None:
    """Ensure the streams (at start and on each new connection), then refresh their health every `interval`.

    In account mode (`NatsLinks` with an account per namespace) every namespace's connection made
    so far is watched; its lines name the namespace, and the per-stream gauges are left alone
    (one stream name per namespace would overwrite them; docs/install.md says so).
    """
    state: dict[int, tuple[dict[str, str], list[str]]] = {}
    while not stop.is_set():
        accounts = isinstance(links, NatsLinks) and links.isolation == "account"
        for link in links.links() if isinstance(links, NatsLinks) else [links]:
            leaders, said = state.setdefault(id(link), ({}, []))
            await _watch_once(link, leaders, said, gauges=not accounts)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


async def _watch_once(link: JetStreamLink, leaders: dict[str, str], said: list[str], *, gauges: bool) -> None:
    where = f" (namespace {link.namespace})" if link.namespace else ""
    try:
        if not link.streams_ensured:
            await link.ensure_streams()
        health = await link.stream_health()
        missing = [item for item in health if isinstance(item, str)]
        if missing and link.streams_ensured:
            # Deleted while the operator runs (`nats stream rm`): every pod bound to it would
            # wait, not ready, until a reconnect. Create it again now; its consumers follow
            # with their Integrations' next reconcile.
            log.warning("streams %s%s are missing; creating them again", ", ".join(missing), where)
            await link.ensure_streams()
            health = await link.stream_health()
        problems = [f"{line}{where}" for line in record_health(health, leaders, gauges=gauges)]
        if problems != said:
            for line in problems:
                log.warning("%s", line)
            said[:] = problems
    except Exception as exc:  # NATS away or refusing: the next tick tries again
        log.warning("JetStream streams%s not readable at %s (%s); retrying", where, link.url, type(exc).__name__)
