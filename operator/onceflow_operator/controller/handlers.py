"""Kopf handlers: registration only. The work is in `connector.py`, `integration.py`, `syncpolicy.py`.

Set-up follows Kopf's advice for well-behaved operators: our own finalizer and annotation
prefix (`onceflow.io/...`), no handler results in status (handlers return None and write
status through the typed reconcile outcome), bounded retries, watch timeouts. Every handler
is level-based: create, update, resume and a timer all run the same idempotent reconcile, so
changes in what an object references (a Secret, a Connector, a Deployment's availability) are
picked up within one timer interval; an Integration that waits for a person's fix is looked at
with a growing delay instead (`controller.backoff`). Events repeat as one counted Event
(`build.events`), and a reconcile overtaken by a newer generation records none.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from datetime import UTC, datetime
from typing import Any

import kopf

from onceflow_operator.api.names import (
    ACTION_ANNOTATION,
    API_VERSION,
    FINALIZER,
    GROUP,
    LABEL_CONNECTOR,
    LABEL_INTEGRATION,
    LABEL_PART_OF,
    STORAGE_PREFIX,
    VERSION,
)
from onceflow_operator.clients.accounts import AccountError, NatsLinks
from onceflow_operator.clients.kube import KubeClient, KubeError
from onceflow_operator.clients.kubeconfig import KubeconfigError, kubeconfig_files, load_kubeconfig
from onceflow_operator.controller.backoff import FixBackoff
from onceflow_operator.controller.connector import edi_outbound_plan, is_available, probe_connector, reconcile_connector
from onceflow_operator.controller.figures import FigureBook, exception_counts
from onceflow_operator.controller.integration import finalize_integration, lane_state, reconcile_integration
from onceflow_operator.controller.metrics import (
    AVAILABILITY_RECONCILES,
    CONNECTOR_AUTHENTICATED,
    CONNECTOR_PROBE_SECONDS,
    CONNECTOR_REACHABLE,
    DECISION_SECONDS,
    DECISIONS_LAST_HOUR,
    DUPLICATES_CAUGHT,
    EXCEPTIONS_OLDEST,
    EXCEPTIONS_WAITING,
    MANAGED,
    RECONCILE_DURATION,
    RECONCILES,
    ROLLOUT_EVENTS,
)
from onceflow_operator.controller.settings import OperatorConfig
from onceflow_operator.controller.status import ReconcileResult, checked_status, status_changes
from onceflow_operator.controller.streams import record_reports, watch_streams
from onceflow_operator.controller.syncpolicy import reconcile_syncpolicy
from onceflow_operator.controller.view import (
    IndexedView,
    connector_record,
    owned_record,
    revision_record,
)
from onceflow_operator.review.exceptions import list_exceptions, review_figures

__all__ = ["ACTION_ANNOTATION", "RECONCILE_SECONDS"]

RECONCILE_SECONDS = float(os.environ.get("ONCEFLOW_RECONCILE_SECONDS", "30"))
RETRIES = 10
#: Integration reconciles running at once (the others queue).
RECONCILE_CONCURRENCY = int(os.environ.get("ONCEFLOW_RECONCILE_CONCURRENCY", "16"))
#: Longest wait between two looks at an Integration that needs a person's fix (see `controller.backoff`).
FIX_BACKOFF_CAP = max(RECONCILE_SECONDS, min(10 * RECONCILE_SECONDS, 300.0))
#: How often the exception and decision gauges are read from the streams.
REVIEW_SECONDS = float(os.environ.get("ONCEFLOW_REVIEW_SECONDS", "60"))
#: How long a reconcile waits for a namespace's account push (account mode) before going on.
ACCOUNT_PUSH_SECONDS = 15.0
#: How often the streams' health (replicas, leader, lag, bytes) is read into the metrics.
STREAM_HEALTH_SECONDS = float(os.environ.get("ONCEFLOW_STREAM_HEALTH_SECONDS", "30"))


@kopf.on.login()
async def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """Log Kopf in the way `KubeClient` and the CLI connect (`clients.kubeconfig`), else the pod's service account.

    Why our own: with kubernetes_asyncio installed, Kopf's default login goes through it and reads
    the KUBECONFIG of the moment the library was first imported; one loader for the operator's
    watches, its client and the CLI means they always talk to the same cluster as the same user
    (merged KUBECONFIG files, exec credential plugins included).
    """
    try:
        kubeconfig_files()
    except KubeconfigError:
        return kopf.login_with_service_account(**kwargs)
    target = load_kubeconfig()
    credentials = await target.credentials()
    scheme, _, token = credentials.headers.get("Authorization", "").partition(" ")
    return kopf.ConnectionInfo(
        server=credentials.server,
        ca_data=credentials.ca_data,
        insecure=not credentials.verify,
        scheme=scheme or None,
        token=token or None,
        certificate_data=credentials.cert_data,
        private_key_data=credentials.key_data,
        default_namespace=target.namespace,
    )


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=STORAGE_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=STORAGE_PREFIX, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.queueing.error_delays = [1, 5, 15, 30, 60]
    # The watches behind the indexes stream only Onceflow's own objects (a server-side selector),
    # not every Deployment and ConfigMap of the cluster. Secrets are never watched (RBAC cannot
    # narrow a watch to labelled ones): they are read one by one.
    for group, plural in _OWNED_RESOURCES:
        settings.watching.label_selectors[group, plural] = f"{LABEL_PART_OF}=onceflow"
    memo.kube = KubeClient.from_environment()
    memo.cluster = IndexedView(memo.kube, {})
    # At most this many Integration reconciles at once: a thousand at once (one apply) only makes
    # each slower and the API server and NATS time out; the rest wait their turn.
    memo.reconciling = asyncio.Semaphore(RECONCILE_CONCURRENCY)
    memo.lanes = {}
    memo.config = OperatorConfig.from_environment()
    memo.book = FigureBook()
    memo.backoff = FixBackoff(base=RECONCILE_SECONDS, cap=FIX_BACKOFF_CAP)
    memo.nats = NatsLinks(
        memo.config.nats_url, memo.book.record, memo.config.topology, record_reports, accounts=memo.config.accounts
    )
    memo.topology_tasks = {}
    memo.streams_stop = asyncio.Event()
    memo.streams_task = asyncio.create_task(watch_streams(memo.nats, memo.streams_stop, STREAM_HEALTH_SECONDS))


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    memo.streams_stop.set()
    await memo.streams_task
    await memo.kube.close()
    await memo.nats.close()


async def _record_events(kind: str, body: Any, memo: kopf.Memo, outcome: ReconcileResult) -> None:
    for reason, message, warning in outcome.events:
        try:
            await memo.kube.event(dict(body), reason=reason, message=message, warning=warning)
        except KubeError:
            logging.getLogger("onceflow.operator").warning("could not record event %s on %s", reason, kind)


def _kopf_error(exc: KubeError) -> Exception:
    """Conflicts, throttling and server errors are retried; anything else is reported once."""
    if exc.status in {409, 429} or exc.status >= 500:
        return kopf.TemporaryError(f"API server answered {exc}; retrying", delay=5)
    return kopf.PermanentError(f"API server refused a request: {exc}")


async def _account_first(memo: kopf.Memo, namespace: str) -> None:
    """Account mode: the servers know the namespace's account before its pods get users of it.

    Otherwise a new namespace's first pods would be refused at connect and restart with a growing
    back-off. A refusal is logged (naming what to check) and the reconcile goes on: its NATS steps
    report the same in the objects' status.
    """
    try:
        await asyncio.wait_for(memo.nats.link(namespace), ACCOUNT_PUSH_SECONDS)  # NATS away: not held up
    except Exception as exc:
        why = str(exc) if isinstance(exc, AccountError) else type(exc).__name__
        logging.getLogger("onceflow.operator").warning("NATS account of %s not pushed (%s); retrying", namespace, why)


def _ensure_topology_soon(memo: kopf.Memo, namespace: str) -> None:
    """Ensure in the background what the namespace's pods bind to.

    An EDI poller needs its bucket before any Integration exists; a background task never holds a
    reconcile up when NATS is slow or away.
    """
    if not memo.nats.namespace_ensured(namespace) and namespace not in memo.topology_tasks:

        async def ensure() -> None:
            try:
                await memo.nats.ensure_namespace(namespace)
            except Exception as exc:  # NATS away: the next reconcile tries again
                why = str(exc) if isinstance(exc, AccountError) else type(exc).__name__
                logging.getLogger("onceflow.operator").warning(
                    "JetStream topology of %s not ensured (%s); retrying", namespace, why
                )
            finally:
                memo.topology_tasks.pop(namespace, None)

        memo.topology_tasks[namespace] = asyncio.create_task(ensure())


async def _reconciled(kind: str, body: Any, memo: kopf.Memo, work: Any) -> ReconcileResult:
    """Await one reconcile, counting and timing it; API errors become Kopf's retry decisions."""
    started = time.perf_counter()
    try:
        namespace = body["metadata"]["namespace"]
        if memo.nats.accounts is not None:
            await _account_first(memo, namespace)
        if memo.config.identities is not None:  # the namespace's NATS user exists before any of its pods
            await memo.config.identities.ensure(
                memo.kube,
                namespace,
                body if kind == "Integration" else None,
                edi=edi_outbound_plan(body) if kind == "Connector" else None,
            )
        if memo.config.trace_keys is not None and kind == "Integration":  # before its runners read it
            await memo.config.trace_keys.ensure(memo.kube, namespace)
        _ensure_topology_soon(memo, namespace)
        outcome: ReconcileResult = await work
    except KubeError as exc:
        RECONCILES.labels(kind=kind, reason="ApiError").inc()
        raise _kopf_error(exc) from None
    finally:
        RECONCILE_DURATION.labels(kind=kind).observe(time.perf_counter() - started)
    ready: dict[str, Any] = next((c for c in outcome.status.get("conditions", []) if c["type"] == "Ready"), {})
    RECONCILES.labels(kind=kind, reason=ready.get("reason", "Unknown")).inc()
    memo.setdefault("managed", {}).setdefault(kind, set()).add(body["metadata"]["uid"])
    MANAGED.labels(kind=kind).set(len(memo["managed"][kind]))
    memo.setdefault("namespace_objects", {}).setdefault(namespace, set()).add(body["metadata"]["uid"])
    return outcome


async def _run(kind: str, body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, work: Any) -> None:
    """Reconcile, then write status through the handler's patch (only when it changes) and record the Events."""
    outcome = await _reconciled(kind, body, memo, work)
    status = checked_status(kind, outcome.status)
    if status_changes(body.get("status"), status):
        patch.status.update(status)
    await _record_events(kind, body, memo, outcome)


#: The kinds the operator creates, watched (label app.kubernetes.io/part-of=onceflow) for its indexes.
_OWNED_RESOURCES = [
    ("apps", "deployments"),
    ("apps", "controllerrevisions"),
    ("v1", "configmaps"),
    ("v1", "services"),
    ("batch", "cronjobs"),
]
_OWNED = {LABEL_PART_OF: "onceflow"}
_INDEXES = {
    "connector_index": "connectors",
    "owned_deployments": "Deployment",
    "owned_revisions": "ControllerRevision",
    "owned_configmaps": "ConfigMap",
    "owned_services": "Service",
    "owned_cronjobs": "CronJob",
}


def _cluster(memo: kopf.Memo, kwargs: dict[str, Any]) -> IndexedView:
    """The operator's view of the cluster, over the indexes Kopf hands to this handler call."""
    view: IndexedView = memo.cluster
    return view.attach({kind: kwargs[name] for name, kind in _INDEXES.items() if name in kwargs})


@kopf.index(GROUP, VERSION, "connectors")
def connector_index(body: kopf.Body, **_: Any) -> dict[Any, Any]:
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    return {namespace: (name, connector_record(body))}


@kopf.index("apps", "v1", "deployments", labels=_OWNED)
def owned_deployments(body: kopf.Body, **_: Any) -> dict[Any, Any]:
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    return {("Deployment", namespace, name): owned_record(body, "Deployment")}


@kopf.index("apps", "v1", "controllerrevisions", labels=_OWNED)
def owned_revisions(body: kopf.Body, **_: Any) -> dict[Any, Any]:
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    labels = body["metadata"].get("labels") or {}
    found: dict[Any, Any] = {("ControllerRevision", namespace, name): owned_record(body, "ControllerRevision")}
    if LABEL_INTEGRATION in labels:
        found[namespace, labels[LABEL_INTEGRATION]] = revision_record(body)
    return found


@kopf.index("v1", "configmaps", labels=_OWNED)
def owned_configmaps(body: kopf.Body, **_: Any) -> dict[Any, Any]:
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    return {("ConfigMap", namespace, name): owned_record(body, "ConfigMap")}


@kopf.index("v1", "services", labels=_OWNED)
def owned_services(body: kopf.Body, **_: Any) -> dict[Any, Any]:
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    return {("Service", namespace, name): owned_record(body, "Service")}


@kopf.index("batch", "v1", "cronjobs", labels=_OWNED)
def owned_cronjobs(body: kopf.Body, **_: Any) -> dict[Any, Any]:
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    return {("CronJob", namespace, name): owned_record(body, "CronJob")}


@kopf.on.event("apps", "v1", "deployments", labels=_OWNED)
async def deployment_changed(body: kopf.Body, type: str | None, memo: kopf.Memo, **kwargs: Any) -> None:
    """A runner or gateway Deployment changed availability: reconcile its owner now, not at the next resync.

    The first sight of each Deployment (the operator's start, or one it just created) only records
    its state: the owner's own resume or create handler is already reconciling it.
    """
    meta, labels = body["metadata"], body["metadata"].get("labels") or {}
    namespace, name = meta["namespace"], meta["name"]
    integration, connector_name = labels.get(LABEL_INTEGRATION), labels.get(LABEL_CONNECTOR)
    if type == "DELETED":
        state: Any = None
    elif integration:
        state = lane_state(body)
    else:
        state = is_available(body)
    key = (namespace, name)
    seen = key in memo.lanes
    previous = memo.lanes.pop(key, None) if type == "DELETED" else memo.lanes.get(key)
    if type != "DELETED":
        memo.lanes[key] = state
    if not seen or previous == state:
        return
    if integration:
        AVAILABILITY_RECONCILES.labels(kind="Integration").inc()
        await _reconcile_integration(namespace, integration, memo, kwargs)
    elif connector_name:
        AVAILABILITY_RECONCILES.labels(kind="Connector").inc()
        await _reconcile_connector_now(namespace, connector_name, memo, kwargs)


async def _reconcile_connector_now(namespace: str, name: str, memo: kopf.Memo, kwargs: dict[str, Any]) -> None:
    """Reconcile a webhook Connector outside its own handler (its gateway changed): status written here."""
    try:
        fresh = await memo.kube.get(API_VERSION, "Connector", namespace, name)
        if fresh is None:
            return
        cluster = _cluster(memo, kwargs)
        outcome = await _reconciled(
            "Connector", fresh, memo, reconcile_connector(memo.kube, fresh, memo.config, cluster=cluster)
        )
        status = checked_status("Connector", outcome.status)
        if status_changes(fresh.get("status"), status):
            await memo.kube.patch_status(API_VERSION, "Connector", namespace, name, status)
    except KubeError as exc:
        raise _kopf_error(exc) from None
    await _record_events("Connector", fresh, memo, outcome)


@kopf.on.resume(GROUP, VERSION, "connectors", retries=RETRIES)
@kopf.on.create(GROUP, VERSION, "connectors", retries=RETRIES)
@kopf.on.update(GROUP, VERSION, "connectors", retries=RETRIES)
@kopf.timer(GROUP, VERSION, "connectors", interval=RECONCILE_SECONDS, initial_delay=RECONCILE_SECONDS)
async def connector(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **kwargs: Any) -> None:
    # The last probe of this generation (a changed spec, e.g. fixed auth, waits for its own probe).
    generation, probed = memo.setdefault("probes", {}).get(body["metadata"]["uid"], (None, None))
    probed = probed if generation == body["metadata"].get("generation") else None
    cluster = _cluster(memo, kwargs)
    await _run(
        "Connector",
        body,
        patch,
        memo,
        reconcile_connector(memo.kube, body, memo.config, probed=probed, cluster=cluster),
    )
    plan = edi_outbound_plan(body)
    if plan is not None:
        try:  # NATS away must not hold the Connector's status up: the next reconcile tries again
            await memo.nats.ensure_edi_outbound(plan)
        except Exception as exc:
            logging.getLogger("onceflow.operator").warning(
                "EDI outbound consumer of %s/%s not ensured (%s); retrying",
                plan.namespace,
                plan.connector,
                type(exc).__name__,
            )


@kopf.timer(
    GROUP,
    VERSION,
    "connectors",
    interval=60,
    initial_delay=1,
    when=lambda spec, **_: spec.get("type") == "REST",
)
async def probe(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    """Probe; the status is written only when the outcome changes (every probe's figures are metrics)."""
    status = await probe_connector(memo.kube, body)
    # Written again by each reconcile of this generation (see controller.connector.with_probe).
    memo.setdefault("probes", {})[body["metadata"]["uid"]] = (body["metadata"].get("generation"), status)
    reachable: dict[str, Any] = next((c for c in status["conditions"] if c["type"] == "Reachable"), {})
    meta = body["metadata"]
    CONNECTOR_REACHABLE.labels(namespace=meta["namespace"], connector=meta["name"]).set(
        1 if reachable.get("status") == "True" else 0
    )
    authenticated: dict[str, Any] = next((c for c in status["conditions"] if c["type"] == "Authenticated"), {})
    if authenticated:
        CONNECTOR_AUTHENTICATED.labels(namespace=meta["namespace"], connector=meta["name"]).set(
            1 if authenticated.get("status") == "True" else 0
        )
    CONNECTOR_PROBE_SECONDS.labels(namespace=meta["namespace"], connector=meta["name"]).set(
        status["lastProbeLatencyMs"] / 1000
    )
    clock = ("lastProbeTime", "lastProbeLatencyMs")
    before = {k: v for k, v in (body.get("status") or {}).items() if k not in clock}
    if status_changes(before, {k: v for k, v in status.items() if k not in clock}):
        patch.status.update(checked_status("Connector", status))


@kopf.on.resume(GROUP, VERSION, "integrations", retries=RETRIES)
@kopf.on.create(GROUP, VERSION, "integrations", retries=RETRIES)
@kopf.on.update(GROUP, VERSION, "integrations", retries=RETRIES)
async def integration(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    await _reconcile_integration(body["metadata"]["namespace"], body["metadata"]["name"], memo, kwargs)


@kopf.timer(GROUP, VERSION, "integrations", interval=RECONCILE_SECONDS, initial_delay=RECONCILE_SECONDS)
async def integration_resync(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    # An Integration waiting for a fix is looked at again with a growing delay, not every tick.
    meta = body["metadata"]
    last = memo.setdefault("reconciled_at", {}).get((meta["namespace"], meta["name"]), 0.0)
    if time.monotonic() - last < RECONCILE_SECONDS * 0.8:
        return  # a change (its own, a Deployment's) reconciled it within this interval already
    if memo.backoff.due(meta["uid"], int(meta.get("generation", 1)), time.monotonic()):
        await _reconcile_integration(meta["namespace"], meta["name"], memo, kwargs)


async def _reconcile_integration(namespace: str, name: str, memo: kopf.Memo, kwargs: dict[str, Any]) -> None:
    # Change handlers, the timer and a Deployment's change may fire together; a rollout moves one
    # reconcile at a time.
    lock = memo.setdefault("locks", {}).setdefault((namespace, name), asyncio.Lock())
    async with lock, memo.reconciling:
        # Kopf hands each handler the body it saw when it was queued, and applies a handler's patch
        # only after it returns. A rollout must build on the status the previous reconcile wrote,
        # or a step (or a verb) would be undone: so read the object fresh and write status here.
        api = API_VERSION
        try:
            fresh = await memo.kube.get(api, "Integration", namespace, name)
        except KubeError as exc:
            raise _kopf_error(exc) from None
        if fresh is None:
            return
        generation = int(fresh["metadata"].get("generation", 1))
        action = (fresh["metadata"].get("annotations") or {}).get(ACTION_ANNOTATION)
        outcome = await _reconciled(
            "Integration",
            fresh,
            memo,
            reconcile_integration(
                memo.kube, fresh, memo.config, memo.nats, action, book=memo.book, cluster=_cluster(memo, kwargs)
            ),
        )
        try:
            status = checked_status("Integration", outcome.status)
            written = fresh
            if status_changes(fresh.get("status"), status):  # a steady state writes nothing
                written = await memo.kube.patch_status(api, "Integration", namespace, name, status)
            if action is not None:  # a verb is done once; removing it is a metadata change Argo CD ignores
                await memo.kube.annotate(api, "Integration", namespace, name, {ACTION_ANNOTATION: None})
        except KubeError as exc:
            raise _kopf_error(exc) from None
        memo.backoff.record(fresh["metadata"]["uid"], generation, needs_fix=outcome.needs_fix, now=time.monotonic())
        memo.setdefault("reconciled_at", {})[namespace, name] = time.monotonic()
        if int((written or {}).get("metadata", {}).get("generation", generation)) != generation:
            return  # the spec changed meanwhile: what was found is about an outdated generation; say nothing
        for reason, _message, _warning in outcome.events:
            ROLLOUT_EVENTS.labels(namespace=namespace, integration=name, reason=reason).inc()
        await _record_events("Integration", fresh, memo, outcome)


@kopf.timer(GROUP, VERSION, "integrations", interval=REVIEW_SECONDS, initial_delay=5)
async def review_metrics(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Exceptions waiting, decisions and time to decision, read from the streams into gauges and figures."""
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    try:
        records = [r for r in await _namespace_exceptions(namespace, memo) if r.integration == name]
    except Exception:  # NATS away: keep the last values; the next tick tries again
        return
    memo.book.record_exceptions(namespace, name, exception_counts(records))
    figures = review_figures(records, datetime.now(UTC))
    seen = memo.setdefault("review_labels", {}).setdefault((namespace, name), {"reason": set(), "action": set()})
    for reason in seen["reason"] | set(figures.waiting_by_reason):
        EXCEPTIONS_WAITING.labels(namespace, name, reason).set(figures.waiting_by_reason.get(reason, 0))
    for action in seen["action"] | set(figures.decisions_last_hour):
        DECISIONS_LAST_HOUR.labels(namespace, name, action).set(figures.decisions_last_hour.get(action, 0))
    seen["reason"] |= set(figures.waiting_by_reason)
    seen["action"] |= set(figures.decisions_last_hour)
    for entity in seen.setdefault("entity", set()) | set(figures.duplicates_caught):
        DUPLICATES_CAUGHT.labels(namespace, name, entity).set(figures.duplicates_caught.get(entity, 0))
    seen["entity"] |= set(figures.duplicates_caught)
    EXCEPTIONS_OLDEST.labels(namespace, name).set(figures.oldest_waiting_seconds)
    DECISION_SECONDS.labels(namespace, name).set(figures.mean_seconds_to_decision_last_hour)


async def _namespace_exceptions(namespace: str, memo: kopf.Memo) -> list[Any]:
    """The namespace's parked records, read once per half review interval and shared by its Integrations.

    Why: each read scans two streams; one per Integration per minute is, at a thousand
    Integrations, tens of stream scans a second for the same few records.
    """
    reads: dict[str, tuple[float, asyncio.Future[list[Any]]]] = memo.setdefault("exception_reads", {})
    at, read = reads.get(namespace, (0.0, None))
    if read is None or time.monotonic() - at > REVIEW_SECONDS / 2 or (read.done() and read.exception()):
        js = await memo.nats.jetstream(namespace)
        read = asyncio.ensure_future(list_exceptions(js, namespace, include_decided=True))
        reads[namespace] = (time.monotonic(), read)
    return await asyncio.shield(read)


@kopf.on.delete(GROUP, VERSION, "integrations", retries=RETRIES, backoff=5)
async def integration_deleted(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _forget("Integration", body, memo)
    try:
        await finalize_integration(body, memo.nats)
    except Exception as exc:
        raise kopf.TemporaryError(f"could not remove the JetStream consumer ({type(exc).__name__})", delay=10) from None
    await _release_namespace(body, memo)


@kopf.on.resume(GROUP, VERSION, "syncpolicies", retries=RETRIES)
@kopf.on.create(GROUP, VERSION, "syncpolicies", retries=RETRIES)
@kopf.on.update(GROUP, VERSION, "syncpolicies", retries=RETRIES)
@kopf.timer(GROUP, VERSION, "syncpolicies", interval=RECONCILE_SECONDS, initial_delay=RECONCILE_SECONDS)
async def syncpolicy(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **kwargs: Any) -> None:
    work = reconcile_syncpolicy(memo.kube, body, memo.config, memo.nats, cluster=_cluster(memo, kwargs))
    await _run("SyncPolicy", body, patch, memo, work)


def _forget(kind: str, body: kopf.Body, memo: kopf.Memo) -> None:
    key = (body["metadata"]["namespace"], body["metadata"]["name"])
    memo.setdefault("locks", {}).pop(key, None)
    memo.setdefault("reconciled_at", {}).pop(key, None)
    memo.setdefault("probes", {}).pop(body["metadata"]["uid"], None)
    memo.backoff.forget(body["metadata"]["uid"])
    managed = memo.setdefault("managed", {}).setdefault(kind, set())
    managed.discard(body["metadata"]["uid"])
    MANAGED.labels(kind=kind).set(len(managed))


@kopf.on.delete(GROUP, VERSION, "connectors", optional=True)
async def connector_deleted(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _forget("Connector", body, memo)
    await _release_namespace(body, memo)


@kopf.on.delete(GROUP, VERSION, "syncpolicies", optional=True)
async def syncpolicy_deleted(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _forget("SyncPolicy", body, memo)
    await _release_namespace(body, memo)


async def _release_namespace(body: kopf.Body, memo: kopf.Memo) -> None:
    """After a namespace's last Onceflow object is gone, close the operator's connection into its account.

    Account mode keeps one connection per namespace; without this a cluster where namespaces come
    and go would keep them all. The account and its streams stay on the servers (an SRE removes
    them; docs/install.md). In user mode there is nothing per namespace to close.
    """
    namespace, uid = body["metadata"]["namespace"], body["metadata"]["uid"]
    objects: dict[str, set[str]] = memo.setdefault("namespace_objects", {})
    left = objects.get(namespace, set())
    left.discard(uid)
    if not left:
        objects.pop(namespace, None)
        await memo.nats.forget(namespace)
