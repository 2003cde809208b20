"""The rollout decisions, step by step, without a server (operator/onceflow_operator/rollout/decisions.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from onceflow_operator.api.rollout import AnalysisMetric, Strategy
from onceflow_operator.compiler.validation import validate_manifest
from onceflow_operator.rollout.analysis import Measurement, describe_result, judge, waiting_for_data
from onceflow_operator.rollout.decisions import RolloutDecision as Decision
from onceflow_operator.rollout.decisions import RolloutView, decide, due_metrics, verb_refusal

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
NUMBERS = {"a": 1, "b": 2, "c": 3}
CANARY = Strategy.model_validate(
    {
        "type": "Canary",
        "canary": {
            "steps": [
                {"setWeight": 20},
                {"pause": {"duration": "1m"}},
                {
                    "analysis": {
                        "metrics": [
                            {
                                "name": "errors",
                                "interval": "30s",
                                "count": 2,
                                "successCondition": "result.errorRatio < 0.1",
                            }
                        ]
                    }
                },
                {"setWeight": 50},
                {"pause": {}},
            ]
        },
    }
)


def view(status: dict[str, Any], **kw: Any) -> RolloutView:
    base: dict[str, Any] = {
        "desired": "b",
        "stable": "a",
        "strategy": CANARY,
        "status": status,
        "now": T0,
        "main_running": "a",
        "main_available": True,
        "revision_numbers": NUMBERS,
    }
    return RolloutView(**{**base, **kw})


def apply(status: dict[str, Any], decision: Decision) -> dict[str, Any]:
    """What the reconcile writes back: the decision's status over the old one."""
    return {**status, **decision.status}


def test_first_revision_waits_for_runners_then_is_stable() -> None:
    first = decide(view({}, desired="a", stable=None, main_running=None, main_available=False))
    assert (first.main, first.canary, first.ready[0], first.status["phase"]) == ("a", None, False, "Progressing")
    served = decide(view({}, desired="a", stable=None))
    assert served.ready == (True, "RunnersAvailable", "revision 1 (a) is serving")
    assert served.status["stableRevision"] == "a"


def test_a_steady_revision_decides_the_same_status_at_every_look() -> None:
    # A steady state must write nothing: no clock in the status moves while nothing progresses.
    status: dict[str, Any] = {"stableRevision": "a", "rollout": {"progressAt": "2026-11-27T11:00:00Z"}}
    first = decide(view(status, desired="a"))
    assert first.status["rollout"]["progressAt"] is None
    again = decide(view(apply(status, first), desired="a", now=T0 + timedelta(minutes=5)))
    assert again.status == first.status
    promoted = decide(view({}, desired="a", stable=None))
    looked_again = {**apply({}, promoted), "conditions": [{"type": "Progressing", "reason": "NewRevisionPromoted"}]}
    assert decide(view(looked_again, desired="a")).progressing[1] == "NewRevisionPromoted"  # no flip to Steady
    # A later RollingUpdate starts its own deadline clock from when it begins to wait.
    rolling = Strategy.model_validate({"type": "RollingUpdate"})
    later = T0 + timedelta(hours=2)
    moving = decide(view(apply(status, first), desired="b", strategy=rolling, main_available=False, now=later))
    assert moving.ready[1] == "RunnersNotAvailable"
    assert moving.status["rollout"]["progressAt"] == "2026-11-27T14:00:00Z"


def test_a_good_canary_walks_every_step_to_promotion() -> None:
    status: dict[str, Any] = {"stableRevision": "a"}
    start = decide(view(status))
    assert (start.main, start.canary, start.weight) == ("a", "b", 0)
    assert start.events[0][0] == "RolloutStarted"
    assert "waiting for the canary runners" in start.status["message"]
    status = apply(status, start)

    running = decide(view(status, canary_running="b", canary_available=True))
    assert (running.weight, running.status["currentStepIndex"], running.status["phase"]) == (20, 1, "Paused")
    status = apply(status, running)
    assert decide(view(status, canary_running="b", canary_available=True, now=T0 + timedelta(seconds=30))).weight == 20

    later = view(status, canary_running="b", canary_available=True, now=T0 + timedelta(seconds=61))
    assert [m.name for m in due_metrics(replace(later, status=apply(status, decide(later))))] == ["errors"]
    analysing = decide(later)
    assert analysing.status["currentStepIndex"] == 2
    status = apply(status, analysing)
    good = Measurement({"errorRatio": 0.0})
    for seconds in (62, 95):
        step = decide(
            view(
                status,
                canary_running="b",
                canary_available=True,
                now=T0 + timedelta(seconds=seconds),
                measurements={"errors": good},
            )
        )
        status = apply(status, step)
    assert step.status["analysis"]["phase"] == "Successful"
    assert (step.weight, step.status["currentStepIndex"], step.status["phase"]) == (50, 4, "Paused")
    assert "promote to continue" in step.status["message"]

    promoting = decide(view(status, canary_running="b", canary_available=True, action="promote"))
    assert (promoting.main, promoting.canary, promoting.weight) == ("b", "b", 0)  # canary lane finishes on b
    status = apply(status, promoting)
    done = decide(view(status, main_running="b", canary_running="b", canary_available=True))
    assert done.status["stableRevision"] == "b"
    assert done.ready[0]
    assert done.status["rollout"]["previousStable"] == ["a"]
    assert ("NewRevisionPromoted", "revision 2 (b) is stable", False) in done.events
    assert done.status["message"] == "revision 2 (b) is serving (promoted after its canary steps)"
    assert done.status["canaryWeight"] is None  # no canary runs: the WEIGHT column is empty
    status = apply(status, done)
    settled = decide(view(status, stable="b", main_running="b", canary_running="b", canary_drained=True))
    assert settled.canary is None
    assert settled.ready[0]
    assert settled.events == []
    # Later looks keep saying how it came to serve (and so write nothing) until the next rollout.
    steady = decide(view(apply(status, settled), desired="b", stable="b", main_running="b"))
    assert steady.status["message"] == "revision 2 (b) is serving (promoted after its canary steps)"
    assert (
        decide(
            view({"message": "revision 1 (a) is serving (Recreate)"}, desired="b", stable="b", main_running="b")
        ).status["message"]
        == "revision 2 (b) is serving"
    )


def test_a_failed_analysis_aborts_and_the_stable_revision_finishes_the_canarys_records() -> None:
    status: dict[str, Any] = {"stableRevision": "a", "currentStepIndex": 2, "canaryWeight": 20}
    status["rollout"] = {"canaryRevision": "b", "stepStartedAt": "2026-11-27T12:00:00Z"}
    bad = Measurement({"errorRatio": 0.8})
    aborted = decide(view(status, canary_running="b", canary_available=True, measurements={"errors": bad}))
    assert (aborted.main, aborted.canary, aborted.weight) == ("a", "a", 0)
    assert aborted.status["phase"] == "Degraded"
    assert aborted.ready[1] == "AnalysisFailed"
    reason, message, warning = aborted.events[0]
    assert reason == "AnalysisFailed"
    assert warning
    assert "revision 2 (b)" in message
    assert "revision 1 (a)" in message
    assert "errors" in message
    status = apply(status, aborted)
    again = decide(view(status, canary_running="a", canary_available=True))
    assert (again.main, again.canary, again.weight, again.events) == ("a", "a", 0, [])
    assert again.status["message"] == aborted.status["message"]
    gone = decide(view(status, canary_running="a", canary_drained=True))
    assert gone.canary is None
    assert gone.status["phase"] == "Degraded"
    retried = decide(view(status, action="retry"))
    assert retried.canary == "b"
    assert retried.events[0][0] == "RolloutStarted"


def test_reverting_the_spec_mid_canary_returns_to_stable_at_once() -> None:
    status: dict[str, Any] = {"stableRevision": "a", "currentStepIndex": 1, "canaryWeight": 20}
    status["rollout"] = {"canaryRevision": "b"}
    revert = decide(view(status, desired="a", canary_running="b", canary_available=True))
    assert (revert.main, revert.canary, revert.weight) == ("a", "a", 0)
    assert revert.ready[0]
    assert revert.events[0][0] == "RolloutAborted"


def test_a_recent_stable_revision_is_fast_tracked_without_canary_steps() -> None:
    status: dict[str, Any] = {"stableRevision": "b", "rollout": {"previousStable": ["a"]}}
    back = decide(view(status, desired="a", stable="b", main_running="b"))
    assert (back.main, back.canary, back.weight, back.status["phase"]) == ("a", None, 0, "Progressing")
    served = decide(view(status, desired="a", stable="b", main_running="a"))
    assert served.status["stableRevision"] == "a"
    assert "fast-tracked rollback" in served.status["message"]
    far = decide(view({"stableRevision": "c", "rollout": {"previousStable": ["b", "a"]}}, desired="a", stable="c"))
    assert far.canary == "a"  # outside the window of one: a normal canary


def test_a_new_revision_mid_rollout_restarts_the_steps() -> None:
    status: dict[str, Any] = {"stableRevision": "a", "currentStepIndex": 4, "canaryWeight": 50}
    status["rollout"] = {"canaryRevision": "b"}
    restart = decide(view(status, desired="c", canary_running="b", canary_available=True))
    assert (restart.canary, restart.weight, restart.status["currentStepIndex"]) == ("c", 0, 0)
    assert restart.events[0][0] == "RolloutRestarted"


def test_pause_verbs_and_spec_paused_hold_the_step() -> None:
    status: dict[str, Any] = {"stableRevision": "a", "currentStepIndex": 0, "rollout": {"canaryRevision": "b"}}
    held = decide(view(status, canary_running="b", canary_available=True, action="pause"))
    assert held.weight == 0
    assert held.status["rollout"]["pausedByUser"]
    assert held.status["rollout"]["pauseConditions"][0]["reason"] == "PausedByUser"
    status = apply(status, held)
    resumed = decide(view(status, canary_running="b", canary_available=True, action="resume"))
    assert resumed.weight == 20
    spec_paused = decide(view(status, canary_running="b", canary_available=True, spec_paused=True, action="resume"))
    assert spec_paused.status["phase"] == "Paused"
    assert spec_paused.weight == 0


def test_a_stalled_rollout_reports_the_deadline() -> None:
    status: dict[str, Any] = {
        "stableRevision": "a",
        "rollout": {"canaryRevision": "b", "progressAt": "2026-11-27T11:00:00Z"},
    }
    late = decide(view(status, progress_deadline_seconds=600))
    assert late.ready[1] == "ProgressDeadlineExceeded"
    assert late.progressing[0] is False
    assert late.events[-1][0] == "ProgressDeadlineExceeded"


def test_judge_follows_success_then_failure_then_inconclusive() -> None:
    metric = AnalysisMetric.model_validate(
        {"name": "m", "successCondition": "result.errorRatio < 0.1", "failureCondition": "result.errorRatio > 0.5"}
    )
    assert judge(metric, Measurement({"errorRatio": 0.0}))[0] == "Successful"
    assert judge(metric, Measurement({"errorRatio": 0.9}))[0] == "Failed"
    assert judge(metric, Measurement({"errorRatio": 0.3}))[0] == "Inconclusive"
    assert judge(metric, Measurement(None, "no data"))[0] == "Inconclusive"
    assert judge(metric, Measurement({"other": 1}))[0] == "Inconclusive"
    scalar = AnalysisMetric.model_validate({"name": "p", "successCondition": "result < 0.05"})
    assert judge(scalar, Measurement(0.01))[0] == "Successful"
    assert judge(scalar, Measurement(0.2))[0] == "Failed"


QUIET_CANARY = Strategy.model_validate(
    {
        "type": "Canary",
        "canary": {
            "steps": [
                {"setWeight": 20},
                {
                    "analysis": {
                        "metrics": [
                            {
                                "name": "errors",
                                "initialDelay": "1m",
                                "interval": "30s",
                                "count": 2,
                                "minRecords": 5,
                                "successCondition": "result.errorRatio < 0.02",
                            }
                        ]
                    }
                },
            ]
        },
    }
)


def _at_analysis(seconds_in: float) -> RolloutView:
    status: dict[str, Any] = {"stableRevision": "a", "currentStepIndex": 1, "canaryWeight": 20}
    status["rollout"] = {"canaryRevision": "b", "stepStartedAt": "2026-11-27T12:00:00Z"}
    return view(
        status,
        strategy=QUIET_CANARY,
        canary_running="b",
        canary_available=True,
        now=T0 + timedelta(seconds=seconds_in),
    )


def test_analysis_waits_for_its_initial_delay_before_the_first_measurement() -> None:
    early = _at_analysis(20)
    assert due_metrics(early) == []
    waiting = decide(early)
    assert waiting.status["phase"] == "Progressing"
    assert "errors first measured at 2026-11-27T12:01:00Z (initialDelay 1m)" in waiting.status["message"]
    assert decide(_at_analysis(30)).status["message"] == waiting.status["message"]  # no countdown to reprint
    assert [m.name for m in due_metrics(_at_analysis(60))] == ["errors"]


def test_a_quiet_canary_waits_for_data_instead_of_pausing_as_inconclusive() -> None:
    metric = QUIET_CANARY.canary.steps[1].analysis.metrics[0]  # type: ignore[union-attr]
    current = _at_analysis(61)
    status = dict(current.status)
    for seconds in (61, 92, 123, 300, 900):
        quiet = replace(current, status=status, now=T0 + timedelta(seconds=seconds))
        assert [m.name for m in due_metrics(quiet)] == ["errors"]  # measured again every reconcile
        step = decide(replace(quiet, measurements={"errors": waiting_for_data(metric, 2)}))
        status = apply(status, step)
        assert step.status["phase"] == "Progressing"
        assert step.status["rollout"]["pauseConditions"] == []
        assert step.ready[1] == "RolloutInProgress"  # a quiet system is not a stalled rollout
    run = status["analysis"]["metrics"][0]
    assert (run["taken"], run["inconclusive"]) == (0, 0)
    assert "waiting for data: 2 of 5 canary records in the last minute" in status["message"]
    assert "None" not in status["message"]
    good = Measurement({"count": 40, "errorRatio": 0.0})
    for seconds in (901, 932):
        step = decide(
            replace(current, status=status, now=T0 + timedelta(seconds=seconds), measurements={"errors": good})
        )
        status = apply(status, step)
    assert status["analysis"]["phase"] == "Successful"
    assert status["currentStepIndex"] == 2  # past the last step: promoting


def test_an_inconclusive_reading_is_tolerated_once_by_default_and_reads_without_python_reprs() -> None:
    metric = AnalysisMetric.model_validate(
        {
            "name": "latency",
            "successCondition": "result.p95LatencyMs < 200.0",
            "failureCondition": "result.p95LatencyMs > 900.0",
        }
    )
    assert metric.inconclusive_limit == 1
    strategy = Strategy.model_validate(
        {
            "type": "Canary",
            "canary": {"steps": [{"setWeight": 20}, {"analysis": {"metrics": [metric.model_dump(by_alias=True)]}}]},
        }
    )
    status: dict[str, Any] = {"stableRevision": "a", "currentStepIndex": 1, "canaryWeight": 20}
    status["rollout"] = {"canaryRevision": "b", "stepStartedAt": "2026-11-27T12:00:00Z"}
    middling = Measurement({"count": 12, "p95LatencyMs": 450.5})
    first = decide(
        view(status, strategy=strategy, canary_running="b", canary_available=True, measurements={"latency": middling})
    )
    assert first.status["phase"] == "Progressing"
    status = apply(status, first)
    later = T0 + timedelta(seconds=31)
    second = decide(
        view(
            status,
            strategy=strategy,
            canary_running="b",
            canary_available=True,
            now=later,
            measurements={"latency": middling},
        )
    )
    assert second.status["phase"] == "Paused"
    assert second.status["rollout"]["pauseConditions"][0]["reason"] == "InconclusiveAnalysis"
    assert second.status["analysis"]["message"] == "latency: count=12, p95LatencyMs=450.5: neither condition held"


def test_a_prometheus_metric_cannot_set_min_records() -> None:
    example = Path(__file__).parents[2] / "examples" / "customer-onboarding" / "integration.yaml"
    doc = yaml.safe_load(example.read_text())
    metric = doc["spec"]["strategy"]["canary"]["steps"][1]["analysis"]["metrics"][0]
    assert validate_manifest(doc, "integration.yaml") == []
    metric["provider"] = {"prometheus": {"address": "http://127.0.0.1:9090", "query": "vector(0)"}}
    problems = validate_manifest(doc, "integration.yaml")
    assert [p.path for p in problems] == ["spec.strategy.canary.steps[1].analysis.metrics[0].minRecords"]
    assert "a Prometheus metric cannot set it" in problems[0].message


def test_a_result_reads_as_text() -> None:
    assert describe_result(None) == "no data"
    assert describe_result({"errorRatio": 0.0125, "count": 40}) == "errorRatio=0.0125, count=40"
    assert describe_result([0.5, True]) == "[0.5, true]"


@pytest.mark.parametrize(
    ("verb", "status", "refused"),
    [
        ("promote", {"currentRevision": "a-1", "stableRevision": "a-1", "phase": "Healthy"}, "nothing to promote"),
        ("abort", {"currentRevision": "a-1", "stableRevision": "a-1"}, "nothing to abort"),
        ("promote-full", {}, "nothing to promote-full"),
        ("promote", {"currentRevision": "a-2", "stableRevision": "a-1", "rollout": {"canaryRevision": "a-2"}}, None),
        ("abort", {"currentRevision": "a-2", "stableRevision": "a-1"}, None),
        ("resume", {"currentRevision": "a-1", "stableRevision": "a-1", "phase": "Healthy"}, "nothing to resume"),
        ("resume", {"currentRevision": "a-2", "stableRevision": "a-1", "rollout": {"pausedByUser": True}}, None),
        ("resume", {"phase": "Paused"}, None),
        ("retry", {"currentRevision": "a-2", "stableRevision": "a-1"}, "nothing to retry"),
        ("retry", {"currentRevision": "a-2", "stableRevision": "a-1", "rollout": {"abortedRevision": "a-2"}}, None),
        ("promote", {"currentRevision": "a-2", "stableRevision": "a-1", "rollout": {"abortedRevision": "a-2"}}, "x"),
        ("abort", {"currentRevision": "a-2", "stableRevision": "a-1", "rollout": {"abortedRevision": "a-2"}}, "x"),
        ("pause", {"currentRevision": "a-1", "stableRevision": "a-1"}, None),
    ],
)
def test_a_verb_with_nothing_to_act_on_is_refused_naming_why(
    verb: str, status: dict[str, Any], refused: str | None
) -> None:
    refusal = verb_refusal(verb, "orders", status)
    if refused is None:
        assert refusal is None
    else:
        assert refusal is not None
        if refused == "x":  # after an abort
            assert refusal.startswith(f"nothing to {verb}: the rollout of revision a-2 was aborted")
            assert "`retry`" in refusal
        else:
            assert refusal.startswith(refused)
            assert "Integration orders runs revision" in refusal
