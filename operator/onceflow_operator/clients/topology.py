"""JetStream topology, owned by the operator: the streams, the consumers and the KV buckets.

Why the operator and nothing else: a stream's settings (replicas, limits, duplicate window,
placement) are the cluster's durability. When every pod created or updated the streams on start,
one pod start reset an SRE's limits and would have scaled an R3 stream down to R1. Now pods only
bind (`onceflow_runner.adapters.natsio.bind_*`: they look up what they need and wait, not ready,
until it exists), and this module is the one place that creates or corrects topology.

The rule for an existing stream is "enforce only what the operator was told" (`TopologySettings`):
a setting left unset keeps the stream's own value (an SRE's `nats stream edit` survives), a
setting given is applied, and the structural parts Onceflow depends on (subjects, the consumer
cap) are always put right. Replicas are never lowered except by an explicit `replicas` setting;
a change JetStream cannot make (the storage type of a live stream) is refused and reported, not
forced. Each call returns what it did per stream, for the operator's log and metrics.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from nats.js import JetStreamContext
from nats.js.api import (
    KeyValueConfig,
    Placement,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamInfo,
)
from nats.js.errors import NotFoundError

from onceflow_runner.adapters import natsio
from onceflow_runner.contract import subjects
from onceflow_runner.contract.durations import parse_duration
from onceflow_runner.contract.edi import EdiPartnerPlan
from onceflow_runner.contract.plan import Plan
from onceflow_runner.contract.split import Lane

__all__ = [
    "KEY_TTL",
    "MAX_CONSUMERS_PER_STREAM",
    "STREAM_MAX_AGE",
    "StreamHealth",
    "StreamReport",
    "TopologyError",
    "TopologySettings",
    "ensure_buckets",
    "ensure_edi_outbound",
    "ensure_lane",
    "ensure_plan",
    "ensure_streams",
    "namespace_buckets",
    "stream_health",
]

_DAY = 86400.0

#: Each stream's default max age, when the operator's settings do not give one.
STREAM_MAX_AGE: dict[str, float] = {
    subjects.IN_STREAM: 7 * _DAY,
    subjects.EVENTS_STREAM: 7 * _DAY,
    subjects.EXCEPTIONS_STREAM: 90 * _DAY,
    subjects.DECISIONS_STREAM: 90 * _DAY,
    subjects.DLQ_STREAM: 90 * _DAY,
    subjects.AUDIT_STREAM: 30 * _DAY,
    # JetStream's own advisories, kept so that no max-deliveries or termination goes unseen.
    subjects.ADVISORIES_STREAM: 30 * _DAY,
}
#: How long a completed business key is remembered (the keys bucket's TTL).
KEY_TTL = 90 * _DAY
#: Durable consumers one stream may hold. Set explicitly because nats-server (2.15 measured) caps a
#: stream that leaves `max_consumers` unset (-1) at 1,000: every Integration has a consumer per lane
#: on its trigger's stream, so the 1,001st Integration of a cluster could not be provisioned (the
#: "800 of 1,000 Ready" of issue #14, after 200 earlier ones). Raising it is allowed on a live stream.
MAX_CONSUMERS_PER_STREAM = 100_000

Storage = Literal["file", "memory"]


class TopologyError(ValueError):
    """An operator setting that cannot be read; the message names the variable and what to write."""


#: JetStream's most replicas for a stream (nats-server refuses more on create and update).
MAX_REPLICAS = 5


def _env_int(env: Mapping[str, str], name: str, minimum: int, maximum: int | None = None) -> int | None:
    text = env.get(name, "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise TopologyError(f"{name}={text!r} is not a whole number") from None
    if value < minimum:
        raise TopologyError(f"{name}={value} must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise TopologyError(f"{name}={value} must be at most {maximum}")
    return value


@dataclass(frozen=True)
class TopologySettings:
    """What the operator was told about its streams; None means "not told" (see the module's rule)."""

    replicas: int | None = None
    storage: Storage | None = None
    #: Bytes one stream may hold (-1: no limit).
    max_bytes: int | None = None
    #: Stream name -> max age in seconds, for the streams whose age was given.
    max_age: Mapping[str, float] = field(default_factory=dict)
    duplicate_window: float | None = None
    placement_cluster: str | None = None
    placement_tags: tuple[str, ...] | None = None
    #: Consumers one stream may hold when not MAX_CONSUMERS_PER_STREAM: in account mode, the
    #: account's consumer limit (JetStream refuses a stream whose cap exceeds its account's).
    max_consumers: int | None = None

    @property
    def consumer_cap(self) -> int:
        return self.max_consumers if self.max_consumers is not None else MAX_CONSUMERS_PER_STREAM

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> TopologySettings:
        """Read `ONCEFLOW_STREAM_*` (the chart's `jetstream` values); TopologyError names a bad one."""
        env = os.environ if env is None else env
        storage = env.get("ONCEFLOW_STREAM_STORAGE", "").strip().lower() or None
        if storage not in (None, "file", "memory"):
            raise TopologyError(f"ONCEFLOW_STREAM_STORAGE={storage!r} must be file or memory")
        ages: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in env.get("ONCEFLOW_STREAM_MAX_AGE", "").split(","))):
            stream, _, text = part.partition("=")
            if stream not in STREAM_MAX_AGE:
                raise TopologyError(
                    f"ONCEFLOW_STREAM_MAX_AGE: {stream!r} is not an Onceflow stream ({', '.join(STREAM_MAX_AGE)})"
                )
            try:
                ages[stream] = parse_duration(text, days=True)
            except ValueError as exc:
                raise TopologyError(f"ONCEFLOW_STREAM_MAX_AGE: {stream}: {exc}") from None
        window = env.get("ONCEFLOW_STREAM_DUPLICATE_WINDOW", "").strip()
        tags = env.get("ONCEFLOW_STREAM_PLACEMENT_TAGS", "").strip()
        try:
            duplicate_window = parse_duration(window) if window else None
        except ValueError as exc:
            raise TopologyError(f"ONCEFLOW_STREAM_DUPLICATE_WINDOW: {exc}") from None
        if duplicate_window is not None:
            # JetStream refuses both on every create and update: say so once, at start.
            if duplicate_window <= 0:
                raise TopologyError(f"ONCEFLOW_STREAM_DUPLICATE_WINDOW={window} must be longer than 0")
            for stream, age in {**STREAM_MAX_AGE, **ages}.items():
                if age and duplicate_window > age:
                    raise TopologyError(
                        f"ONCEFLOW_STREAM_DUPLICATE_WINDOW={window} is longer than {stream}'s max age"
                        " (ONCEFLOW_STREAM_MAX_AGE): JetStream refuses that; shorten the window or lengthen the age"
                    )
        return cls(
            replicas=_env_int(env, "ONCEFLOW_STREAM_REPLICAS", 1, MAX_REPLICAS),
            storage=storage,  # type: ignore[arg-type]
            max_bytes=_env_int(env, "ONCEFLOW_STREAM_MAX_BYTES", -1),
            max_age=ages,
            duplicate_window=duplicate_window,
            placement_cluster=env.get("ONCEFLOW_STREAM_PLACEMENT_CLUSTER", "").strip() or None,
            placement_tags=tuple(t.strip() for t in tags.split(",") if t.strip()) or None,
        )

    @property
    def placement(self) -> Placement | None:
        if self.placement_cluster is None and self.placement_tags is None:
            return None
        return Placement(cluster=self.placement_cluster, tags=list(self.placement_tags or []) or None)


@dataclass(frozen=True)
class StreamReport:
    """What one ensure did to one stream: created, updated (with the changes), unchanged or refused."""

    stream: str
    action: Literal["created", "updated", "unchanged", "refused"]
    changes: tuple[str, ...] = ()
    message: str = ""


def _new_config(name: str, settings: TopologySettings) -> StreamConfig:
    """A stream as Onceflow creates it: the defaults, with what the operator was told."""
    return StreamConfig(
        name=name,
        subjects=subjects.stream_subjects(name),
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.MEMORY if settings.storage == "memory" else StorageType.FILE,
        max_age=settings.max_age.get(name, STREAM_MAX_AGE[name]),
        max_bytes=settings.max_bytes if settings.max_bytes is not None else -1,
        num_replicas=settings.replicas or 1,
        duplicate_window=(
            settings.duplicate_window
            if settings.duplicate_window is not None
            else float(subjects.DUPLICATE_WINDOW_SECONDS)
        ),
        max_consumers=settings.consumer_cap,
        placement=settings.placement,
        # Direct gets by subject are how a namespace's processes read split markers: a permission
        # can name the subject (`$JS.API.DIRECT.GET.<stream>.onceflow.<ns>.>`), unlike STREAM.MSG.GET.
        allow_direct=True,
    )


def _corrected(name: str, current: StreamConfig, settings: TopologySettings) -> tuple[StreamConfig, list[str], str]:
    """The config an existing stream should have, the fields that change, and why it is refused ('' when not)."""
    wanted: dict[str, object] = {
        "subjects": subjects.stream_subjects(name),
        "max_consumers": (
            settings.consumer_cap
            if settings.max_consumers is not None
            else max(MAX_CONSUMERS_PER_STREAM, current.max_consumers or -1)
        ),
        "allow_direct": True,
    }
    if settings.replicas is not None:
        wanted["num_replicas"] = settings.replicas
    if settings.max_bytes is not None:
        wanted["max_bytes"] = settings.max_bytes
    if name in settings.max_age:
        wanted["max_age"] = settings.max_age[name]
    if settings.duplicate_window is not None:
        wanted["duplicate_window"] = settings.duplicate_window
    if settings.placement is not None:
        wanted["placement"] = settings.placement
    if current.max_consumers in (None, -1, 0):
        wanted["max_consumers"] = settings.consumer_cap
    changes = [
        f"{key}: {getattr(current, key)!r} -> {value!r}"
        for key, value in wanted.items()
        if _differs(getattr(current, key), value)
    ]
    refusal = ""
    if settings.storage is not None and _storage(current.storage) != settings.storage:
        refusal = (
            f"stream {name} is stored on {_storage(current.storage)}, the operator is set to "
            f"{settings.storage}: JetStream cannot change a live stream's storage; move it by hand or unset the setting"
        )
    return dataclasses.replace(current, **wanted), changes, refusal  # type: ignore[arg-type]


def _storage(value: object) -> str:
    """A stream's storage as a word (nats-py gives the enum, or the server's string, or nothing for file)."""
    return value.value if isinstance(value, StorageType) else str(value or "file")


def _differs(have: object, want: object) -> bool:
    if isinstance(have, list) and isinstance(want, list):
        return sorted(map(str, have)) != sorted(map(str, want))
    if isinstance(have, Placement) or isinstance(want, Placement):
        h = (getattr(have, "cluster", None), sorted(getattr(have, "tags", None) or []))
        w = (getattr(want, "cluster", None), sorted(getattr(want, "tags", None) or []))
        return h != w
    if isinstance(have, float | int) and isinstance(want, float | int):
        return abs(float(have) - float(want)) > 1e-6
    return have != want


async def ensure_streams(
    js: JetStreamContext, settings: TopologySettings | None = None, *, replicas: int | None = None
) -> list[StreamReport]:
    """Create every Onceflow stream that is missing and correct the ones that exist (see the module's rule).

    `replicas` is a shortcut for `TopologySettings(replicas=...)` (tests, a 3-node harness).
    """
    settings = settings or TopologySettings()
    if replicas is not None:
        settings = dataclasses.replace(settings, replicas=replicas)
    reports = []
    for name in STREAM_MAX_AGE:
        try:
            info = await js.stream_info(name)
        except NotFoundError:
            await js.add_stream(_new_config(name, settings))
            reports.append(StreamReport(name, "created"))
            continue
        target, changes, refusal = _corrected(name, info.config, settings)
        if refusal:
            reports.append(StreamReport(name, "refused", tuple(changes), refusal))
        elif changes:
            await js.update_stream(target)
            reports.append(StreamReport(name, "updated", tuple(changes)))
        else:
            reports.append(StreamReport(name, "unchanged"))
    return reports


def namespace_buckets(namespace: str) -> dict[str, KeyValueConfig]:
    """The KV buckets of one namespace: completed business keys, poll leases and watermarks, EDI state."""
    return {
        subjects.kv_bucket(namespace): KeyValueConfig(bucket=subjects.kv_bucket(namespace), history=1, ttl=KEY_TTL),
        subjects.poll_bucket(namespace): KeyValueConfig(bucket=subjects.poll_bucket(namespace), history=1),
        subjects.edi_bucket(namespace): KeyValueConfig(bucket=subjects.edi_bucket(namespace), history=1),
    }


async def ensure_buckets(js: JetStreamContext, namespace: str, settings: TopologySettings | None = None) -> list[str]:
    """Create the namespace's KV buckets that are missing; return the ones created.

    An existing bucket is left as it is, except that an explicit `replicas` setting is applied to
    the stream behind it (so an R3 cluster's buckets follow its streams), and per-message TTLs
    are turned on where a bucket made by an older version has them off (the EDI bucket's history
    expires by them; JetStream allows turning them on, never off).
    """
    settings = settings or TopologySettings()
    created = []
    for bucket, config in namespace_buckets(namespace).items():
        stream = subjects.kv_stream(bucket)
        try:
            info = await js.stream_info(stream)
        except NotFoundError:
            config.replicas = settings.replicas or 1
            config.storage = StorageType.MEMORY if settings.storage == "memory" else StorageType.FILE
            if settings.placement is not None:
                config.placement = settings.placement
            await js.create_key_value(config)
            created.append(bucket)
            continue
        wanted = info.config
        if settings.replicas is not None and info.config.num_replicas != settings.replicas:
            wanted = dataclasses.replace(wanted, num_replicas=settings.replicas)
        if not info.config.allow_msg_ttl:
            wanted = dataclasses.replace(wanted, allow_msg_ttl=True)
        if wanted != info.config:
            await js.update_stream(wanted)
    return created


async def ensure_lane(js: JetStreamContext, plan: Plan, lane: Lane = "main", start_sequence: int | None = None) -> None:
    """Create or correct a lane's durable consumer and the consumer of its max-delivery advisories.

    JetStream creates a consumer, or updates one whose editable fields differ, so this is also how
    a consumer's drift is put right.
    """
    await js.add_consumer(plan.nats.stream, natsio.consumer_config(plan, lane, start_sequence))
    await js.add_consumer(subjects.ADVISORIES_STREAM, natsio.advisory_config(plan, lane))


async def ensure_edi_outbound(js: JetStreamContext, plan: EdiPartnerPlan) -> None:
    """Create or correct the consumer an EDI partner's pods read `sendEdi` documents from (when it sends any)."""
    if plan.send:
        await js.add_consumer(subjects.IN_STREAM, natsio.edi_outbound_config(plan))


async def ensure_plan(js: JetStreamContext, plan: Plan, settings: TopologySettings | None = None) -> None:
    """Everything a plan's main lane binds to: the streams, the namespace's buckets, the consumers.

    For the tools that run data-plane processes without an operator (`onceflow local run`, test
    harnesses); the operator itself ensures streams once per connection and buckets once per namespace.
    """
    await ensure_streams(js, settings)
    await ensure_buckets(js, plan.namespace, settings)
    await ensure_lane(js, plan)


@dataclass(frozen=True)
class StreamHealth:
    """One stream as an SRE wants to see it: its settings, its leader and replicas, what it holds."""

    stream: str
    replicas: int
    storage: str
    max_bytes: int
    max_age: float
    duplicate_window: float
    leader: str
    #: Replicas that are current (leader included).
    current: int
    #: Replicas (not the leader) that are offline or not current.
    lagging: tuple[str, ...]
    bytes: int
    messages: int
    consumers: int

    @classmethod
    def of(cls, info: StreamInfo) -> StreamHealth:
        config, state, cluster = info.config, info.state, info.cluster
        peers = list(cluster.replicas or []) if cluster is not None else []
        lagging = tuple(str(p.name) for p in peers if p.offline or not p.current)
        replicas = int(config.num_replicas or 1)
        return cls(
            stream=str(config.name),
            replicas=replicas,
            storage=_storage(config.storage),
            max_bytes=int(config.max_bytes if config.max_bytes is not None else -1),
            max_age=float(config.max_age or 0),
            duplicate_window=float(config.duplicate_window or 0),
            leader=str(cluster.leader or "") if cluster is not None else "",
            current=replicas - len(lagging) if peers or replicas == 1 else 0,
            lagging=lagging,
            bytes=int(state.bytes or 0),
            messages=int(state.messages or 0),
            consumers=int(state.consumer_count or 0),
        )


async def stream_health(js: JetStreamContext, names: list[str] | None = None) -> list[StreamHealth | str]:
    """Each Onceflow stream's health, or the stream's name when it does not exist (yet)."""
    found: list[StreamHealth | str] = []
    for name in names or list(STREAM_MAX_AGE):
        try:
            found.append(StreamHealth.of(await js.stream_info(name)))
        except NotFoundError:
            found.append(name)
    return found
