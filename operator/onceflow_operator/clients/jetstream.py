"""The operator's one NATS connection: JetStream consumers, split markers, heartbeats, drift results.

The controller decides; this module carries the decisions out against JetStream and reports what
it sees, so that nothing else on the control plane's reconcile path imports a NATS client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from onceflow_operator.clients import topology
from onceflow_operator.clients.topology import StreamHealth, StreamReport, TopologySettings
from onceflow_runner.adapters import natsio
from onceflow_runner.contract import subjects
from onceflow_runner.contract.edi import EdiPartnerPlan
from onceflow_runner.contract.messages import DriftResult
from onceflow_runner.contract.plan import Plan
from onceflow_runner.contract.split import Lane, SplitTable

__all__ = ["JetStreamLink", "LaneState"]


@dataclass
class LaneState:
    """What JetStream says about an Integration's lanes: the split table and each consumer's ack floor."""

    table: SplitTable | None = None
    canary_floor: int | None = None
    main_floor: int | None = None

    @property
    def canary_drained(self) -> bool:
        """True when no canary lane exists, or it has settled every record it owned before weight 0."""
        if self.canary_floor is None:
            return True
        return self.table is not None and self.table.weight == 0 and self.canary_floor >= self.table.last_sequence


#: nats-py's reply inbox prefix when none is configured (processes without per-namespace users).
DEFAULT_INBOX = "_INBOX."


class JetStreamLink:
    """One connection, made on first use and retried on the next reconcile.

    Every runner heartbeat on the connection is handed to `on_heartbeat` (the controller's figure book).
    """

    def __init__(
        self,
        url: str,
        on_heartbeat: Callable[..., None],
        settings: TopologySettings | None = None,
        on_streams: Callable[[list[StreamReport]], None] | None = None,
        *,
        credentials: str | None = None,
        namespace: str | None = None,
    ) -> None:
        self.url = url
        #: A `.creds` text to connect with instead of the environment's (a namespace's account, account mode).
        self.credentials = credentials
        #: The one namespace this connection serves (account mode), or None: every namespace.
        self.namespace = namespace
        self.on_heartbeat = on_heartbeat
        self.settings = settings or TopologySettings()
        #: Told what each ensure of the streams did (the controller logs and counts it).
        self.on_streams = on_streams
        self._nc: Client | None = None
        self._lock = asyncio.Lock()
        #: The connection on which the streams were last ensured (once per connection, not per reconcile).
        self._streams_on: Client | None = None
        #: Namespaces whose KV buckets were ensured on that connection.
        self._buckets: set[str] = set()

    async def jetstream(self) -> JetStreamContext:
        # Handlers run concurrently: one connection, made once, or a second one would leak.
        async with self._lock:
            if self._nc is None or self._nc.is_closed:
                self._nc = await natsio.connect(self.url, name="onceflow-operator", credentials=self.credentials)
                await natsio.subscribe_stats(self._nc, self.on_heartbeat, namespace=self.namespace)
                await self._nc.subscribe(subjects.STORED_LOOKUP_SUBSCRIPTION, cb=self._answer_lookup)
                await self._nc.flush()  # the server knows the subscriptions before anything relies on them
        return self._nc.jetstream(timeout=5)

    async def _answer_lookup(self, msg: Msg) -> None:
        """Answer a runner's "stored record at this sequence" (`subjects.stored_lookup_subject`).

        Only a record under the asking namespace is returned (the namespace is the subject's, which
        only that namespace's NATS user may publish); anything else is "not found", so a lookup
        reveals nothing of another namespace, not even that a sequence exists.

        The answer goes only to a reply subject under the namespace's inbox prefix, or NATS's default
        one (the runners' without per-namespace users): NATS does not check a publisher's
        permissions on its reply subject, so a reply of `onceflow.<other>.in...` or
        `...decisions...` would have the operator store the asker's record as another namespace's
        record, or as a person's decision (the operator may publish anywhere). No stream captures
        an inbox, and another namespace's user may not read `_INBOX.>` nor this namespace's inbox.
        """
        nc = self._nc
        if not msg.reply or nc is None:
            return
        not_found = {natsio.STORED_STATUS: "404"}
        try:
            _, namespace, _, stream, sequence = msg.subject.split(".")
            if not msg.reply.startswith((f"{subjects.inbox_prefix(namespace)}.", DEFAULT_INBOX)):
                return  # not an inbox: no answer at all
            stored = None
            # Account mode: this connection's account holds one namespace's streams; no other is asked here.
            if self.namespace is not None and namespace != self.namespace:
                raise ValueError(namespace)
            if stream in subjects.STREAM_AREAS:  # records only, never advisories or KV
                stored = await natsio.get_stored(nc.jetstream(timeout=5), stream, int(sequence))
            if stored is None or subjects.namespace_of(stored.subject) != namespace:
                await nc.publish(msg.reply, b"", headers=not_found)
                return
            headers = {**stored.headers, natsio.STORED_STATUS: "200", natsio.STORED_SUBJECT: stored.subject}
            headers[natsio.STORED_TIME] = stored.time
            await nc.publish(msg.reply, stored.data, headers=headers)
        except ValueError:
            await nc.publish(msg.reply, b"", headers=not_found)
        except Exception:  # NATS trouble: no answer; the runner asks again with the advisory
            return

    async def last_drift(self, subject: str) -> DriftResult | None:
        """The newest drift result a drift check published on `subject`, or None (none yet, unreadable, NATS away)."""
        try:
            msg = await (await self.jetstream()).get_last_msg(subjects.EVENTS_STREAM, subject)
            return DriftResult.from_wire(msg.data or b"")
        except Exception:  # no result yet, a malformed one, or NATS away: status keeps what it had
            return None

    async def observe_lanes(self, plan: Plan) -> LaneState:
        js = await self.jetstream()
        subject = natsio.rollout_subject(plan.nats, plan.namespace, plan.integration)
        return LaneState(
            table=await natsio.read_split(js, plan.nats.stream, subject),
            canary_floor=await natsio.ack_floor(js, plan.nats.stream, natsio.lane_consumer(plan, "canary")),
            main_floor=await natsio.ack_floor(js, plan.nats.stream, natsio.lane_consumer(plan, "main")),
        )

    @property
    def streams_ensured(self) -> bool:
        """True once the streams were ensured on the connection open now."""
        return self._nc is not None and not self._nc.is_closed and self._streams_on is self._nc

    async def ensure_streams(self) -> list[StreamReport]:
        """Create or correct every stream from the operator's settings (`topology`), and report it."""
        js = await self.jetstream()
        reports = await topology.ensure_streams(js, self.settings)
        self._streams_on = self._nc
        if self.on_streams is not None:
            self.on_streams(reports)
        return reports

    async def stream_health(self) -> list[StreamHealth | str]:
        """Every Onceflow stream's settings and health (a name alone: the stream is missing)."""
        return await topology.stream_health(await self.jetstream())

    def namespace_ensured(self, namespace: str) -> bool:
        """True when the namespace's buckets were ensured on the connection open now."""
        return self.streams_ensured and namespace in self._buckets

    async def ensure_namespace(self, namespace: str) -> None:
        """The streams (once per connection) and the namespace's KV buckets (once per namespace and connection).

        Called for every kind: an EDI poller binds its namespace's bucket even where no Integration exists yet.
        """
        js = await self.jetstream()
        if self._streams_on is not self._nc:
            self._buckets.clear()
            await self.ensure_streams()
        if namespace not in self._buckets:
            await topology.ensure_buckets(js, namespace, self.settings)
            self._buckets.add(namespace)

    async def ensure_edi_outbound(self, plan: EdiPartnerPlan) -> None:
        """The consumer an EDI partner's pods read `sendEdi` documents from, after its namespace's topology."""
        await self.ensure_namespace(plan.namespace)
        await topology.ensure_edi_outbound(await self.jetstream(), plan)

    async def provision(self, plan: Plan) -> None:
        """Create or correct the main lane's consumers; once per connection the streams, once per namespace its buckets.

        Why not the streams every time: that is fourteen JetStream requests per reconcile, a
        thousand Integrations' resync apart; a stream deleted meanwhile is created again when
        the consumer's creation finds it missing.
        """
        js = await self.jetstream()
        await self.ensure_namespace(plan.namespace)
        try:
            await topology.ensure_lane(js, plan)
        except NotFoundError:
            await self.ensure_streams()
            await topology.ensure_lane(js, plan)

    async def apply_split(self, lanes: LaneState, main: Plan, canary: Plan | None, weight: int) -> int:
        """Publish a split marker when the weight in force must change; open the canary lane at its first marker.

        Returns the sequence of the newest marker (0 when there is none).
        """
        js = await self.jetstream()
        table = lanes.table
        subject = natsio.rollout_subject(main.nats, main.namespace, main.integration)
        opening = canary is not None and lanes.canary_floor is None
        if opening or (table is not None and table.weight != weight) or (table is None and weight != 0):
            # Only markers below *both* lanes' ack floors are forgotten: a lagging lane still judges by them.
            floors = [f for f in (lanes.main_floor, lanes.canary_floor) if f is not None]
            base = table.compacted(min(floors, default=0)) if table is not None else None
            table = await natsio.publish_split(js, subject, base, weight)
            lanes.table = table
        if opening and canary is not None and table is not None:
            await topology.ensure_lane(js, canary, "canary", start_sequence=table.last_sequence)
            lanes.canary_floor = 0
        return table.last_sequence if table is not None else 0

    async def remove_lane(self, plan: Plan, lane: Lane) -> bool:
        """Delete a lane's durable consumer and its advisory consumer; False when it was already gone."""
        return await self.remove_consumer(plan.nats.stream, natsio.lane_consumer(plan, lane))

    async def remove_consumer(self, stream: str, consumer: str) -> bool:
        """Delete a durable consumer and the consumer of its max-delivery advisories (the runners')."""
        js = await self.jetstream()
        await natsio.remove_consumer(js, subjects.ADVISORIES_STREAM, natsio.advisory_consumer(consumer))
        return await natsio.remove_consumer(js, stream, consumer)

    async def close(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.close()
