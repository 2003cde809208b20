"""Stream health into the operator's metrics and log lines (pure)."""

from __future__ import annotations

from prometheus_client import REGISTRY

from onceflow_operator.clients.topology import StreamHealth
from onceflow_operator.controller.streams import record_health


def health(leader: str, lagging: tuple[str, ...] = ()) -> StreamHealth:
    return StreamHealth(
        stream="T_HEALTH",
        replicas=3,
        storage="file",
        max_bytes=-1,
        max_age=86400.0,
        duplicate_window=600.0,
        leader=leader,
        current=3 - len(lagging),
        lagging=lagging,
        bytes=2048,
        messages=7,
        consumers=1,
    )


def gauge(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"stream": "T_HEALTH", **labels})


def test_health_sets_the_gauges_and_names_lagging_replicas_and_a_missing_stream() -> None:
    leaders: dict[str, str] = {}
    problems = record_health([health("n1", ("n3",)), "T_MISSING"], leaders)
    assert problems == [
        "stream T_HEALTH: 2 of 3 replicas current (lagging or offline: n3; leader n1)",
        "stream T_MISSING is missing",
    ]
    assert gauge("onceflow_stream_replicas") == 3
    assert gauge("onceflow_stream_current_replicas") == 2
    assert gauge("onceflow_stream_lagging_replicas") == 1
    assert gauge("onceflow_stream_bytes") == 2048
    assert gauge("onceflow_stream_messages") == 7
    assert gauge("onceflow_stream_leader", server="n1") == 1
    # The leader moves: the old one's gauge drops to 0, the new one's is 1.
    assert record_health([health("n2")], leaders) == []
    assert gauge("onceflow_stream_leader", server="n1") == 0
    assert gauge("onceflow_stream_leader", server="n2") == 1
