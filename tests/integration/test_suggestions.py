"""A failed rule's suggested fix travels with the exception (runner -> exception stream -> review)
and is only applied when a person sends it; price and credit fields are never suggested."""

from __future__ import annotations

import asyncio
import json

import nats

from onceflow_operator.dev.natsserver import NatsServer
from onceflow_operator.review.exceptions import decide, list_exceptions, with_fix
from tests.integration.scenario import eventually
from tests.integration.test_delivery_faults import start

RULE = {
    "expression": "input.name.endsWith(' GmbH') || input.name.endsWith(' AG')",
    "message": "the name lacks its legal form (GmbH, AG); add it in the CRM",
    "suggest": {"field": "name", "value": "input.name + ' GmbH'"},
}


async def test_the_suggestion_reaches_the_reviewer_and_is_applied_only_by_a_decision(nats_server: NatsServer) -> None:
    harness = await start(nats_server, rules=[RULE])
    try:
        body = json.dumps({"key": "s1", "name": "Nordwind Logistik"}).encode()
        await harness.send("s1", body)
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        (parked,) = await eventually(lambda: list_exceptions(js, harness.namespace), within=20, interval=0.2)
        assert parked.reason == "InvalidRecord"
        assert parked.suggestion == {"field": "name", "value": "Nordwind Logistik GmbH"}
        await asyncio.sleep(0.5)  # grace period: an effect made without a decision would show now
        assert harness.erp.effects == {}  # shown, not applied
        fixed = with_fix(parked.payload, parked.suggestion)
        assert fixed is not None
        await decide(
            js, harness.namespace, parked.sequence, "edit", who="alice", why="took the suggestion", payload=fixed
        )
        await eventually(lambda: harness.erp.effects.get("k/s1/create") == 1, within=20)
        await nc.close()
    finally:
        await harness.client.aclose()
        await asyncio.to_thread(harness.run.stop)
        await harness.erp.stop()
