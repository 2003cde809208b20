"""JetStream limits at MSP scale, on a real nats-server.

nats-server caps a stream whose `max_consumers` is left unset at 1,000 consumers; every
Integration holds a durable consumer per lane on its trigger's stream, so without an explicit
limit the 1,001st Integration of a cluster could never be provisioned (issue #14's "800 of
1,000 Ready" after 200 earlier ones).
"""

from __future__ import annotations

from collections.abc import Iterator

import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from onceflow_operator.clients import topology
from onceflow_operator.dev.natsserver import NatsServer
from onceflow_runner.contract import subjects

pytestmark = pytest.mark.controlplane


@pytest.fixture
def fresh_nats() -> Iterator[NatsServer]:
    server = NatsServer()
    server.start()
    yield server
    server.close()


async def test_the_inbound_stream_takes_more_than_a_thousand_consumers_also_after_an_upgrade(
    fresh_nats: NatsServer,
) -> None:
    nc = await nats.connect(fresh_nats.url)
    js = nc.jetstream(timeout=10)
    try:
        # A stream as an earlier release created it (no max_consumers), then ensure_streams as today's.
        await js.add_stream(
            StreamConfig(name=subjects.IN_STREAM, subjects=subjects.stream_subjects(subjects.IN_STREAM))
        )
        await topology.ensure_streams(js)
        info = await js.stream_info(subjects.IN_STREAM)
        assert info.config.max_consumers == topology.MAX_CONSUMERS_PER_STREAM
        for i in range(1001):
            await js.add_consumer(
                subjects.IN_STREAM,
                ConsumerConfig(
                    durable_name=f"flow-{i}",
                    filter_subject=subjects.inbound_subject("bench", "crm", f"e{i}"),
                    ack_policy=AckPolicy.EXPLICIT,
                ),
            )
        assert (await js.stream_info(subjects.IN_STREAM)).state.consumer_count == 1001
    finally:
        await nc.close()
