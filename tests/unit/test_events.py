"""Counted Events and the fix backoff (build/events.py, controller/backoff.py), without a server."""

from __future__ import annotations

from onceflow_operator.build.events import event_name, new_event, repeated_event
from onceflow_operator.controller.backoff import FixBackoff

FLOW = {
    "apiVersion": "onceflow.io/v1alpha1",
    "kind": "Integration",
    "metadata": {"name": "onboard", "namespace": "shop", "uid": "u-1"},
}


def name(**kw: object) -> str:
    args: dict[str, object] = {"reason": "InvalidSpec", "message": "spec.steps[0]: bad", "warning": True}
    return event_name(FLOW, component="onceflow-operator", **{**args, **kw})  # type: ignore[arg-type]


def test_the_same_problem_on_the_same_object_is_one_event_and_another_problem_is_another() -> None:
    assert name() == name()
    assert name().startswith("onboard.")
    assert name(message="spec.steps[1]: bad") != name()
    assert name(reason="SecretNotUsable") != name()
    assert name(warning=False) != name()
    recreated = {**FLOW, "metadata": {**FLOW["metadata"], "uid": "u-2"}}  # type: ignore[dict-item]
    assert event_name(recreated, reason="InvalidSpec", message="spec.steps[0]: bad", warning=True, component="x") != (
        event_name(FLOW, reason="InvalidSpec", message="spec.steps[0]: bad", warning=True, component="x")
    )


def test_a_new_event_counts_one_and_a_repeat_moves_count_and_last_timestamp() -> None:
    event = new_event(
        FLOW, reason="InvalidSpec", message="m" * 2000, warning=True, component="onceflow-operator", now="T1"
    )
    assert event["metadata"]["name"] == event_name(
        FLOW, reason="InvalidSpec", message="m" * 2000, warning=True, component="onceflow-operator"
    )
    assert (event["count"], event["firstTimestamp"], event["lastTimestamp"], event["type"]) == (
        1,
        "T1",
        "T1",
        "Warning",
    )
    assert len(event["message"]) == 1024
    assert repeated_event(41, "T2") == {"count": 42, "lastTimestamp": "T2"}


def test_an_integration_waiting_for_a_fix_is_looked_at_with_a_doubling_delay_until_its_spec_changes() -> None:
    backoff = FixBackoff(base=2, cap=20)
    assert backoff.due("u", 1, now=0)
    delays = []
    now = 0.0
    for _ in range(6):
        delay = backoff.record("u", 1, needs_fix=True, now=now)
        assert delay is not None
        delays.append(delay)
        assert not backoff.due("u", 1, now=now + delay - 0.1)
        now += delay
        assert backoff.due("u", 1, now=now)
    assert delays == [2, 4, 8, 16, 20, 20]
    assert backoff.due("u", 2, now=now - 10)  # a new generation is looked at at once
    assert backoff.record("u", 2, needs_fix=True, now=now) == 2  # and its delay starts again
    assert backoff.record("u", 2, needs_fix=False, now=now) is None
    assert backoff.due("u", 2, now=now)
