"""Canary rollouts end to end: real kube-apiserver, nats-server, the operator (Kopf), the local
executor running the runner Deployments as processes, and the sandbox ERP.

Records are published straight into the Integration's trigger subject while revisions change;
a ledger then checks that every accepted record ended as exactly one ERP customer or exactly
one exception, whichever revision (or lane) handled it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

import nats
import pytest
from click.testing import CliRunner

from onceflow_operator.cli import main
from onceflow_operator.dev.executor import LocalExecutor
from onceflow_operator.dev.natsserver import NatsServer
from tests.conftest import Kubectl
from tests.integration.scenario import Sandboxes, eventually, example_documents, sandbox_effects, stream_messages

pytestmark = pytest.mark.controlplane

GOOD_STEPS = [
    {"setWeight": 30},
    {"pause": {}},
    {
        "analysis": {
            "metrics": [{"name": "errors", "interval": "1s", "count": 2, "successCondition": "result.errorRatio < 0.2"}]
        }
    },
    {"setWeight": 60},
    {"pause": {"duration": "2s"}},
]
ANALYSED_STEPS = [
    {"setWeight": 50},
    {
        "analysis": {
            "metrics": [{"name": "errors", "interval": "2s", "count": 3, "successCondition": "result.errorRatio < 0.2"}]
        }
    },
    {"pause": {}},
]


def integration(
    namespace: str, *, customer_type: str = "", broken: bool = False, steps: list[Any], history: int = 10
) -> dict[str, Any]:
    """The workflow under test. `customer_type` makes a distinct revision whose ERP records show it;
    `broken` sends a body without customer_name, which the ERP refuses (417: an exception per record)."""
    fields = ['"customer_name": input.id'] if not broken else []
    if customer_type or broken:
        fields.append(f'"customer_type": "{customer_type or "Company"}"')
    return {
        "apiVersion": "onceflow.io/v1alpha1",
        "kind": "Integration",
        "metadata": {"name": "sync"},
        "spec": {
            "version": customer_type or ("broken" if broken else "plain"),
            "trigger": {"subject": f"onceflow.{namespace}.in.test.customer"},
            "businessKey": "'c/' + input.id",
            "steps": [
                {
                    "name": "create",
                    "call": {
                        "connector": "erp",
                        "method": "POST",
                        "path": '"/api/resource/Customer"',
                        "body": "{" + ", ".join(fields) + "}",
                    },
                }
            ],
            "errorPolicy": {"backoff": ["1s"], "maxDeliver": 3, "ackWait": "5s"},
            "strategy": {"type": "Canary", "canary": {"steps": steps}},
            "revisionHistoryLimit": history,
        },
    }


@dataclass
class Publisher:
    """Publishes records at a steady pace into JetStream; `accepted` are the ones with a PubAck."""

    url: str
    subject: str
    accepted: list[str] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, per_second: float = 25, limit: int = 4000) -> None:
        nc = await nats.connect(self.url)
        js = nc.jetstream(timeout=5)
        try:
            while not self._stop.is_set() and len(self.accepted) < limit:
                key = f"k{len(self.accepted):05d}"
                # The message id is unique across tests: JetStream drops a repeated id within its window.
                ack = await js.publish(
                    self.subject, json.dumps({"id": key}).encode(), headers={"Nats-Msg-Id": f"{self.subject}/{key}"}
                )
                assert not ack.duplicate
                self.accepted.append(key)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 1 / per_second)
        finally:
            await nc.close()

    def stop(self) -> None:
        self._stop.set()


def erp_connector(boxes: Sandboxes) -> list[dict[str, Any]]:
    """The example ERP Connector, on the sandbox, with one short attempt: its worst call fits ackWait 5s."""
    docs = example_documents("common")
    for doc in docs:
        if doc["kind"] == "Connector":
            doc["spec"]["rest"]["baseURL"] = boxes.erp.url
            doc["spec"]["rest"]["timeouts"] = {"connect": "1s", "read": "3s"}
            doc["spec"]["rest"]["retry"] = {"attempts": 1}
    return docs


async def status_of(kubectl: Kubectl) -> dict[str, Any]:
    obj = await asyncio.to_thread(kubectl.get, "integration", "sync")
    return dict(obj.get("status") or {})


async def until_status(kubectl: Kubectl, check: Any, within: float = 60.0) -> dict[str, Any]:
    """Wait for a status `check` accepts; on a timeout, say where the rollout stood (phase, message, conditions)."""
    seen: dict[str, Any] = {}

    async def probe() -> dict[str, Any] | None:
        status = await status_of(kubectl)
        seen.update(last=status)
        return status if check(status) else None

    try:
        result: dict[str, Any] = await eventually(probe, within=within, interval=0.3)
    except AssertionError:
        last = seen.get("last") or {}
        where = {k: last.get(k) for k in ("phase", "message", "currentRevision", "stableRevision", "rollout")}
        conditions = [(c.get("type"), c.get("status"), c.get("reason")) for c in last.get("conditions") or []]
        raise AssertionError(f"status not reached within {within}s; last: {where}, conditions {conditions}") from None
    return result


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions", []) if c["type"] == kind), {})


async def cli(kubectl: Kubectl, *args: str, code: int = 0) -> str:
    """`onceflow ARGS -n NS` in a thread (the CLI runs its own event loop)."""
    argv = [*args, "-n", kubectl.namespace, "--kubeconfig", str(kubectl.kubeconfig)]
    result = await asyncio.to_thread(CliRunner().invoke, main, argv, catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


async def ledger(nats_url: str, namespace: str, boxes: Sandboxes, accepted: list[str]) -> tuple[set[str], set[str]]:
    """Wait until every accepted record is an ERP customer or an exception; assert none is both or doubled."""

    async def settled() -> tuple[set[str], list[str]] | None:
        created = set(boxes.erp.docs.get("Customer", {}))
        parked = [
            json.loads(m.data)["id"]
            for m in await stream_messages(nats_url, "ONCEFLOW_EXCEPTIONS", f"onceflow.{namespace}.exceptions.sync")
        ]
        missing = sorted(set(accepted) - created - set(parked))
        return (created, parked) if not missing else None

    try:
        created, parked = await eventually(settled, within=90, interval=0.5)
    except AssertionError:
        created = set(boxes.erp.docs.get("Customer", {}))
        parked = [
            json.loads(m.data)["id"]
            for m in await stream_messages(nats_url, "ONCEFLOW_EXCEPTIONS", f"onceflow.{namespace}.exceptions.sync")
        ]
        missing = sorted(set(accepted) - created - set(parked))
        stored = await stream_messages(nats_url, "ONCEFLOW_IN", f"onceflow.{namespace}.in.>")
        where = [
            (m.seq, m.data)
            for m in stored
            if b"_rollout" in m.subject.encode() or (json.loads(m.data).get("id") in missing)
        ]
        nc = await nats.connect(nats_url)
        consumers = [
            (c.name, c.ack_floor, c.num_pending, c.num_ack_pending, c.num_redelivered)
            for c in await nc.jetstream().consumers_info("ONCEFLOW_IN")
            if namespace in c.name
        ]
        await nc.close()
        raise AssertionError(
            f"missing {missing[:20]} ({len(missing)}); stream {where[:40]}; consumers {consumers}"
        ) from None
    assert created | set(parked) == set(accepted), "a record ended nowhere, or somewhere it was never sent"
    assert len(parked) == len(set(parked)), "a record was parked twice"
    assert not created & set(parked), "a record is both an ERP customer and an exception"
    assert set((await sandbox_effects(boxes.erp)).values()) <= {1}, "an ERP effect happened twice"
    return created, set(parked)


async def test_a_broken_canary_aborts_by_itself_nothing_is_lost_and_a_revert_is_instant(
    kubectl: Kubectl, operator_running: None, executor: LocalExecutor, boxes: Sandboxes, nats_server: NatsServer
) -> None:
    namespace = kubectl.namespace
    kubectl.apply(*erp_connector(boxes), integration(namespace, steps=ANALYSED_STEPS))
    await asyncio.to_thread(kubectl.run, "wait", "--for=condition=Ready", "integration/sync", "--timeout=90s")
    stable = (await status_of(kubectl))["stableRevision"]
    main_generation = kubectl.get("deployment", "sync-runner")["metadata"]["generation"]
    pub = Publisher(nats_server.url, f"onceflow.{namespace}.in.test.customer")
    publishing = asyncio.create_task(pub.run())
    await eventually(lambda: len(boxes.erp.docs.get("Customer", {})) >= 10, within=30)

    kubectl.apply(integration(namespace, broken=True, steps=ANALYSED_STEPS))
    # AnalysisFailed, then RolloutAborted as soon as the canary's Deployment changes (it is watched):
    # either way the analysis says Failed and the message names both revisions.
    stopped = {"AnalysisFailed", "RolloutAborted"}
    aborted = await until_status(
        kubectl,
        lambda s: condition(s, "Ready").get("reason") in stopped and (s.get("analysis") or {}).get("phase") == "Failed",
        90,
    )
    broken = aborted["currentRevision"]
    assert aborted["phase"] == "Degraded"
    assert aborted["rollout"]["abortedRevision"] == broken
    assert aborted["analysis"]["phase"] == "Failed"
    assert f"revision 2 ({broken})" in aborted["message"]
    assert f"revision 1 ({stable})" in aborted["message"]
    assert "errors" in aborted["message"]
    assert aborted.get("canaryWeight") is None  # no canary takes records: the WEIGHT column is empty
    assert condition(aborted, "Available")["status"] == "True"  # the stable revision never stopped
    assert condition(aborted, "Stalled")["reason"] in stopped
    events = json.loads(kubectl.run("get", "events", "-o", "json").stdout)["items"]
    assert any(e["reason"] == "AnalysisFailed" and e["type"] == "Warning" for e in events)

    # The canary lane finishes what it owned on the stable revision, then goes away.
    await eventually(lambda: not kubectl.run("get", "deployment", "sync-canary", check=False).stdout, within=60)
    pub.stop()
    await publishing
    created, parked = await ledger(nats_server.url, namespace, boxes, pub.accepted)
    assert parked, "the broken canary took records; they must show as exceptions"
    assert len(created) > len(parked)

    # git revert: the spec equals the stable revision again; nothing rolls, Ready at once.
    kubectl.apply(integration(namespace, steps=ANALYSED_STEPS))
    reverted = await until_status(kubectl, lambda s: condition(s, "Ready").get("status") == "True", 15)
    assert (reverted["currentRevision"], reverted["revision"], reverted["phase"]) == (stable, 1, "Healthy")
    assert reverted["rollout"]["abortedRevision"] == ""
    assert kubectl.get("deployment", "sync-runner")["metadata"]["generation"] == main_generation


async def test_a_good_canary_walks_its_steps_with_verbs_and_history_is_pruned(
    kubectl: Kubectl, operator_running: None, executor: LocalExecutor, boxes: Sandboxes, nats_server: NatsServer
) -> None:
    namespace = kubectl.namespace
    kubectl.apply(*erp_connector(boxes), integration(namespace, steps=GOOD_STEPS, history=1))
    await asyncio.to_thread(kubectl.run, "wait", "--for=condition=Ready", "integration/sync", "--timeout=90s")
    pub = Publisher(nats_server.url, f"onceflow.{namespace}.in.test.customer")
    publishing = asyncio.create_task(pub.run())

    kubectl.apply(integration(namespace, customer_type="Company", steps=GOOD_STEPS, history=1))
    paused = await until_status(kubectl, lambda s: s.get("currentStepIndex") == 1 and s.get("phase") == "Paused")
    assert paused["canaryWeight"] == 30
    assert condition(paused, "Ready")["status"] == "False"
    assert condition(paused, "Progressing")["status"] == "True"
    text = await cli(kubectl, "rollout", "status", "sync")
    assert "▶ 1 pause (until promoted)" in text
    assert "✔ 0 setWeight 30%" in text

    def both_revisions_served() -> bool:
        docs = boxes.erp.docs.get("Customer", {}).values()
        return any(d.get("customer_type") == "Company" for d in docs) and any("customer_type" not in d for d in docs)

    await eventually(both_revisions_served, within=30)
    assert "promote requested" in await cli(kubectl, "rollout", "promote", "sync")
    promoted = await until_status(kubectl, lambda s: s.get("stableRevision") == s.get("currentRevision"), 90)
    assert promoted["phase"] == "Healthy"
    assert promoted["analysis"]["phase"] == "Successful"
    watched = await cli(kubectl, "rollout", "status", "sync", "--watch", "--timeout", "60")
    assert "Phase        Healthy" in watched
    await eventually(lambda: not kubectl.run("get", "deployment", "sync-canary", check=False).stdout, within=60)
    runner = kubectl.get("deployment", "sync-runner")
    assert runner["spec"]["template"]["metadata"]["labels"]["onceflow.io/revision"] == promoted["stableRevision"]

    # A third revision: abort it by hand, retry it, then promote it fully.
    kubectl.apply(integration(namespace, customer_type="Individual", steps=GOOD_STEPS, history=1))
    await until_status(kubectl, lambda s: s.get("currentStepIndex") == 1 and s.get("phase") == "Paused")
    await cli(kubectl, "rollout", "abort", "sync")
    aborted = await until_status(kubectl, lambda s: condition(s, "Ready").get("reason") == "RolloutAborted")
    assert "aborted by a person" in aborted["message"]
    assert "onceflow.io/action" not in kubectl.get("integration", "sync")["metadata"].get("annotations", {})
    await cli(kubectl, "rollout", "retry", "sync")
    await until_status(kubectl, lambda s: s["rollout"].get("canaryRevision") == s["currentRevision"])
    await cli(kubectl, "rollout", "promote-full", "sync")
    third = await until_status(kubectl, lambda s: s.get("stableRevision") == s.get("currentRevision"), 90)
    assert third["revision"] == 3
    await eventually(lambda: not kubectl.run("get", "deployment", "sync-canary", check=False).stdout, within=60)
    refused = await cli(kubectl, "rollout", "promote", "sync", code=1)
    assert "nothing to promote: Integration sync runs revision" in refused
    assert "onceflow.io/action" not in kubectl.get("integration", "sync")["metadata"].get("annotations", {})

    pub.stop()
    await publishing
    _created, parked = await ledger(nats_server.url, namespace, boxes, pub.accepted)
    assert not parked
    types = {d.get("customer_type", "") for d in boxes.erp.docs["Customer"].values()}
    assert types == {"", "Company", "Individual"}

    # revisionHistoryLimit 1: the stable revision plus one older one remain.
    history = json.loads(await cli(kubectl, "rollout", "history", "sync", "-o", "json"))
    assert [row["revision"] for row in history] == [3, 2]
    assert history[0]["status"] == "stable,current"
    assert history[1]["version"] == "Company"


QUIET_STEPS = [
    {"setWeight": 50},
    {
        "analysis": {
            "metrics": [
                {
                    "name": "errors",
                    "initialDelay": "2s",
                    "minRecords": 3,
                    "interval": "1s",
                    "count": 2,
                    "successCondition": "result.errorRatio < 0.2",
                }
            ]
        }
    },
]


async def test_a_quiet_canary_waits_for_data_then_is_promoted_as_a_promotion(
    kubectl: Kubectl, operator_running: None, executor: LocalExecutor, boxes: Sandboxes, nats_server: NatsServer
) -> None:
    namespace = kubectl.namespace
    kubectl.apply(*erp_connector(boxes), integration(namespace, steps=QUIET_STEPS))
    await asyncio.to_thread(kubectl.run, "wait", "--for=condition=Ready", "integration/sync", "--timeout=90s")
    assert "canaryWeight" not in await status_of(kubectl)  # no canary: the WEIGHT column is empty

    # A new revision while nothing is published: the analysis must wait, never pause as inconclusive.
    kubectl.apply(integration(namespace, customer_type="Retail", steps=QUIET_STEPS))
    waiting = await until_status(kubectl, lambda s: "waiting for data: 0 of 3 canary records" in s.get("message", ""))
    assert waiting["currentStepIndex"] == 1
    assert waiting["canaryWeight"] == 50
    seen: set[str] = set()

    def still_waiting(status: dict[str, Any]) -> bool:
        assert status["phase"] == "Progressing", status["message"]
        assert not status["rollout"].get("pauseConditions"), status["rollout"]
        assert status["analysis"]["metrics"][0]["inconclusive"] == 0
        assert "None" not in status["message"]
        seen.add(status["rollout"]["progressAt"])
        return len(seen) >= 4  # the operator looked at it (at least) four times, a second apart

    await until_status(kubectl, still_waiting, within=30)

    # Records arrive: the canary is measured, passes, and is promoted, and says so.
    pub = Publisher(nats_server.url, f"onceflow.{namespace}.in.test.customer")
    publishing = asyncio.create_task(pub.run())
    try:
        done = await until_status(kubectl, lambda s: condition(s, "Ready").get("status") == "True", within=90)
    finally:
        pub.stop()
        await publishing
    assert done["analysis"]["phase"] == "Successful"
    assert "promoted after its canary steps" in done["message"]
    assert "fast-tracked" not in done["message"]
    assert done.get("canaryWeight") is None
    figures = await until_status(kubectl, lambda s: len((s.get("figures") or {}).get("revisions", [])) == 2, within=30)
    rows = figures["figures"]["revisions"]
    assert [row["number"] for row in rows] == [2, 1]
    assert figures["figures"]["processed"] == sum(row["processed"] for row in rows)
