"""A system without webhooks: a schedule trigger polls the sandbox ERP for changed invoices (issue 20).

Real parts only: runner processes (`onceflow runner`, started by `LocalRun`), a real nats-server
and the sandbox ERP, which pages like ERPNext and stamps `modified` on every change. The target
is a sandbox that ignores `Idempotency-Key` (as most systems do), so a row delivered twice would
show as two effects. Every test ends with the ledger of the target's own books: each invoice's
latest version reached it exactly once, no version twice, nothing from before the first-run start.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import nats
import pytest

from onceflow_operator.dev.controlplane import free_port
from onceflow_operator.dev.localrun import LocalRun
from onceflow_operator.dev.natsserver import NatsServer
from onceflow_runner.contract import subjects
from onceflow_runner.contract.messages import Heartbeat, PollWatermark
from onceflow_runner.testing.sandbox import ErpSandbox, Fault, RecorderSandbox
from tests.integration.scenario import eventually, new_namespace, stream_messages

INVOICE = "Sales Invoice"
FRAPPE_TIME = "%Y-%m-%d %H:%M:%S.%f"
RUNNER = "runner-invoices"


#: One effect per version of an invoice: a change is a new key, a row read twice is not.
VERSION_KEY = "input.name + '@' + input.modified"


def manifests(
    erp_url: str, accounting_url: str, *, start_from: str, page_size: int = 20, business_key: str = VERSION_KEY
) -> list[dict[str, Any]]:
    """The ERP polled every second for Sales Invoices changed since the watermark, posted to accounting."""
    rest = {"retry": {"attempts": 1}, "timeouts": {"connect": "1s", "read": "3s"}}
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "erp-api"},
            "stringData": {"api-key": "sandbox-key", "api-secret": "sandbox-secret"},
        },
        {
            "apiVersion": "onceflow.io/v1alpha1",
            "kind": "Connector",
            "metadata": {"name": "erp"},
            "spec": {
                "type": "REST",
                "system": "erpnext",
                "rest": {
                    "baseURL": erp_url,
                    **rest,
                    "auth": {
                        "type": "ERPNextToken",
                        "erpnextToken": {
                            "apiKeyRef": {"name": "erp-api", "key": "api-key"},
                            "apiSecretRef": {"name": "erp-api", "key": "api-secret"},
                        },
                    },
                },
            },
        },
        {
            "apiVersion": "onceflow.io/v1alpha1",
            "kind": "Connector",
            "metadata": {"name": "accounting"},
            "spec": {"type": "REST", "system": "accounting", "rest": {"baseURL": accounting_url, **rest}},
        },
        {
            "apiVersion": "onceflow.io/v1alpha1",
            "kind": "Integration",
            "metadata": {"name": "invoices"},
            "spec": {
                "trigger": {
                    "schedule": {
                        "interval": "1s",
                        "poll": {
                            "connector": "erp",
                            "path": f"/api/resource/{INVOICE}",
                            "query": {
                                "fields": "'[\"*\"]'",
                                "filters": '\'[["modified", ">=", "\' + watermark + \'"]]\'',
                                "order_by": "'modified asc'",
                            },
                            "paging": {"style": "Offset", "pageSize": page_size},
                            "watermark": {
                                "expression": "row.modified",
                                "format": FRAPPE_TIME,
                                "lookBack": "30s",
                                "startFrom": start_from,
                            },
                        },
                    }
                },
                "businessKey": business_key,
                "errorPolicy": {"backoff": ["100ms"], "maxDeliver": 10, "ackWait": "5s"},
                "steps": [
                    {
                        "name": "post",
                        "call": {
                            "connector": "accounting",
                            "path": "/invoices",
                            "body": '{"invoice": input.name, "total": input.grand_total, "version": input.modified}',
                        },
                    }
                ],
            },
        },
    ]


@dataclass
class Polling:
    nats: NatsServer
    erp: ErpSandbox
    accounting: RecorderSandbox
    run: LocalRun
    namespace: str

    def effects(self) -> dict[str, int]:
        """Effects in accounting per business key (`<invoice>@<modified>`)."""
        return {k.removesuffix("/post"): n for k, n in self.accounting.effects.items()}

    def latest_versions(self, since: datetime) -> set[str]:
        """The business key of every invoice's current version changed at or after `since`."""
        docs = self.erp.docs.get(INVOICE, {}).values()
        return {
            f"{d['name']}@{d['modified']}"
            for d in docs
            if datetime.strptime(d["modified"], FRAPPE_TIME).replace(tzinfo=UTC) >= since
        }

    async def quiet(self) -> bool:
        nc = await nats.connect(self.nats.url)
        try:
            info = await nc.jetstream().consumer_info("ONCEFLOW_IN", f"{self.namespace}_invoices")
        finally:
            await nc.close()
        return info.num_pending == 0 and info.num_ack_pending == 0

    async def settled(self, since: datetime, within: float = 90.0) -> dict[str, int]:
        """Wait until every current version since `since` reached accounting and nothing is in flight."""

        async def done() -> bool:
            return self.latest_versions(since) <= set(self.effects()) and await self.quiet()

        await eventually(done, within=within, interval=0.2)
        effects = self.effects()
        doubled = {k: n for k, n in effects.items() if n > 1}
        assert doubled == {}, f"versions with two effects: {doubled}"
        return effects

    async def watermark(self) -> PollWatermark | None:
        nc = await nats.connect(self.nats.url)
        try:
            kv = await nc.jetstream().key_value(subjects.poll_bucket(self.namespace))
            entry = await kv.get(subjects.poll_watermark_key("invoices"))
            return PollWatermark.from_wire(entry.value or b"")
        except nats.js.errors.KeyNotFoundError:
            return None
        finally:
            await nc.close()

    async def heartbeats(self, seconds: float) -> list[Heartbeat]:
        """The runners' heartbeats over `seconds` (core NATS, as the operator receives them)."""
        beats: list[Heartbeat] = []
        nc = await nats.connect(self.nats.url)
        try:

            async def keep(msg: Any) -> None:
                beats.append(Heartbeat.from_wire(msg.data))

            await nc.subscribe(subjects.stats_subject(self.namespace, "invoices"), cb=keep)
            await asyncio.sleep(seconds)  # a window of heartbeats, not a wait for a condition
        finally:
            await nc.close()
        return beats


def utc_clock(at: datetime) -> Any:
    """A sandbox clock on UTC wall time (Frappe writes local time without an offset; here local is UTC)."""
    return lambda: at.replace(tzinfo=None)


def seed(erp: ErpSandbox, count: int, *, first: datetime, prefix: str = "ACC-SINV-") -> None:
    """`count` submitted invoices changed one second apart from `first` on (as an ERP with history holds)."""
    for i in range(count):
        erp.clock = utc_clock(first + timedelta(seconds=i))
        erp.seed(INVOICE, {"name": f"{prefix}{i:05d}", "customer": "Acme", "grand_total": 100 + i, "docstatus": 1})
    erp.clock = lambda: datetime.now(UTC).replace(tzinfo=None)


async def start(
    nats_server: NatsServer, *, start_from: str, erp: ErpSandbox, honour_idempotency_key: bool = False, **kw: Any
) -> Polling:
    accounting = RecorderSandbox("accounting", honour_idempotency_key=honour_idempotency_key)
    await accounting.start()
    namespace = new_namespace()
    run = LocalRun.from_documents(
        manifests(erp.url, accounting.url, start_from=start_from, **kw),
        namespace=namespace,
        nats_url=nats_server.url,
        first_port=free_port(),
    )
    run.runners["invoices"] = (run.runners["invoices"][0], free_port())
    await asyncio.to_thread(run.start)
    return Polling(nats_server, erp, accounting, run, namespace)


@pytest.fixture
async def erp() -> AsyncIterator[ErpSandbox]:
    server = ErpSandbox()
    server.clock = lambda: datetime.now(UTC).replace(tzinfo=None)
    await server.start()
    yield server
    await server.stop()


async def stop(p: Polling) -> None:
    await asyncio.to_thread(p.run.stop)
    await p.accounting.stop()


async def test_a_polled_backlog_reaches_accounting_once_across_pages_a_kill_and_changes_during_the_poll(
    nats_server: NatsServer, erp: ErpSandbox
) -> None:
    start_from = datetime.now(UTC) - timedelta(days=2)
    seed(erp, 8, first=start_from - timedelta(days=1), prefix="OLD-")  # before the first-run start: never read
    seed(erp, 240, first=start_from + timedelta(hours=1))
    # Every list answer takes 0.3s, so the first poll (12 pages of 20) is mid-batch for over three seconds.
    erp.faults.append(Fault(status=200, times=10_000, delay_seconds=0.3, path_prefix=f"/api/resource/{INVOICE}"))
    # A runner killed after a call and before it marked the key done repeats the call on redelivery;
    # the target's Idempotency-Key is then the guard (docs/runner.md), so this target honours it, as
    # in test_delivery_faults' kill test. What the poller stored is checked on the stream itself.
    p = await start(nats_server, start_from=start_from.isoformat(), erp=erp, honour_idempotency_key=True)
    try:
        await eventually(lambda: erp.requests >= 3, within=30, interval=0.01)
        # A person changes an invoice the poll has read and one it has not reached yet.
        erp.touch(INVOICE, "ACC-SINV-00003", grand_total=999)
        erp.touch(INVOICE, "ACC-SINV-00200", grand_total=998)
        await eventually(lambda: erp.requests >= 5, within=30, interval=0.01)
        assert erp.requests < 12, "the first poll had ended before the kill"
        await asyncio.to_thread(p.run.restart, RUNNER, kill=True)  # SIGKILL mid-batch, then start again
        erp.touch(INVOICE, "ACC-SINV-00150", grand_total=997)

        effects = await p.settled(start_from)
        assert not any(k.startswith("OLD-") for k in effects), "rows changed before startFrom were read"
        latest = p.latest_versions(start_from)
        assert len(latest) == 240
        assert latest <= set(effects)
        # Only versions that existed: the three changed invoices may also have their first version once.
        assert set(effects) - latest <= {
            f"ACC-SINV-{n}@{(start_from + timedelta(hours=1, seconds=int(n))).strftime(FRAPPE_TIME)}"
            for n in ("00003", "00200", "00150")
        }

        # The kill interrupted a poll that had published rows; its successor read them again: each
        # version of a row is stored once on the intake all the same (its Nats-Msg-Id).
        stored = await stream_messages(p.nats.url, "ONCEFLOW_IN", subjects.poll_subject(p.namespace, "invoices"))
        ids = [m.headers["Nats-Msg-Id"] for m in stored]
        assert len(ids) == len(set(ids)) == len(effects)

        newest = max(d["modified"] for d in erp.docs[INVOICE].values())

        async def watermark_is_newest() -> bool:
            found = await p.watermark()
            return found is not None and found.watermark == newest

        await eventually(watermark_is_newest, within=15, interval=0.2)
        beats = [b for b in await p.heartbeats(3) if b.poll is not None]
        assert beats, "the poller reports no poll figures"
        last = beats[-1].poll
        assert last is not None
        assert last.watermark == newest
        assert last.polls >= 1
    finally:
        await stop(p)


async def test_two_runner_replicas_poll_as_one_and_the_other_takes_over_when_the_poller_dies(
    nats_server: NatsServer, erp: ErpSandbox
) -> None:
    start_from = datetime.now(UTC) - timedelta(hours=1)
    seed(erp, 30, first=start_from + timedelta(minutes=1))
    p = await start(nats_server, start_from=start_from.isoformat(), erp=erp)
    try:
        second = await asyncio.to_thread(p.run.add_replica, "invoices", free_port())
        await p.settled(start_from)
        beats = await p.heartbeats(4)
        assert {b.pod for b in beats} == {RUNNER, second}, "both replicas run"
        pollers = {b.pod for b in beats if b.poll is not None}
        assert len(pollers) == 1, f"more than one poller: {pollers}"

        (leader,) = pollers
        p.run.procs[leader].send_signal(signal.SIGKILL)
        await asyncio.to_thread(p.run.procs[leader].wait, 10)
        seed(erp, 5, first=datetime.now(UTC), prefix="NEW-")
        effects = await p.settled(start_from, within=60)  # the lease lapses (10s), the survivor polls
        assert sum(1 for k in effects if k.startswith("NEW-")) == 5
        survivors = {b.pod for b in await p.heartbeats(3) if b.poll is not None}
        assert survivors == {RUNNER, second} - {leader}
    finally:
        await stop(p)


async def test_a_first_run_from_now_leaves_the_backlog_and_reads_what_changes_after(
    nats_server: NatsServer, erp: ErpSandbox
) -> None:
    seed(erp, 25, first=datetime.now(UTC) - timedelta(hours=2))
    p = await start(nats_server, start_from="Now", erp=erp)
    try:

        async def polled_once() -> bool:
            return await p.watermark() is not None  # the first poll stores where "now" was

        await eventually(polled_once, within=30, interval=0.1)
        begun = datetime.now(UTC)
        erp.touch(INVOICE, "ACC-SINV-00004", grand_total=1)  # an old invoice changed now: a change to read
        seed(erp, 3, first=datetime.now(UTC), prefix="NEW-")
        effects = await p.settled(begun)
        assert sorted(k.split("@")[0] for k in effects) == ["ACC-SINV-00004", "NEW-00000", "NEW-00001", "NEW-00002"]
        assert json.loads(json.dumps(p.accounting.received[0][3]))["invoice"] in {
            "ACC-SINV-00004",
            "NEW-00000",
            "NEW-00001",
            "NEW-00002",
        }
    finally:
        await stop(p)


async def test_a_failing_erp_and_a_row_without_its_key_field_hold_nothing_back(
    nats_server: NatsServer, erp: ErpSandbox
) -> None:
    start_from = datetime.now(UTC) - timedelta(hours=1)
    seed(erp, 60, first=start_from + timedelta(minutes=1))
    for doc in erp.docs[INVOICE].values():
        doc["po_no"] = f"PO-{doc['name']}"
    del erp.docs[INVOICE]["ACC-SINV-00007"]["po_no"]  # its business key cannot be computed
    # The third list request and the two after it fail: the first poll stops on its third page.
    erp.faults.append(Fault(status=503, times=3, path_prefix=f"/api/resource/{INVOICE}"))
    key = "input.name + '@' + input.modified + '/' + input.po_no"
    erp.faults.insert(0, Fault(status=200, times=2, path_prefix=f"/api/resource/{INVOICE}"))  # pages 1-2 answer
    p = await start(nats_server, start_from=start_from.isoformat(), erp=erp, business_key=key)
    try:

        async def everything_but_the_unkeyed_row_arrived() -> bool:
            return len(p.effects()) == 59 and await p.quiet()

        await eventually(everything_but_the_unkeyed_row_arrived, within=60, interval=0.2)
        assert all(n == 1 for n in p.effects().values())
        assert not any(k.startswith("ACC-SINV-00007@") for k in p.effects())
        parked = await stream_messages(p.nats.url, "ONCEFLOW_EXCEPTIONS", f"onceflow.{p.namespace}.exceptions.invoices")
        assert len(parked) == 1, "the unkeyed row is parked once, however often it is read"
        assert parked[0].headers["Onceflow-Reason"] == "InvalidRecord"
        assert json.loads(parked[0].data)["name"] == "ACC-SINV-00007"
        beats = [b.poll for b in await p.heartbeats(3) if b.poll is not None]
        assert beats
        assert beats[-1].errors >= 1
        assert "503" in (beats[-1].last_error or "")
    finally:
        await stop(p)


async def test_an_invoice_stamped_in_the_far_future_does_not_hide_the_changes_after_it(
    nats_server: NatsServer, erp: ErpSandbox
) -> None:
    """One row with a mistyped change time (2099) used to become the watermark: nothing changed
    after it was ever read again. The watermark is held at the poll's time plus lookBack."""
    start_from = datetime.now(UTC) - timedelta(hours=1)
    seed(erp, 5, first=start_from + timedelta(minutes=1))
    erp.clock = utc_clock(datetime(2099, 1, 1, tzinfo=UTC))
    erp.seed(INVOICE, {"name": "FUTURE-1", "customer": "Acme", "grand_total": 1, "docstatus": 1})
    erp.clock = lambda: datetime.now(UTC).replace(tzinfo=None)
    p = await start(nats_server, start_from=start_from.isoformat(), erp=erp)
    try:
        await p.settled(start_from)
        stored = await p.watermark()
        assert stored is not None
        assert stored.watermark < "2099", f"the watermark jumped to the far-future row: {stored.watermark}"
        changed = datetime.now(UTC)
        erp.touch(INVOICE, "ACC-SINV-00002", grand_total=555)
        seed(erp, 2, first=datetime.now(UTC), prefix="NEW-")
        effects = await p.settled(changed)
        assert {"ACC-SINV-00002", "NEW-00000", "NEW-00001"} <= {k.split("@")[0] for k in effects}
        assert effects[f"FUTURE-1@{erp.docs[INVOICE]['FUTURE-1']['modified']}"] == 1, "re-read, one effect"
    finally:
        await stop(p)
