"""What `onceflow rollout status` and `history` print, from an Integration and its revisions (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["history_rows", "render_status", "step_label"]


def step_label(step: Mapping[str, Any]) -> str:
    """One canary step in a few words."""
    if "setWeight" in step:
        return f"setWeight {step['setWeight']}%"
    if "pause" in step:
        duration = (step.get("pause") or {}).get("duration")
        return f"pause {duration}" if duration else "pause (until promoted)"
    metrics = [m["name"] for m in (step.get("analysis") or {}).get("metrics", [])]
    return "analysis " + ", ".join(metrics)


def _numbered(revision: str | None, numbers: Mapping[str, int]) -> str:
    if not revision:
        return "-"
    return f"revision {numbers[revision]} ({revision})" if revision in numbers else revision


def render_status(obj: Mapping[str, Any], numbers: Mapping[str, int]) -> str:
    """A person's view of one Integration's rollout: revisions, weight, steps, analysis, conditions."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    rollout = status.get("rollout") or {}
    strategy = spec.get("strategy") or {}
    lines = [
        f"Integration  {obj['metadata']['name']} (namespace {obj['metadata'].get('namespace', '')})",
        f"Phase        {status.get('phase', 'Pending')}: {status.get('message', '')}",
        f"Strategy     {strategy.get('type', 'RollingUpdate')}",
        f"Stable       {_numbered(status.get('stableRevision'), numbers)}",
        f"Current      {_numbered(status.get('currentRevision'), numbers)}",
    ]
    if rollout.get("canaryRevision"):
        lines.append(
            f"Canary       {_numbered(rollout['canaryRevision'], numbers)} at {status.get('canaryWeight', 0)}%"
        )
    if rollout.get("abortedRevision"):
        lines.append(f"Aborted      {_numbered(rollout['abortedRevision'], numbers)} (retry, or change the spec)")
    if rollout.get("drainingRevision"):
        lines.append(f"Draining     the canary lane finishes its records on {rollout['drainingRevision']}")
    steps = (strategy.get("canary") or {}).get("steps") or []
    if steps:
        current = status.get("currentStepIndex")
        lines.append("Steps")
        for i, step in enumerate(steps):
            mark = " "
            if rollout.get("canaryRevision") and current is not None:
                mark = "✔" if i < current else ("▶" if i == current else " ")
            lines.append(f"  {mark} {i} {step_label(step)}")
    analysis = status.get("analysis")
    if analysis:
        runs = ", ".join(
            f"{r['name']} {r.get('taken', 0)} taken/{r.get('failed', 0)} failed/{r.get('inconclusive', 0)} inconclusive"
            for r in analysis.get("metrics", [])
        )
        lines.append(f"Analysis     {analysis.get('phase')} at step {analysis.get('step', 0)}: {runs}")
        if analysis.get("message"):
            lines.append(f"             {analysis['message']}")
    pauses = ", ".join(p["reason"] for p in rollout.get("pauseConditions") or [])
    if pauses:
        lines.append(f"Paused       {pauses}")
    conditions = "  ".join(f"{c['type']}={c['status']} ({c.get('reason', '')})" for c in status.get("conditions", []))
    lines.append(f"Conditions   {conditions}")
    if rollout.get("lastAction"):
        lines.append(f"Last verb    {rollout['lastAction']}")
    return "\n".join(lines)


def history_rows(obj: Mapping[str, Any], revisions: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per ControllerRevision, newest first, marked stable / current / canary / aborted."""
    status = obj.get("status") or {}
    rollout = status.get("rollout") or {}
    rows = []
    for item in sorted(revisions, key=lambda r: int(r["revision"]), reverse=True):
        name = item["metadata"]["name"]
        marks = [
            label
            for label, value in (
                ("stable", status.get("stableRevision")),
                ("current", status.get("currentRevision")),
                ("canary", rollout.get("canaryRevision")),
                ("aborted", rollout.get("abortedRevision")),
            )
            if value == name
        ]
        rows.append(
            {
                "revision": int(item["revision"]),
                "name": name,
                "version": (item.get("data") or {}).get("version", ""),
                "created": item["metadata"].get("creationTimestamp", ""),
                "status": ",".join(marks),
            }
        )
    return rows
