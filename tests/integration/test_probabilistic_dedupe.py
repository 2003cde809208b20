"""The dedupe step's probabilistic matching in a real runner process, with nats-server and the sandbox ERP.

The SyncPolicy's `matching` block is compiled by the operator's planner (through `local run`), the
runner searches the ERP page by page and scores every candidate in its worker thread: a likely
duplicate is parked with its per-field explanation, an unrelated record is created.
"""

from __future__ import annotations

import json

import nats

from onceflow_operator.dev.natsserver import NatsServer
from onceflow_operator.review.exceptions import get_exception
from onceflow_runner.testing.sandbox import ErpSandbox
from tests.integration.test_delivery_faults import start, stop

MATCHING = {
    "entity": "customer",
    "ownership": {"default": "erp"},
    "identity": {"keys": ["tax_id"]},
    "matching": {
        "fields": [
            {"field": "customer_name", "comparison": "company"},
            {"field": "tax_id", "comparison": "identifier"},
        ]
    },
}
DEDUPE = {
    "name": "existing",
    "dedupe": {
        "connector": "erp",
        "path": "/api/resource/Customer",
        "query": {"fields": '["name", "customer_name", "tax_id"]', "order_by": '"name asc"'},
        "paging": {"pageSize": 100, "maxPages": 10},
    },
}


def erp() -> ErpSandbox:
    sandbox = ErpSandbox()
    sandbox.seed("Customer", {"name": "C0000", "customer_name": "Weber Logistik GmbH", "tax_id": "DE123456789"})
    for i in range(1, 250):
        sandbox.seed("Customer", {"name": f"C{i:04d}", "customer_name": f"Kunde {i} AG", "tax_id": f"DE9{i:08d}"})
    return sandbox


async def test_a_likely_duplicate_is_parked_with_its_explanation_and_a_new_record_is_created(
    nats_server: NatsServer,
) -> None:
    h = await start(nats_server, erp=erp(), steps=[DEDUPE], sync_policy=MATCHING)
    try:
        # The company name in another spelling and legal form, and a tax id one digit off.
        await h.send("DE123456788", json.dumps({"key": "DE123456788", "name": "WEBER LOGISTIK G.m.b.H."}).encode())
        await h.send("DE555000111", json.dumps({"key": "DE555000111", "name": "Zenith Tools AG"}).encode())
        ledger = await h.settled(2)
        (parked,) = ledger.exceptions
        assert parked.headers["Onceflow-Reason"] == "ApprovalRequired"
        assert parked.headers["Onceflow-Step"] == "existing"
        nc = await nats.connect(nats_server.url)
        try:
            record = await get_exception(nc.jetstream(), h.namespace, parked.seq)
        finally:
            await nc.close()
        (candidate,) = record.candidates  # stored in full beside the exception, not in a header
        assert candidate["rule"] == "probabilistic"
        assert candidate["decision"] == "review"
        assert candidate["candidate"]["name"] == "C0000"
        levels = {f["field"]: f["level"] for f in candidate["fields"]}
        assert levels == {"customer_name": "exact", "tax_id": "one-edit"}
        assert ledger.effects == {"DE555000111": 1}
    finally:
        await stop(h)
