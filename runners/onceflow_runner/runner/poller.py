"""A schedule trigger in a runner: at each firing, the one poller of the Integration reads what changed.

Why in the runner: the rows then enter the Integration exactly as webhook records do, through its
intake subject on JetStream, and everything after (business-key claims, retries, exceptions,
dead letters, canary splits) is the runner's existing settle path. The poller only has to get each
changed row durably into JetStream once per version, and never lose one:

1. At each firing, take or renew the Integration's poll lease (`adapters.pollstate`); a runner
   without it does nothing (one poller per Integration, whatever the replicas).
2. Read the stored watermark and its revision; build the requests from it (`engine.polling`).
3. Publish every row to `onceflow.<ns>.in._poll.<integration>` with `Nats-Msg-Id`
   `<ns>/<integration>/poll/<business key>` and wait for each PubAck. A row read twice (the
   look-back, a poll re-run after a crash) is stored once within JetStream's duplicate window
   and has one effect after it (the key store).
4. Only then store the new watermark, with compare-and-set on the revision of step 2.

A crash anywhere before step 4 leaves the watermark where it was: the next poll (this process
after a restart, or another once the lease expired) reads the same rows again, and they are
duplicates. A failed poll (the target down, a 4xx, rows out of order) keeps the watermark, counts
an error and says why in the heartbeat, which the operator shows in the Integration's status.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from onceflow_runner.adapters.natsio import JetStreamWiring
from onceflow_runner.adapters.pollstate import PollState
from onceflow_runner.contract.headers import cloudevent_headers, header_safe
from onceflow_runner.contract.keys import bounded_id, bounded_key
from onceflow_runner.contract.messages import PollFigures, PollWatermark, RecordHeaders
from onceflow_runner.contract.plan import Plan
from onceflow_runner.contract.schedule import next_fire
from onceflow_runner.engine.core import Engine
from onceflow_runner.engine.polling import (
    POLL_STEP,
    PollFailed,
    initial_watermark,
    parse_time,
    poll_changes,
    request_bound,
    watermark_ceiling,
)
from onceflow_runner.engine.ports import Caller, Response
from onceflow_runner.errors import OnceflowError, PermanentFailure, TransientFailure
from onceflow_runner.metrics import RunnerMetrics

__all__ = ["POLL_EVENT", "Poller"]

log = logging.getLogger("onceflow.poller")

#: The event name polled records carry (`meta.event`).
POLL_EVENT = "polled"
#: Rows published at once while waiting for their PubAcks.
_PUBLISH_WINDOW = 64


class Poller:
    """The schedule loop of one runner process; polls only while it holds the Integration's lease."""

    def __init__(
        self,
        plan: Plan,
        wiring: JetStreamWiring,
        engine: Engine,
        caller: Caller,
        owner: str,
        metrics: RunnerMetrics | None = None,
    ) -> None:
        assert plan.poll is not None
        self.plan, self.source, self.wiring, self.engine, self.caller = plan, plan.poll, wiring, engine, caller
        self.metrics = metrics or RunnerMetrics()
        self.labels = {"integration": plan.integration, "revision": plan.revision}
        self.state = PollState(wiring.js, plan.poll.bucket, plan.integration, owner)
        self.figures = PollFigures()
        self.leader = False
        self._counts = {"polls": 0, "errors": 0, "published": 0}

    @property
    def lease_seconds(self) -> float:
        return self.source.lease_seconds

    def heartbeat_figures(self) -> PollFigures | None:
        """What the heartbeat says of polling: only the lease holder reports (the others do not poll)."""
        return self.figures if self.leader else None

    async def run(self, stopping: asyncio.Event) -> None:
        """Poll at every firing of the schedule until `stopping` is set; give the lease up on the way out.

        The bucket must exist (`PollState.ensure_bucket`, done by the runner at start).
        """
        try:
            while not stopping.is_set():
                await self.poll_if_leader()
                now = datetime.now(UTC)
                fire = next_fire(
                    cron=self.source.cron, interval=self.source.interval, zone=self.source.time_zone, after=now
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), max((fire - now).total_seconds(), 0.05))
        finally:
            with contextlib.suppress(Exception):
                await self.state.release_lease()

    async def poll_if_leader(self) -> None:
        """One firing: poll if this process holds (or can take) the lease; never raises."""
        try:
            self.leader = await self.state.hold_lease(self.lease_seconds)
        except Exception as exc:  # NATS away: no poll this time, the watermark is where it was
            log.warning("poll lease unreadable", extra={"error": header_safe(repr(exc), 200)})
            self.leader = False
            return
        if not self.leader:
            return
        await self.poll()

    async def poll(self) -> None:
        """Read, publish, then advance the watermark; a failure is counted and kept for the status.

        A poll that fails after publishing some pages of an ascending list still stores how far
        those reached (see `engine.polling.PollResult`), so a target that fails on page 40 of a
        backlog every time does not hold the source at page 1 for ever.
        """
        started = datetime.now(UTC)
        self._counts["polls"] += 1
        failure: Exception | None = None
        rows = pages = 0
        try:
            stored, revision = await self.state.watermark()
            watermark = stored.watermark if stored else None
            result = await poll_changes(
                self.source,
                bound=request_bound(self.source, watermark, started),
                now=started,
                base_url=self.plan.connectors[self.source.connector].base_url,
                fetch=self._fetch,
                publish=self._publish,
            )
            failure, rows, pages = result.error, result.rows, result.pages
            reached = result.watermark
            if result.ahead:
                log.warning(
                    "rows stamped after the poll started (plus lookBack): the target's clock is ahead or "
                    "watermark.timeZone is wrong; the watermark is held at the poll's time, so they are read again",
                    extra={"rows": result.ahead},
                )
            if reached is None and stored is None and failure is None:
                reached = initial_watermark(self.source, started)  # keep "from now" from moving on a restart
            if reached is not None and (
                watermark is None or self._later(reached, watermark) or self._future(watermark, started)
            ):
                entry = PollWatermark(
                    watermark=reached, at=datetime.now(UTC).isoformat(), revision=self.plan.revision, rows=rows
                )
                if await self.state.advance(entry, last=revision):
                    watermark = reached
                else:
                    log.warning("watermark moved by another poller; this poll's rows are duplicates of its")
        except Exception as exc:
            failure, watermark = exc, self.figures.watermark
        self._report(started, watermark, rows, pages, failure)

    def _report(
        self, started: datetime, watermark: str | None, rows: int, pages: int, failure: Exception | None
    ) -> None:
        """The poll's figures for the heartbeat and /metrics, and one log line."""
        outcome = "ok" if failure is None else "failed"
        self.metrics.polls.labels(**self.labels, outcome=outcome).inc()
        if failure is None:
            self.metrics.last_poll_success.labels(**self.labels).set(time.time())
        else:
            self._counts["errors"] += 1
        error = self.figures.last_error
        if failure is not None:
            error = header_safe(str(failure).splitlines()[0] if str(failure) else type(failure).__name__, 300)
            if not isinstance(failure, OnceflowError):
                error = f"{type(failure).__name__}: {error}"
        self.figures = PollFigures(
            last_poll_time=started.isoformat(),
            last_success_time=datetime.now(UTC).isoformat() if failure is None else self.figures.last_success_time,
            watermark=watermark,
            records=rows,
            pages=pages,
            polls=self._counts["polls"],
            errors=self._counts["errors"],
            published=self._counts["published"],
            last_error=error,
        )
        if failure is None:
            log.info("polled", extra={"rows": rows, "pages": pages, "watermark": watermark})
        else:
            log.warning("poll failed", extra={"error": error, "rows": rows, "watermark": watermark})

    def _future(self, stored: str, started: datetime) -> bool:
        """A stored watermark past the ceiling (an earlier poll read a row stamped in the future): replace it."""
        zone = ZoneInfo(self.source.watermark_time_zone)
        return parse_time(stored, self.source.watermark_format, zone) > watermark_ceiling(self.source, started)

    def _later(self, candidate: str, current: str) -> bool:
        zone = ZoneInfo(self.source.watermark_time_zone)
        fmt = self.source.watermark_format
        return parse_time(candidate, fmt, zone) > parse_time(current, fmt, zone)

    async def _fetch(self, path: str, query: Mapping[str, str]) -> Response:
        # Renew the lease page by page: a long backlog must not let it lapse mid-poll.
        if not await self.state.hold_lease(self.lease_seconds):
            raise OnceflowError("the poll lease was taken over by another runner; stopped this poll")
        response = await self.caller.request(
            self.source.connector, "GET", path, query=query, body=None, idempotency_key=None, headers={}, step=POLL_STEP
        )
        if not 200 <= response.status < 300:  # a 404 is no list (the path or doctype is wrong)
            raise PollFailed(f"{self.source.connector} answered {response.status} to GET {path}", step=POLL_STEP)
        return response

    async def _publish(self, rows: list[Any]) -> None:
        """Every row into the Integration's intake, each with its PubAck, before returning."""
        for start in range(0, len(rows), _PUBLISH_WINDOW):
            window = rows[start : start + _PUBLISH_WINDOW]
            await asyncio.gather(*(self._publish_row(row) for row in window))
            self._counts["published"] += len(window)
            self.metrics.polled_rows.labels(**self.labels).inc(len(window))

    async def _publish_row(self, row: Any) -> None:
        body = json.dumps(row, separators=(",", ":"), default=str).encode()
        meta = {"deliveryId": "", "source": self.source.connector, "event": POLL_EVENT}
        try:
            key = bounded_key(await self.engine.business_key(row, meta, payload_bytes=len(body)))
        except (PermanentFailure, TransientFailure):
            # A row the business key cannot be computed for must not hold the whole source: it goes in
            # keyed by its content (read twice unchanged, stored once), and the runner parks it for a
            # person as InvalidRecord with its bytes, as it would a webhook record.
            key = f"unkeyed~sha256:{hashlib.sha256(body).hexdigest()}"
        msg_id = bounded_id(f"{self.plan.namespace}/{self.plan.integration}/poll/{key}")
        record = RecordHeaders(
            msg_id=msg_id,
            delivery_id=msg_id,
            origin=self.source.connector,
            origin_system=self.plan.source_system or None,
            event=POLL_EVENT,
            content_type="application/json",
            traceparent=f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01",
        )
        headers = record.to_headers() | cloudevent_headers(
            event_type=f"io.onceflow.{self.source.connector}.{POLL_EVENT}",
            source=f"/namespaces/{self.plan.namespace}/integrations/{self.plan.integration}/poll",
            event_id=key,
        )
        await self.wiring.publish(self.source.subject, body, headers, msg_id)
