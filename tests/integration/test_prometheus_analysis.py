"""The Prometheus analysis provider against a real Prometheus scraping a real runner process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from onceflow_operator.api.rollout import AnalysisMetric
from onceflow_operator.clients.prometheus import PrometheusError, query_prometheus
from onceflow_operator.dev.natsserver import NatsServer
from onceflow_operator.rollout.analysis import Measurement, judge
from tests.integration.scenario import eventually
from tests.integration.test_delivery_faults import Harness, start
from tests.prometheus import PrometheusServer


@pytest.fixture
async def scraped(nats_server: NatsServer) -> AsyncIterator[tuple[Harness, PrometheusServer]]:
    harness = await start(nats_server)
    (_, port) = next(iter(harness.run.runners.values()))
    prometheus = await asyncio.to_thread(PrometheusServer, [f"127.0.0.1:{port}"])
    yield harness, prometheus
    await asyncio.to_thread(prometheus.stop)
    await harness.client.aclose()
    await asyncio.to_thread(harness.run.stop)
    await harness.erp.stop()


async def value_or_none(url: str, query: str) -> float | None:
    """The query's number, or None while Prometheus has not scraped enough yet."""
    try:
        return await query_prometheus(url, query)
    except PrometheusError:
        return None


async def test_an_analysis_metric_reads_the_runners_counters_through_prometheus(
    scraped: tuple[Harness, PrometheusServer],
) -> None:
    harness, prometheus = scraped
    await harness.send_many([f"p{i:03d}" for i in range(20)])
    await harness.settled(20)
    processed = 'sum(onceflow_runner_processed_total{integration="ledger"})'

    async def scraped_all() -> float | None:
        value = await value_or_none(prometheus.url, processed)
        return value if value == 20 else None

    assert await eventually(scraped_all, within=30, interval=0.5) == 20
    ratio = f"{processed} / sum(onceflow_runner_received_total)"
    metric = AnalysisMetric.model_validate(
        {
            "name": "completed",
            "successCondition": "result >= 0.99",
            "provider": {"prometheus": {"address": prometheus.url, "query": ratio}},
        }
    )
    value = await query_prometheus(prometheus.url, ratio)
    assert judge(metric, Measurement(value))[0] == "Successful"
    assert judge(metric.model_copy(update={"success_condition": "result < 0.5"}), Measurement(value))[0] == "Failed"


async def test_queries_that_do_not_give_one_number_are_errors_that_say_why(
    scraped: tuple[Harness, PrometheusServer],
) -> None:
    _, prometheus = scraped
    with pytest.raises(PrometheusError, match="no series"):
        await query_prometheus(prometheus.url, "onceflow_runner_no_such_metric_total")
    await eventually(lambda: value_or_none(prometheus.url, "count(up == 1)"), within=20, interval=0.5)
    with pytest.raises(PrometheusError, match="one number"):
        await query_prometheus(
            prometheus.url, 'label_replace(up, "copy", "a", "", "") or label_replace(up, "copy", "b", "", "")'
        )
    with pytest.raises(PrometheusError, match="refused the query"):
        await query_prometheus(prometheus.url, "sum(")
    with pytest.raises(PrometheusError, match="did not answer"):
        await query_prometheus("http://127.0.0.1:9", "up")
