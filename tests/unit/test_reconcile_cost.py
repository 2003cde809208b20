"""What keeps a steady state free of writes, without a server: intent hashes, status comparison,
conditions that keep their place, and the view that decides whether to apply.

The API-server proof (audit-counted writes: none after Ready, none after a restart) is
tests/integration/test_operator_steady_state.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from onceflow_operator.build.conditions import set_condition
from onceflow_operator.build.intent import INTENT_ANNOTATION, intent_of, with_intent
from onceflow_operator.controller.status import merged, status_changes
from onceflow_operator.controller.view import IndexedView, owned_record, revision_record

T = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def configmap(data: str = "a", **annotations: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "cm", "namespace": "ns"}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"plan.json": data}}


def test_the_intent_hash_follows_the_content_and_ignores_itself() -> None:
    once = with_intent(configmap())
    assert intent_of(once) == intent_of(with_intent(configmap()))
    assert intent_of(with_intent(once)) == intent_of(once)  # hashing again does not hash the hash
    assert intent_of(with_intent(configmap("b"))) != intent_of(once)
    assert intent_of(with_intent(configmap(note="x"))) != intent_of(once)
    assert "annotations" not in configmap()["metadata"]  # the input is not changed
    assert set(once["metadata"]["annotations"]) == {INTENT_ANNOTATION}


def test_a_merge_patch_that_changes_nothing_is_no_change() -> None:
    current = {"phase": "Healthy", "rollout": {"canaryRevision": "", "previousStable": ["a"]}}
    assert not status_changes(current, {"phase": "Healthy", "rollout": {"canaryRevision": ""}})
    assert not status_changes(current, {"currentStepIndex": None})  # deleting what is absent
    assert status_changes(current, {"rollout": {"previousStable": ["b"]}})
    assert status_changes(current, {"phase": None})
    assert merged({"a": {"b": 1, "c": 2}}, {"a": {"b": None, "d": 3}}) == {"a": {"c": 2, "d": 3}}


def test_a_condition_keeps_its_place_so_two_writers_do_not_reorder_the_list() -> None:
    ready = set_condition([], "Ready", True, "Configured", "ok", generation=1, now=T)
    both = set_condition(ready, "Reachable", False, "ProbeFailed", "no", generation=1, now=T)
    again = set_condition(both, "Ready", True, "Configured", "ok", generation=1, now=T)
    assert again == both
    assert [c["type"] for c in set_condition(both, "Ready", False, "X", "y", generation=1, now=T)] == [
        "Ready",
        "Reachable",
    ]


class RecordingKube:
    """Answers server-side applies as the API server would (a new resourceVersion) and records them."""

    def __init__(self) -> None:
        self.applied: list[dict[str, Any]] = []
        self.deleted: list[str] = []

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.applied.append(obj)
        meta = {**obj["metadata"], "resourceVersion": str(100 + len(self.applied)), "generation": 1}
        return {**obj, "metadata": meta}

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        self.deleted.append(f"{kind}/{name}")


def stores(*objs: dict[str, Any]) -> dict[tuple[str, str, str], list[Any]]:
    return {(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]): [owned_record(o)] for o in objs}


async def test_the_view_applies_only_what_differs_from_what_the_watch_holds() -> None:
    kube = RecordingKube()
    existing = with_intent(configmap())
    existing["metadata"]["resourceVersion"] = "7"
    view = IndexedView(kube, {"ConfigMap": stores(existing)})  # type: ignore[arg-type]
    await view.ensure(configmap())
    assert kube.applied == []
    await view.ensure(configmap("b"))
    assert len(kube.applied) == 1
    # The watch has not delivered the write yet: the operator trusts its own write, not the stale index.
    await view.ensure(configmap("b"))
    assert len(kube.applied) == 1


async def test_an_object_someone_else_changed_is_applied_again() -> None:
    kube = RecordingKube()
    view = IndexedView(kube, {})  # type: ignore[arg-type]
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "ns"}}
    applied = await view.ensure(deployment)
    # The watch delivers our write, then `kubectl scale` moves the generation.
    ours = {**applied, "metadata": {**applied["metadata"]}}
    view.attach({"Deployment": stores(ours)})
    await view.ensure(deployment)
    assert len(kube.applied) == 1
    scaled = {**ours, "metadata": {**ours["metadata"], "generation": 2, "resourceVersion": "900"}}
    view.attach({"Deployment": stores(scaled)})
    await view.ensure(deployment)
    assert len(kube.applied) == 2


async def test_revisions_written_but_not_yet_watched_count_and_deletes_are_not_repeated() -> None:
    kube = RecordingKube()
    view = IndexedView(kube, {})  # type: ignore[arg-type]
    record = {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {"name": "flow-abc", "namespace": "ns", "labels": {"onceflow.io/integration": "flow"}},
        "revision": 1,
        "data": {"planHash": "h"},
    }
    await view.ensure(record)
    assert await view.revisions("ns", "flow") == [revision_record(record)]
    await view.delete("apps/v1", "Deployment", "ns", "flow-canary")  # never existed: no request
    assert kube.deleted == []
    await view.delete("apps/v1", "ControllerRevision", "ns", "flow-abc")
    await view.delete("apps/v1", "ControllerRevision", "ns", "flow-abc")
    assert kube.deleted == ["ControllerRevision/flow-abc"]
    assert await view.revisions("ns", "flow") == []
