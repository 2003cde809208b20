"""Rollout decisions for one Integration (pure: no API server, no NATS, no clock of its own).

`decide` takes what the reconcile observed (the revision the spec asks for, the stable one, the
lanes' Deployments, the last status, a verb, analysis measurements) and returns what should run:
which revision each lane runs, the canary weight in force, and the status to write.

Lanes (see `onceflow_runner.contract.split`): the *main* lane is the Integration's durable consumer and
runs the stable revision; during a canary the *canary* lane runs the new revision and owns
`weight` percent of the records by stream sequence. Every end of a canary sets the weight to 0
and leaves the canary lane running until it has settled the records it owned before that
marker; on promotion those are finished by the new revision, on abort by the stable revision
(the canary lane's pods are switched to it). Then the lane is removed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from onceflow_operator.api.rollout import AnalysisMetric, CanaryStep, Strategy
from onceflow_operator.rollout.analysis import Measurement, fold_analysis
from onceflow_runner.contract.durations import parse_duration
from onceflow_runner.contract.timestamps import format_time, parse_time

__all__ = ["ROLLOUT_VERBS", "RolloutDecision", "RolloutView", "decide", "due_metrics", "verb_refusal"]

ROLLOUT_VERBS = ("promote", "promote-full", "abort", "retry", "pause", "resume")


def verb_refusal(verb: str, name: str, status: Mapping[str, Any]) -> str | None:
    """Why `verb` cannot act on the Integration's rollout as its `status` shows it, or None if it can.

    Why: a verb is an annotation the operator consumes on its next reconcile; one that has nothing
    to act on would be taken silently, and the person who typed `promote` believes it did something.
    `pause` is always taken (it also holds a rollout that has not started yet).
    """
    rollout = status.get("rollout") or {}
    current, stable = status.get("currentRevision"), status.get("stableRevision")
    in_progress = bool(rollout.get("canaryRevision")) or bool(current and stable and current != stable)
    runs = f"Integration {name} runs revision {stable or current or '(none yet)'}"
    aborted = rollout.get("abortedRevision")
    if aborted and aborted == current and verb in {"promote", "promote-full", "abort", "resume"}:
        return (
            f"nothing to {verb}: the rollout of revision {current} was aborted and revision {stable} serves; "
            "`retry` starts its canary again, or apply a new spec"
        )
    if verb in {"promote", "promote-full", "abort"} and not in_progress:
        return f"nothing to {verb}: {runs} and no rollout is in progress"
    paused = rollout.get("pausedByUser") or status.get("phase") == "Paused" or rollout.get("pauseConditions")
    if verb == "resume" and not paused:
        return f"nothing to resume: {runs} and is not paused"
    if verb == "retry" and not (aborted and aborted == current):
        return f"nothing to retry: {runs} and its current revision's rollout was not aborted"
    return None


@dataclass(frozen=True)
class RolloutView:
    """What the reconcile observed."""

    desired: str
    stable: str | None
    strategy: Strategy
    status: Mapping[str, Any]
    now: datetime
    main_running: str | None = None
    main_available: bool = False
    canary_running: str | None = None
    canary_available: bool = False
    canary_drained: bool = False
    spec_paused: bool = False
    progress_deadline_seconds: float = 600
    action: str | None = None
    measurements: Mapping[str, Measurement] = field(default_factory=dict)
    revision_numbers: Mapping[str, int] = field(default_factory=dict)


@dataclass
class RolloutDecision:
    """What should run and what to report."""

    main: str
    canary: str | None
    weight: int
    status: dict[str, Any]
    ready: tuple[bool, str, str]
    available: tuple[bool, str, str]
    progressing: tuple[bool, str, str]
    events: list[tuple[str, str, bool]] = field(default_factory=list)


def _current_step(view: RolloutView, index: int) -> CanaryStep | None:
    steps = view.strategy.canary.steps if view.strategy.canary else []
    return steps[index] if index < len(steps) else None


def due_metrics(view: RolloutView) -> list[AnalysisMetric]:
    """Metrics of the current analysis step whose next measurement is due (the reconcile takes them)."""
    rollout = view.status.get("rollout") or {}
    if not rollout.get("canaryRevision") or rollout.get("canaryRevision") != view.desired:
        return []
    index = int(view.status.get("currentStepIndex") or 0)
    step = _current_step(view, index)
    if step is None or step.analysis is None:
        return []
    analysis = view.status.get("analysis") or {}
    runs = {r["name"]: r for r in analysis.get("metrics") or []} if analysis.get("step") == index else {}
    due = []
    for metric in step.analysis.metrics:
        if _initial_delay_left(view, metric) > 0:
            continue
        run = runs.get(metric.name, {})
        last = parse_time(run.get("lastTime"))
        if int(run.get("taken", 0)) < metric.count and (
            last is None or (view.now - last).total_seconds() >= parse_duration(metric.interval)
        ):
            due.append(metric)
    return due


def _initial_delay_left(view: RolloutView, metric: AnalysisMetric) -> float:
    """Seconds until `metric`'s first measurement may be taken in the current step (0 when it may)."""
    started = parse_time((view.status.get("rollout") or {}).get("stepStartedAt")) or view.now
    return max(0.0, parse_duration(metric.initial_delay) - (view.now - started).total_seconds())


class _Walk:
    """Mutable state while one reconcile walks the canary steps."""

    def __init__(self, view: RolloutView) -> None:
        self.view = view
        status = view.status
        self.rollout: dict[str, Any] = dict(status.get("rollout") or {})
        self.index = int(status.get("currentStepIndex") or 0)
        self.weight = int(status.get("canaryWeight") or 0) if self.rollout.get("canaryRevision") else 0
        self.analysis: dict[str, Any] | None = dict(status["analysis"]) if status.get("analysis") else None
        self.events: list[tuple[str, str, bool]] = []
        self.pauses: list[dict[str, Any]] = []

    def number(self, revision: str | None) -> str:
        n = self.view.revision_numbers.get(revision or "")
        return f"revision {n} ({revision})" if n else f"revision {revision}"

    def next_step(self) -> None:
        self.index += 1
        self.rollout["stepStartedAt"] = format_time(self.view.now)
        self.rollout["progressAt"] = format_time(self.view.now)


def _fast_tracked(view: RolloutView, rollout: Mapping[str, Any]) -> bool:
    window = view.strategy.rollback_window.revisions
    return view.desired in list(rollout.get("previousStable") or [])[:window]


def decide(view: RolloutView) -> RolloutDecision:
    """The rollout's next state. Idempotent: the same view gives the same decision."""
    walk = _Walk(view)
    rollout = walk.rollout
    rollout.setdefault("previousStable", [])
    action = view.action if view.action in ROLLOUT_VERBS else None
    if action:
        rollout["lastAction"] = f"{action} at {format_time(view.now)}"
    if action == "pause":
        rollout["pausedByUser"] = True
    elif action == "resume":
        rollout["pausedByUser"] = False
    if view.stable is None or view.desired == view.stable:
        return _steady(view, walk)
    if view.strategy.type != "Canary" or _fast_tracked(view, rollout):
        return _replace(view, walk)
    if rollout.get("abortedRevision") == view.desired and action != "retry":
        return _aborted(view, walk)
    if rollout.get("canaryRevision") != view.desired or action == "retry":
        restarted = bool(rollout.get("canaryRevision")) and action != "retry"
        rollout.update(
            {
                "canaryRevision": view.desired,
                "abortedRevision": "",
                "stepStartedAt": format_time(view.now),
                "progressAt": format_time(view.now),
            }
        )
        walk.index, walk.weight, walk.analysis = 0, 0, None
        walk.events.append(
            (
                "RolloutRestarted" if restarted else "RolloutStarted",
                f"canary of {walk.number(view.desired)} begins; {walk.number(view.stable)} stays stable",
                False,
            )
        )
    return _canary(view, walk, action)


def _promoted(view: RolloutView, walk: _Walk, stable: str | None) -> None:
    previous = [r for r in walk.rollout.get("previousStable", []) if r != view.desired]
    if stable and stable != view.desired:
        previous = [stable, *[r for r in previous if r != stable]]
    walk.rollout["previousStable"] = previous[:10]
    walk.events.append(("NewRevisionPromoted", f"{walk.number(view.desired)} is stable", False))


def _steady(view: RolloutView, walk: _Walk) -> RolloutDecision:
    """The spec asks for the stable revision (or the first one): run it; end any canary."""
    rollout = walk.rollout
    target = view.desired
    canary = _ending_lane(view, walk, target)
    if rollout.get("canaryRevision"):
        walk.events.append(
            (
                "RolloutAborted",
                f"the spec is back to stable {walk.number(target)}; canary {walk.number(rollout['canaryRevision'])} "
                "stopped, its records finish on the stable revision",
                False,
            )
        )
    rollout.update({"canaryRevision": "", "abortedRevision": "", "stepStartedAt": None, "pauseConditions": []})
    serving = view.main_running == target and view.main_available
    if serving:
        # Nothing is progressing, so no deadline runs: the clock is absent (a later rollout starts
        # its own) rather than restamped on every look, which would write status on every resync.
        rollout["progressAt"] = None
    status: dict[str, Any] = {"currentStepIndex": None, "canaryWeight": None, "rollout": rollout}
    if serving:
        if view.stable is None:
            _promoted(view, walk, None)
        # How it came to serve ("promoted after its canary steps", ...) stays in the message until
        # the next rollout: the look after a promotion must neither hide it nor write status again.
        serving_message = f"{walk.number(target)} is serving"
        previous = str(view.status.get("message") or "")
        message = previous if previous.startswith(serving_message) else serving_message
        status.update(stableRevision=target, phase="Healthy", message=message)
        return RolloutDecision(
            target,
            canary,
            0,
            status,
            (True, "RunnersAvailable", status["message"]),
            (True, "RunnersAvailable", status["message"]),
            (False, _settled_reason(view), status["message"]),
            walk.events,
        )
    message = f"waiting for the runners of {walk.number(target)}"
    status.update(phase="Progressing", message=message)
    return _waiting(view, walk, target, canary, 0, status, "RunnersNotAvailable", message)


def _settled_reason(view: RolloutView) -> str:
    """Progressing's reason once serving: a promotion stays the reason until the next rollout.

    Why not switch to Steady on the next look: that would be one more status write per revision
    with nothing changed in the cluster.
    """
    if view.stable is None:
        return "NewRevisionPromoted"
    previous: dict[str, Any] = next(
        (c for c in view.status.get("conditions") or [] if c.get("type") == "Progressing"), {}
    )
    return "NewRevisionPromoted" if previous.get("reason") == "NewRevisionPromoted" else "Steady"


def _ending_lane(view: RolloutView, walk: _Walk, finisher: str) -> str | None:
    """The canary lane, if one exists, switched to `finisher` to settle what it owned; None once drained."""
    lane_exists = view.canary_running is not None or bool(walk.rollout.get("canaryRevision"))
    if not lane_exists or view.canary_drained:
        walk.rollout["drainingRevision"] = ""
        return None
    walk.rollout["drainingRevision"] = finisher
    return finisher


def _waiting(
    view: RolloutView,
    walk: _Walk,
    main: str,
    canary: str | None,
    weight: int,
    status: dict[str, Any],
    reason: str,
    message: str,
) -> RolloutDecision:
    """Not Ready yet; Progressing unless the deadline passed without progress."""
    since = parse_time(walk.rollout.get("progressAt")) or view.now
    if not walk.rollout.get("progressAt"):  # absent (or cleared) while steady: this wait starts the clock
        walk.rollout["progressAt"] = format_time(since)
    late = (view.now - since).total_seconds() > view.progress_deadline_seconds
    serving = view.main_available
    available = (serving, "StableServing" if serving else "RunnersNotAvailable", "stable runners are serving")
    if late:
        message = f"{message}; no progress for {int(view.progress_deadline_seconds)}s"
        status["message"] = message
        return RolloutDecision(
            main,
            canary,
            weight,
            status,
            (False, "ProgressDeadlineExceeded", message),
            available,
            (False, "ProgressDeadlineExceeded", message),
            [*walk.events, ("ProgressDeadlineExceeded", message, True)],
        )
    return RolloutDecision(
        main, canary, weight, status, (False, reason, message), available, (True, reason, message), walk.events
    )


def _replace(view: RolloutView, walk: _Walk, *, after_canary: bool = False) -> RolloutDecision:
    """Recreate, RollingUpdate, a fast-tracked rollback, or the promotion that ends a canary's steps.

    Either way the main lane moves to the new revision; `after_canary` says it earned it.
    """
    rollout = walk.rollout
    if rollout.get("canaryRevision") != view.desired:  # a canary of another revision ends here
        rollout["canaryRevision"] = ""
    rollout.update({"abortedRevision": "", "pauseConditions": []})
    canary = _ending_lane(view, walk, view.desired)
    if view.main_running == view.desired and view.main_available:
        rollout["canaryRevision"] = ""
        rollout["progressAt"] = format_time(view.now)
        _promoted(view, walk, view.stable)
        if after_canary:
            how = "promoted after its canary steps"
        elif view.strategy.type == "Canary":
            how = "fast-tracked rollback"
        else:
            how = view.strategy.type
        message = f"{walk.number(view.desired)} is serving ({how})"
        status = {
            "stableRevision": view.desired,
            "phase": "Healthy",
            "message": message,
            "currentStepIndex": None,
            "canaryWeight": None,
            "rollout": rollout,
        }
        return RolloutDecision(
            view.desired,
            canary,
            0,
            status,
            (True, "NewRevisionPromoted", message),
            (True, "RunnersAvailable", message),
            (False, "NewRevisionPromoted", message),
            walk.events,
        )
    verb = "promoting" if after_canary else "replacing"
    message = f"{verb} {walk.number(view.desired)} in place of {walk.number(view.stable)}"
    status = {"phase": "Progressing", "message": message, "currentStepIndex": None, "canaryWeight": None}
    status["rollout"] = rollout
    return _waiting(view, walk, view.desired, canary, 0, status, "RunnersNotAvailable", message)


def _aborted(view: RolloutView, walk: _Walk) -> RolloutDecision:
    """An aborted revision stays aborted until retry or a new spec: the stable revision serves."""
    rollout = walk.rollout
    canary = _ending_lane(view, walk, view.stable or view.desired)
    message = (
        (view.status.get("message") or "")
        if view.status.get("phase") == "Degraded"
        else (f"rollout of {walk.number(view.desired)} was aborted; {walk.number(view.stable)} serves")
    )
    status = {"phase": "Degraded", "message": message, "canaryWeight": None, "rollout": rollout}
    return RolloutDecision(
        view.stable or view.desired,
        canary,
        0,
        status,
        (False, "RolloutAborted", message),
        (view.main_available, "StableServing", f"{walk.number(view.stable)} serves"),
        (False, "RolloutAborted", message),
        walk.events,
    )


def _abort(view: RolloutView, walk: _Walk, reason: str, detail: str) -> RolloutDecision:
    walk.rollout.update({"abortedRevision": view.desired, "canaryRevision": "", "pauseConditions": []})
    message = (
        f"rollout of {walk.number(view.desired)} aborted: {detail}; stable {walk.number(view.stable)} "
        "keeps serving and finishes the canary's records"
    )
    walk.events.append((reason, message, True))
    decision = _aborted(view, walk)
    decision.status["message"] = message
    decision.ready = (False, reason, message)
    decision.progressing = (False, reason, message)
    if walk.analysis is not None:
        decision.status["analysis"] = walk.analysis
    return decision


def _canary(view: RolloutView, walk: _Walk, action: str | None) -> RolloutDecision:
    rollout, steps = walk.rollout, (view.strategy.canary.steps if view.strategy.canary else [])
    if action == "abort":
        return _abort(view, walk, "RolloutAborted", "aborted by a person")
    if action == "promote-full":
        walk.index = len(steps)
    elif action in {"promote", "resume"} and walk.index < len(steps):
        step = steps[walk.index]
        if step.pause is not None or (step.analysis is not None and action == "promote"):
            walk.next_step()
        elif step.analysis is not None:  # resume after an inconclusive analysis measures again
            walk.analysis = None
    canary_ready = view.canary_running == view.desired and view.canary_available
    blocked = ""
    while walk.index < len(steps):
        if view.spec_paused or rollout.get("pausedByUser"):
            reason = "SpecPaused" if view.spec_paused else "PausedByUser"
            walk.pauses.append({"reason": reason, "startTime": format_time(view.now)})
            blocked = "paused (spec.paused)" if view.spec_paused else "paused by a person; resume to continue"
            break
        step = steps[walk.index]
        if step.set_weight is not None:
            if not canary_ready:
                blocked = f"waiting for the canary runners of {walk.number(view.desired)}"
                break
            walk.weight = step.set_weight
            walk.next_step()
        elif step.pause is not None:
            started = parse_time(rollout.get("stepStartedAt")) or view.now
            if step.pause.duration and (view.now - started).total_seconds() >= parse_duration(step.pause.duration):
                walk.next_step()
                continue
            walk.pauses.append({"reason": "CanaryPauseStep", "startTime": format_time(started)})
            rollout["progressAt"] = format_time(view.now)  # a pause is a step, not a stall
            blocked = (
                f"pausing {step.pause.duration} at step {walk.index}"
                if step.pause.duration
                else (f"paused at step {walk.index}; promote to continue")
            )
            break
        else:
            assert step.analysis is not None
            walk.analysis, verdict = fold_analysis(
                walk.analysis, walk.index, step.analysis.metrics, view.measurements, view.now
            )
            if verdict == "Failed":
                assert walk.analysis is not None
                return _abort(view, walk, "AnalysisFailed", f"analysis failed on {walk.analysis.get('message', '')}")
            if verdict == "Inconclusive":
                walk.pauses.append({"reason": "InconclusiveAnalysis", "startTime": format_time(view.now)})
                blocked = "analysis inconclusive; promote to continue or abort"
                break
            if verdict is None:
                rollout["progressAt"] = format_time(view.now)  # waiting for data is a step, not a stall
                blocked = f"analysing: {_analysis_progress(view, step.analysis.metrics, walk.analysis)}"
                break
            walk.next_step()
    rollout["pauseConditions"] = walk.pauses
    status: dict[str, Any] = {"currentStepIndex": walk.index, "canaryWeight": walk.weight, "rollout": rollout}
    status["analysis"] = walk.analysis
    stable = view.stable or view.desired
    if walk.index >= len(steps):  # every step passed: the new revision takes the main lane
        status["canaryWeight"] = None
        decision = _replace(view, walk, after_canary=True)
        decision.status = {**status, **decision.status}
        if "stableRevision" not in decision.status:  # still promoting: stay past the last step
            decision.status["currentStepIndex"] = walk.index
        return decision
    rollout["drainingRevision"] = ""
    label = f"canary {walk.number(view.desired)} at {walk.weight}%, step {walk.index}/{len(steps)}: {blocked}"
    status.update(phase="Paused" if walk.pauses else "Progressing", message=label)
    return _waiting(view, walk, stable, view.desired, walk.weight, status, "RolloutInProgress", label)


def _analysis_progress(view: RolloutView, metrics: list[AnalysisMetric], analysis: Mapping[str, Any] | None) -> str:
    """Where each metric of a running analysis stands, for the rollout's message."""
    runs = {r["name"]: r for r in (analysis or {}).get("metrics") or []}
    parts = []
    for metric in metrics:
        run = runs.get(metric.name, {})
        left = _initial_delay_left(view, metric)
        if left > 0 and not run.get("taken"):
            # A time, not a countdown: the message (and `rollout status --watch`) changes only when
            # something happens, not on every reconcile.
            first = format_time(view.now + timedelta(seconds=math.ceil(left)))
            parts.append(f"{metric.name} first measured at {first} (initialDelay {metric.initial_delay})")
            continue
        text = f"{metric.name} {run.get('taken', 0)} of {metric.count} measurements"
        if run.get("lastValue"):
            text += f", {run['lastValue']}"
        parts.append(text)
    return "; ".join(parts)
