"""The runner process: one revision's lane of one Integration, pulling from JetStream.

Why a module of its own: everything around settling a record lives here (connecting, pulling
batches up to the plan's concurrency, split markers, /metrics and health, heartbeats, a graceful
stop); what happens to each record is `settle`, and records JetStream gave up on `advisories`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

import nats.errors
from aiohttp import web
from nats.aio.msg import Msg
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from onceflow_runner.adapters import natsio
from onceflow_runner.adapters.expression_workers import ExpressionWorkers
from onceflow_runner.adapters.outbound import HttpCaller
from onceflow_runner.contract.headers import header_safe
from onceflow_runner.contract.messages import Heartbeat
from onceflow_runner.contract.plan import Plan
from onceflow_runner.contract.split import Lane, SplitMarker, SplitTable, owns
from onceflow_runner.engine.core import Engine
from onceflow_runner.engine.ports import Caller
from onceflow_runner.metrics import RollingStats, RunnerMetrics
from onceflow_runner.runner.advisories import dead_letter_advisories
from onceflow_runner.runner.poller import Poller
from onceflow_runner.runner.settle import Settler

__all__ = ["Runner"]

log = logging.getLogger("onceflow.runner")

#: CEL worker processes per runner (fewer if the plan's concurrency is lower). Two keep one slow
#: record from holding every other iterating record behind it, and fit the pod's memory limit.
EXPRESSION_WORKERS = 2
#: While records are in flight, the pull loop fetches again only once this share (1/4) of the
#: plan's concurrency is free. Why: refilled as soon as one slot freed, a busy runner fetched one
#: to five records at a time, and each fetch costs a pull request, its status message and a split
#: marker read (a request/response). With nothing in flight it fetches at once, so a record that
#: arrives at an idle or lightly loaded runner waits for nothing.
REFILL_SHARE = 4


class Runner:
    """One runner process (or, in tests, one of several in an interpreter)."""

    def __init__(
        self,
        plan: Plan,
        *,
        nats_url: str,
        secrets_dir: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        heartbeat_seconds: float = 2.0,
        caller: Caller | None = None,
        lane: Lane = "main",
    ) -> None:
        self.plan = plan
        self.lane = lane
        self.nats_url = nats_url
        self.secrets_dir = secrets_dir
        self.host, self.port = host, port
        self.heartbeat_seconds = heartbeat_seconds
        self.metrics = RunnerMetrics()
        self.counters = self.metrics.of(plan.integration, plan.revision)
        self.stats = RollingStats()
        self.caller: Caller = caller or HttpCaller(plan.connectors, secrets_dir)
        #: CEL that iterates (and all CEL of a large record) runs here, killed at the plan's deadline.
        #: Started with the runner if the plan iterates, else on its first large record.
        self.expressions = ExpressionWorkers(
            workers=min(plan.concurrency, EXPRESSION_WORKERS), deadline=plan.expression_timeout
        )
        self.split: SplitTable | None = None
        self.pod = os.environ.get("HOSTNAME") or f"{socket.gethostname()}-{os.getpid()}"
        self._stopping = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        #: Fetch again once this many slots are free (while records are in flight; see REFILL_SHARE).
        self.refill_at = max(1, plan.concurrency // REFILL_SHARE)
        #: Set when enough slots are free to fetch again (or when stopping).
        self._slots = asyncio.Event()
        #: Fetches that brought records, and the records they brought (for tests and benchmarks).
        self.fetches = self.fetched = 0
        # Read when /metrics is scraped, not counted up and down twice per record.
        self.counters.in_flight.set_function(lambda: len(self._inflight))
        self._tasks: list[asyncio.Task[None]] = []
        self._site: web.TCPSite | None = None
        self._http: web.AppRunner | None = None
        self.ready = False
        self._settler: Settler | None = None
        #: A schedule trigger's poller (every replica runs one; only the lease holder polls).
        self.poller: Poller | None = None
        self.lag = 0
        #: Records per second the lag grew by between the last two readings (negative: catching up).
        self.lag_growth = 0.0
        self._lag_read_at: float | None = None

    async def start(self) -> None:
        """Connect, provision, bind the consumer, serve /metrics and health, start pulling."""
        self.nc = await natsio.connect(self.nats_url, name=f"onceflow-runner/{self.plan.integration}")
        # Health first: while JetStream has no leader the runner waits below, alive but not ready.
        await self._serve_http()
        self.wiring = await natsio.when_available(
            f"the consumer {natsio.lane_consumer(self.plan, self.lane)} and key bucket {self.plan.nats.kv_bucket}",
            lambda: natsio.JetStreamWiring.open(self.nc, self.plan, self.lane),
        )
        self.engine = Engine(self.plan, self.caller, natsio.JetStreamEvents(self.wiring), self.expressions)
        if self.engine.iterates:
            await self.expressions.start()
        self._settler = Settler(self.plan, self.wiring, self.engine, self.metrics, self.stats, self.pod)
        self.sub = await self.wiring.subscribe()
        self._tasks = [
            asyncio.create_task(self._pull_loop()),
            asyncio.create_task(self._heartbeat_loop()),
            asyncio.create_task(dead_letter_advisories(self._settler, self._stopping)),
            asyncio.create_task(self._settler.keeper.run()),
        ]
        if self.plan.poll is not None:
            self.poller = Poller(self.plan, self.wiring, self.engine, self.caller, self.pod, self.metrics)
            await self.poller.state.ensure_bucket()
            self._tasks.append(asyncio.create_task(self.poller.run(self._stopping)))
        self.ready = True
        log.info("runner ready", extra={"integration": self.plan.integration, "revision": self.plan.revision})

    async def stop(self, grace: float | None = None) -> None:
        """Stop pulling, let in-flight records settle (or be redelivered later), then disconnect."""
        self.ready = False
        self._stopping.set()
        self._slots.set()  # a pull loop waiting for free slots looks at _stopping and ends
        if self._tasks:
            # Let a fetch in progress return (it times out within a second) and its records start:
            # cancelling it would strand what it fetched until ack_wait sends it elsewhere.
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._tasks[0]), 2.5)
        if self._inflight:
            await asyncio.wait(
                set(self._inflight), timeout=grace if grace is not None else self.plan.error_policy.ack_wait
            )
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):
            await self.sub.unsubscribe()
        with contextlib.suppress(Exception):
            await self.nc.drain()
        await self.expressions.aclose()
        close = getattr(self.caller, "aclose", None)
        if close is not None:
            await close()
        if self._http is not None:
            await self._http.cleanup()

    async def _serve_http(self) -> None:
        app = web.Application()

        async def metrics(_: web.Request) -> web.Response:
            return web.Response(
                body=generate_latest(self.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
            )

        async def healthz(_: web.Request) -> web.Response:
            alive = all(not t.done() for t in self._tasks) or self._stopping.is_set()
            return web.Response(status=200 if alive else 500, text="ok" if alive else "pull loop died")

        async def readyz(_: web.Request) -> web.Response:
            ok = self.ready and self.nc.is_connected
            return web.Response(status=200 if ok else 503, text="ready" if ok else "not ready")

        app.router.add_get("/metrics", metrics)
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/readyz", readyz)
        self._http = web.AppRunner(app, access_log=None)
        await self._http.setup()
        self._site = web.TCPSite(self._http, self.host, self.port)
        await self._site.start()
        self.port = _bound_port(self._site, self.port)

    async def _pull_loop(self) -> None:
        limit = self.plan.concurrency
        while not self._stopping.is_set():
            busy = len(self._inflight)
            free = limit - busy
            if busy and free < self.refill_at:
                self._slots.clear()
                await self._slots.wait()  # set by `_finished` once refill_at slots are free
                continue
            try:
                msgs = await self.sub.fetch(free, timeout=1.0)
            except (nats.errors.TimeoutError, TimeoutError):
                continue
            except (
                nats.errors.ConnectionClosedError,
                nats.errors.NoRespondersError,
                nats.errors.Error,
            ) as exc:
                log.warning("fetch failed; retrying", extra={"error": type(exc).__name__})
                await asyncio.sleep(0.5)
                continue
            try:
                # Read after the fetch: every marker that can apply to these records is stored by now.
                self.split = await self.wiring.split_table()
            except Exception as exc:  # cannot judge ownership: leave the batch for redelivery
                log.warning("split marker unreadable; batch left for redelivery", extra={"error": type(exc).__name__})
                await asyncio.sleep(0.5)
                continue
            self.fetches += 1
            self.fetched += len(msgs)
            for msg in msgs:
                if self._mine(msg):
                    self._track(asyncio.create_task(self._settle_guarded(msg)))

    def _track(self, task: asyncio.Task[None]) -> None:
        self._inflight.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        if self.plan.concurrency - len(self._inflight) >= self.refill_at:
            self._slots.set()

    def _mine(self, msg: Msg) -> bool:
        """Ack split markers and the other lane's records at once (no effect); True for our records."""
        if SplitMarker.is_marker(msg.headers) or not owns(self.lane, msg.metadata.sequence.stream, self.split):
            self.counters.skipped.inc()
            self._track(asyncio.create_task(msg.ack()))
            return False
        return True

    async def _settle_guarded(self, msg: Msg) -> None:
        try:
            await self.settle(msg)
        except Exception as exc:
            # NATS could not be reached to settle it (not even to park it): left unacked, it is
            # redelivered after ack_wait, and after maxDeliver its advisory makes it a dead letter.
            log.error("settle failed; message will be redelivered", extra={"error": header_safe(repr(exc), 300)})

    async def settle(self, msg: Msg) -> None:
        """Process one delivery and decide its fate (see `settle`)."""
        await self.settler.settle(msg)

    @property
    def settler(self) -> Settler:
        """What settles this runner's deliveries (there once `start` connected)."""
        if self._settler is None:
            raise RuntimeError("the runner has not started")
        return self._settler

    @property
    def last_success(self) -> datetime | None:
        return self._settler.last_success if self._settler is not None else None

    async def _heartbeat_loop(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(Exception):
                info = await self.sub.consumer_info()
                self._read_lag(int(info.num_pending or 0), time.monotonic())
            beat = Heartbeat.from_dict(
                {
                    "integration": self.plan.integration,
                    "revision": self.plan.revision,
                    "lane": self.lane,
                    "pod": self.pod,
                    "subject": self.plan.nats.subject,
                    "time": datetime.now(UTC).isoformat(),
                    "consumerLag": self.lag,
                    "consumerLagGrowth": self.lag_growth,
                    "lastSuccessTime": self.last_success.isoformat() if self.last_success else None,
                    **self.stats.snapshot(),
                }
            )
            polled = self.poller.heartbeat_figures() if self.poller is not None else None
            if polled is not None:
                beat = beat.model_copy(update={"poll": polled})
            with contextlib.suppress(Exception):
                await self.wiring.publish_untracked(self.plan.nats.stats_subject, beat.to_wire())
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.heartbeat_seconds)

    def _read_lag(self, lag: int, now: float) -> None:
        """Record the consumer lag and how fast it grows (records/s since the last reading).

        Why the growth: a lag of 5,000 that shrinks is a runner catching up; one that grows by
        500/s is a runner that falls behind and will not catch up without more replicas. Both
        are in /metrics and in the heartbeat the operator turns into Integration status.
        """
        if self._lag_read_at is not None and now > self._lag_read_at:
            self.lag_growth = round((lag - self.lag) / (now - self._lag_read_at), 1)
        self.lag, self._lag_read_at = lag, now
        self.counters.consumer_lag.set(lag)
        self.counters.consumer_lag_growth.set(self.lag_growth)


def _bound_port(site: web.TCPSite, default: int) -> int:
    """The port the OS picked when asked for port 0."""
    sockets = getattr(site._server, "sockets", None) or []
    return int(sockets[0].getsockname()[1]) if sockets else default


async def run_until_signalled(runner: Runner) -> None:
    """Start, then stop gracefully on SIGTERM or SIGINT (in-flight records settle first)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await runner.start()
    await stop.wait()
    await runner.stop()
