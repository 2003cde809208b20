"""Kopf handlers: registration only. The work is in `reconcile.py`; objects come from `builders.py`.

Set-up follows Kopf's advice for well-behaved operators: our own finalizer and annotation
prefix (`onceflow.io/...`), no handler results in status (handlers return None and write
status through the typed reconcile outcome), bounded retries, watch timeouts. Every handler
is level-based: create, update, resume and a timer all run the same idempotent reconcile, so
changes in what an object references (a Secret, a Connector, a Deployment's availability) are
picked up within one timer interval.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import kopf

from .figures import FigureBook
from .kube import KubeClient, KubeError
from .metrics import MANAGED, RECONCILE_DURATION, RECONCILES
from .reconcile import (
    NatsLink,
    OperatorConfig,
    Outcome,
    finalize_integration,
    probe_connector,
    reconcile_connector,
    reconcile_integration,
    reconcile_syncpolicy,
)

__all__ = ["RECONCILE_SECONDS"]

GROUP, VERSION = "onceflow.io", "v1alpha1"
RECONCILE_SECONDS = float(os.environ.get("ONCEFLOW_RECONCILE_SECONDS", "30"))
RETRIES = 10


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = "onceflow.io/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="onceflow.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="onceflow.io", key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.queueing.error_delays = [1, 5, 15, 30, 60]
    memo.kube = KubeClient.from_environment()
    memo.config = OperatorConfig(
        image=os.environ.get("ONCEFLOW_IMAGE", OperatorConfig.image),
        nats_url=os.environ.get("ONCEFLOW_NATS_URL", OperatorConfig.nats_url),
    )
    memo.nats = NatsLink(memo.config.nats_url, FigureBook())


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    await memo.kube.close()
    await memo.nats.close()


async def _settle(kind: str, body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, outcome: Outcome) -> None:
    """Write the outcome's status through the handler's patch and record its Events."""
    patch.status.update(outcome.status)
    for reason, message, warning in outcome.events:
        try:
            await memo.kube.event(dict(body), reason=reason, message=message, warning=warning)
        except KubeError:
            logging.getLogger("onceflow.operator").warning("could not record event %s on %s", reason, kind)


async def _run(kind: str, body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, work: Any) -> None:
    started = time.perf_counter()
    try:
        outcome = await work
    except KubeError as exc:
        RECONCILES.labels(kind=kind, reason="ApiError").inc()
        if exc.status in {409, 429} or exc.status >= 500:
            raise kopf.TemporaryError(f"API server answered {exc}; retrying", delay=5) from None
        raise kopf.PermanentError(f"API server refused a request: {exc}") from None
    finally:
        RECONCILE_DURATION.labels(kind=kind).observe(time.perf_counter() - started)
    ready: dict[str, Any] = next((c for c in outcome.status.get("conditions", []) if c["type"] == "Ready"), {})
    RECONCILES.labels(kind=kind, reason=ready.get("reason", "Unknown")).inc()
    memo.setdefault("managed", {}).setdefault(kind, set()).add(body["metadata"]["uid"])
    MANAGED.labels(kind=kind).set(len(memo["managed"][kind]))
    await _settle(kind, body, patch, memo, outcome)


@kopf.on.resume(GROUP, VERSION, "connectors", retries=RETRIES)
@kopf.on.create(GROUP, VERSION, "connectors", retries=RETRIES)
@kopf.on.update(GROUP, VERSION, "connectors", retries=RETRIES)
@kopf.timer(GROUP, VERSION, "connectors", interval=RECONCILE_SECONDS, initial_delay=RECONCILE_SECONDS)
async def connector(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    await _run("Connector", body, patch, memo, reconcile_connector(memo.kube, body, memo.config))


@kopf.timer(
    GROUP,
    VERSION,
    "connectors",
    interval=60,
    initial_delay=1,
    when=lambda spec, **_: spec.get("type") == "REST",
)
async def probe(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    patch.status.update(await probe_connector(body))


@kopf.on.resume(GROUP, VERSION, "integrations", retries=RETRIES)
@kopf.on.create(GROUP, VERSION, "integrations", retries=RETRIES)
@kopf.on.update(GROUP, VERSION, "integrations", retries=RETRIES)
@kopf.timer(GROUP, VERSION, "integrations", interval=RECONCILE_SECONDS, initial_delay=RECONCILE_SECONDS)
async def integration(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    await _run("Integration", body, patch, memo, reconcile_integration(memo.kube, body, memo.config, memo.nats))


@kopf.on.delete(GROUP, VERSION, "integrations", retries=RETRIES, backoff=5)
async def integration_deleted(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _forget("Integration", body, memo)
    try:
        await finalize_integration(body, memo.nats)
    except Exception as exc:
        raise kopf.TemporaryError(f"could not remove the JetStream consumer ({type(exc).__name__})", delay=10) from None


@kopf.on.resume(GROUP, VERSION, "syncpolicies", retries=RETRIES)
@kopf.on.create(GROUP, VERSION, "syncpolicies", retries=RETRIES)
@kopf.on.update(GROUP, VERSION, "syncpolicies", retries=RETRIES)
@kopf.timer(GROUP, VERSION, "syncpolicies", interval=RECONCILE_SECONDS, initial_delay=RECONCILE_SECONDS)
async def syncpolicy(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    await _run("SyncPolicy", body, patch, memo, reconcile_syncpolicy(memo.kube, body, memo.config, memo.nats))


def _forget(kind: str, body: kopf.Body, memo: kopf.Memo) -> None:
    managed = memo.setdefault("managed", {}).setdefault(kind, set())
    managed.discard(body["metadata"]["uid"])
    MANAGED.labels(kind=kind).set(len(managed))


@kopf.on.delete(GROUP, VERSION, "connectors", optional=True)
async def connector_deleted(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _forget("Connector", body, memo)


@kopf.on.delete(GROUP, VERSION, "syncpolicies", optional=True)
async def syncpolicy_deleted(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _forget("SyncPolicy", body, memo)
