"""What the per-record shortcuts keep: the same answers, the same series, the same refusals.

The settle path was made cheaper (docs/benchmarks.md) by converting only what CEL reads, folding
expressions that read nothing, remembering checked URLs, resolving metric children once and
sending requests straight to the transport. Each shortcut must be invisible to a record.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client import generate_latest

from onceflow_runner.adapters.outbound import HttpCaller
from onceflow_runner.contract.plan import ConnectorPlan
from onceflow_runner.engine.expressions import _fields, bind, evaluate
from onceflow_runner.errors import InvalidRecord
from onceflow_runner.metrics import RunnerMetrics
from onceflow_runner.runner import Runner
from tests.unit.test_entities_and_engine import MAP, plan


@pytest.mark.parametrize(
    ("source", "fields"),
    [
        ("'k/' + input.key", {"key"}),
        ("has(input.a) && input.b.c == 1", {"a", "b"}),
        ("x.input.a + input.b", {"b"}),
        ("input", None),
        ("size(input)", None),
        ("input['key']", None),
        ("input.lines.all(l, l > 0)", {"lines"}),
        ("input.all(k, k != '')", None),
        ("'input' + input.a", None),
        ("[1].map(input, input.x)", None),
    ],
)
def test_only_fields_read_as_variable_dot_field_are_converted(source: str, fields: set[str] | None) -> None:
    assert _fields(source, "input") == (None if fields is None else frozenset(fields))


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("'k/' + input.key", "k/r1"),
        ("has(input.missing) ? 'yes' : 'no'", "no"),
        ("has(input.key) ? 'yes' : 'no'", "yes"),
        ("size(input)", 3),
        ("input.nested.deep + meta.integration", "dflow"),
    ],
)
def test_a_partial_binding_evaluates_as_the_whole_record_would(source: str, expected: object) -> None:
    context = {"input": {"key": "r1", "company": "Acme", "nested": {"deep": "d"}}, "meta": {"integration": "flow"}}
    assert evaluate(source, bind(context, [source]), step="s", what="w") == expected
    assert evaluate(source, context, step="s", what="w") == expected


def test_a_missing_field_is_still_the_records_fault_under_a_partial_binding() -> None:
    with pytest.raises(InvalidRecord, match="no field 'zip'"):
        evaluate("input.zip", {"input": {"key": "r1"}}, step="check", what="rule")


def test_an_expression_reading_nothing_is_computed_once_and_a_list_is_fresh_each_time() -> None:
    assert evaluate('"/api/resource/" + pathSegment("a b")', {}, step="s", what="path") == "/api/resource/a%20b"
    first = evaluate("[1, 2]", {}, step="s", what="w")
    first.append(3)
    assert evaluate("[1, 2]", {}, step="s", what="w") == [1, 2]


async def test_a_remembered_url_sends_the_same_request_and_a_refused_path_is_refused_every_time(
    tmp_path: Path,
) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"ok": True})

    connector = ConnectorPlan.model_validate({"name": "erp", "base_url": "http://erp.test:8000/base"})
    caller = HttpCaller({"erp": connector}, tmp_path, transport=httpx.MockTransport(answer))
    for _ in range(2):
        response = await caller.request(
            "erp",
            "POST",
            "/api/Customer",
            query={"a": "1 2"},
            body={"n": 1},
            idempotency_key="k/1/create",
            headers={},
            step="create",
        )
        assert response.status == 201
    assert [str(r.url) for r in seen] == ["http://erp.test:8000/base/api/Customer?a=1+2"] * 2
    assert seen[0].headers["Idempotency-Key"] == "k/1/create"
    assert seen[0].headers["Accept"] == "*/*"  # the client's defaults still go out
    for _ in range(2):
        with pytest.raises(InvalidRecord, match="dot segment"):
            await caller.request(
                "erp", "GET", "/api/../admin", query={}, body=None, idempotency_key=None, headers={}, step="create"
            )
    assert len(seen) == 2
    await caller.aclose()


def test_resolved_metric_children_feed_the_series_prometheus_reads() -> None:
    metrics = RunnerMetrics()
    counters = metrics.of("flow", "flow-1")
    counters.processed.inc()
    counters.failed("create", "Transient").inc()
    counters.failed("create", "Transient").inc()
    counters.call_seconds("erp", "201").observe(0.01)
    text = generate_latest(metrics.registry).decode()
    assert 'onceflow_runner_processed_total{integration="flow",revision="flow-1"} 1.0' in text
    assert (
        'onceflow_runner_failed_total{integration="flow",reason="Transient",revision="flow-1",step="create"} 2.0'
        in text
    )
    assert (
        'onceflow_runner_call_seconds_count{code="201",connector="erp",integration="flow",revision="flow-1"} 1.0'
        in text
    )


def test_consumer_lag_growth_says_whether_the_runner_falls_behind_or_catches_up(tmp_path: Path) -> None:
    runner = Runner(plan(MAP), nats_url="nats://127.0.0.1:1", secrets_dir=tmp_path)
    runner._read_lag(100, now=10.0)
    assert (runner.lag, runner.lag_growth) == (100, 0.0)  # one reading says nothing about growth
    runner._read_lag(600, now=12.0)
    assert (runner.lag, runner.lag_growth) == (600, 250.0)
    runner._read_lag(100, now=22.0)
    assert runner.lag_growth == -50.0
    text = generate_latest(runner.metrics.registry).decode()
    assert 'onceflow_runner_consumer_lag{integration="flow",revision="flow-1"} 100.0' in text
    assert 'onceflow_runner_consumer_lag_growth{integration="flow",revision="flow-1"} -50.0' in text
