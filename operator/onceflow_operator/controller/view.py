"""What the operator already knows about the cluster, so a reconcile costs requests only for what changed.

Two views answer the same questions: the namespace's Connectors, an Integration's
ControllerRevisions, a runner Deployment, and what the operator
last applied to an object it owns.

- `IndexedView` reads Kopf indexes (`controller.handlers` registers them; watches with
  server-side label selectors, so only Onceflow's own objects are streamed). No list and no get
  per reconcile; an owned object whose applied intent (`build.intent`) equals the desired one is
  not sent again. What the operator itself just wrote is kept in a short-lived overlay until the
  watch delivers it, so a reconcile right after another never works from an older picture (a
  revision numbered twice, an object deleted twice).
- `LiveView` asks the API server each time (lists and gets): for code that runs without the
  operator's watches, e.g. a reconcile driven directly by a test.

An object someone else changed is applied again: a generation (spec) different from the one the
operator's own apply returned means another writer (say `kubectl scale`) moved it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import ValidationError

from onceflow_operator.api import Connector
from onceflow_operator.api.names import API_VERSION, LABEL_INTEGRATION
from onceflow_operator.build.intent import intent_of, with_intent
from onceflow_operator.clients.kube import KubeClient
from onceflow_operator.controller.metrics import API_WRITES

__all__ = [
    "OVERLAY_SECONDS",
    "ClusterView",
    "IndexedView",
    "LiveView",
    "Seen",
    "connector_record",
    "owned_record",
    "revision_record",
]

#: How long the operator trusts its own last write over an index that has not caught up.
OVERLAY_SECONDS = 120.0

Key = tuple[str, str, str]  # kind, namespace, name


@dataclass(frozen=True)
class Seen:
    """An owned object as the operator knows it: enough to decide whether to apply, and the Deployment status."""

    resource_version: str
    generation: int
    intent: str
    body: dict[str, Any]


def owned_record(body: Mapping[str, Any], kind: str | None = None) -> Seen:
    """The slim copy an index keeps of an owned object (no pod template, no managed fields)."""
    meta = body.get("metadata") or {}
    kind = kind or str(body.get("kind", ""))
    slim: dict[str, Any] = {
        "apiVersion": body.get("apiVersion"),
        "kind": kind,
        "metadata": {k: meta[k] for k in ("name", "namespace", "generation", "resourceVersion", "labels") if k in meta},
    }
    if kind == "Deployment":
        spec = body.get("spec") or {}
        template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        slim["spec"] = {
            "replicas": spec.get("replicas", 1),
            "template": {"metadata": {"labels": dict(template_labels)}},
        }
        slim["status"] = dict(body.get("status") or {})
    if kind == "ControllerRevision":
        slim.update(revision_record(body), metadata=slim["metadata"])
    return Seen(str(meta.get("resourceVersion", "")), int(meta.get("generation") or 0), intent_of(body), slim)


def revision_record(body: Mapping[str, Any]) -> dict[str, Any]:
    """What an index keeps of a ControllerRevision: name, number and plan hash (not the plan)."""
    return {
        "metadata": {"name": body["metadata"]["name"]},
        "revision": int(body.get("revision") or 0),
        "data": {"planHash": str((body.get("data") or {}).get("planHash", ""))},
    }


def connector_record(body: Mapping[str, Any]) -> Connector | None:
    """A Connector parsed once per change (None when it does not parse: it is Stalled on its own)."""
    try:
        return Connector.model_validate({**body, "status": None})
    except ValidationError:
        return None


class ClusterView(Protocol):
    """The questions a reconcile asks about the cluster besides its own object."""

    async def connectors(self, namespace: str) -> dict[str, Connector]: ...

    async def revisions(self, namespace: str, integration: str) -> list[dict[str, Any]]: ...

    async def deployment(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def ensure(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Apply `obj` (with its intent hash) unless what exists already carries the same intent."""
        ...

    async def delete(self, api_version: str, kind: str, namespace: str, name: str, *, known: bool = False) -> None:
        """Delete an owned object; unless `known` (the caller just listed it), only when the view says it exists."""
        ...

    def exists(self, kind: str, namespace: str, name: str) -> bool | None:
        """Whether an owned object exists; None when the view cannot tell."""
        ...


class LiveView:
    """Every answer from the API server; every owned object applied (server-side apply is idempotent)."""

    def __init__(self, kube: KubeClient) -> None:
        self.kube = kube

    async def connectors(self, namespace: str) -> dict[str, Connector]:
        found: dict[str, Connector] = {}
        for item in await self.kube.list(API_VERSION, "Connector", namespace):
            if (connector := connector_record(item)) is not None:
                found[item["metadata"]["name"]] = connector
        return found

    async def revisions(self, namespace: str, integration: str) -> list[dict[str, Any]]:
        items = await self.kube.list(
            "apps/v1", "ControllerRevision", namespace, selector=f"{LABEL_INTEGRATION}={integration}"
        )
        return [revision_record(item) for item in items]

    async def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self.kube.get("apps/v1", "Deployment", namespace, name)

    async def ensure(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        return await self.kube.apply(with_intent(obj))

    async def delete(self, api_version: str, kind: str, namespace: str, name: str, *, known: bool = False) -> None:
        await self.kube.delete(api_version, kind, namespace, name)

    def exists(self, kind: str, namespace: str, name: str) -> bool | None:
        return None


@dataclass
class _Written:
    seen: Seen | None  # None: deleted by the operator
    at: float
    #: The resourceVersion the index held when the operator wrote: once it holds another, the watch
    #: has delivered the write (or something newer), and the index is the better answer again.
    before: str = ""


def _first(store: Iterable[Any] | None) -> Any:
    return next(iter(store or ()), None)


class IndexedView:
    """Answers from Kopf indexes (live mappings of key -> store of values), plus the operator's own recent writes.

    `indexes` maps an index name to its mapping: `connectors` (namespace -> (name, Connector))
    and one per owned kind, by the kind's name
    ((kind, namespace, name) -> `Seen`); the `ControllerRevision` one also holds
    (namespace, integration) -> revision record.
    """

    def __init__(self, kube: KubeClient, indexes: Mapping[str, Mapping[Any, Iterable[Any]]]) -> None:
        self.kube = kube
        self._indexes = indexes
        self._written: dict[Key, _Written] = {}
        #: The generation each owned object had right after the operator's own apply.
        self._applied_generation: dict[Key, int] = {}

    def attach(self, indexes: Mapping[str, Mapping[Any, Iterable[Any]]]) -> IndexedView:
        """Use these index mappings (Kopf hands the same live objects to every handler call)."""
        self._indexes = indexes
        return self

    def _index(self, name: str) -> Mapping[Any, Iterable[Any]]:
        return self._indexes.get(name) or {}

    async def connectors(self, namespace: str) -> dict[str, Connector]:
        return {name: c for name, c in self._index("connectors").get(namespace, ()) if c is not None}

    async def revisions(self, namespace: str, integration: str) -> list[dict[str, Any]]:
        found = {r["metadata"]["name"]: r for r in self._index("ControllerRevision").get((namespace, integration), ())}
        for kind, ns, name in list(self._written):
            if kind == "ControllerRevision" and ns == namespace:
                mine = self._current(("ControllerRevision", ns, name))
                if mine is None:
                    found.pop(name, None)
                elif (mine.body.get("metadata", {}).get("labels") or {}).get(LABEL_INTEGRATION) == integration:
                    found.setdefault(name, revision_record(mine.body))
        return list(found.values())

    async def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        seen = self._current(("Deployment", namespace, name))
        return seen.body if seen is not None else None

    def exists(self, kind: str, namespace: str, name: str) -> bool | None:
        return self._current((kind, namespace, name)) is not None

    def _indexed_version(self, key: Key) -> str:
        indexed: Seen | None = _first(self._index(key[0]).get(key))
        return indexed.resource_version if indexed is not None else ""

    def _current(self, key: Key) -> Seen | None:
        indexed: Seen | None = _first(self._index(key[0]).get(key))
        written = self._written.get(key)
        if written is None:
            return indexed
        now_indexed = indexed.resource_version if indexed is not None else ""
        caught_up = now_indexed != written.before or (
            indexed is None
            if written.seen is None
            else indexed is not None and indexed.resource_version == written.seen.resource_version
        )
        if caught_up or time.monotonic() - written.at > OVERLAY_SECONDS:
            del self._written[key]
            return indexed
        return written.seen

    async def ensure(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        desired = with_intent(obj)
        meta = desired["metadata"]
        key = (str(desired["kind"]), str(meta.get("namespace", "")), str(meta["name"]))
        seen = self._current(key)
        moved = (
            seen is not None and key in self._applied_generation and seen.generation != self._applied_generation[key]
        )
        if seen is not None and seen.intent == intent_of(desired) and not moved:
            API_WRITES.labels(result="skipped").inc()
            return seen.body
        before = self._indexed_version(key)
        applied = await self.kube.apply(desired)
        API_WRITES.labels(result="applied").inc()
        record = owned_record(applied)
        self._written[key] = _Written(record, time.monotonic(), before)
        if record.generation:
            self._applied_generation[key] = record.generation
        return applied

    async def delete(self, api_version: str, kind: str, namespace: str, name: str, *, known: bool = False) -> None:
        key = (kind, namespace, name)
        if not known and self._current(key) is None:
            return  # nothing to delete: a DELETE answered 404 is still a write request
        before = self._indexed_version(key)
        await self.kube.delete(api_version, kind, namespace, name)
        self._written[key] = _Written(None, time.monotonic(), before)
        self._applied_generation.pop(key, None)
