"""`onceflow test`: golden fixtures for a workflow, run without any network.

Each fixture file says what arrives (`input`), what the systems answer (`responses`) and what
must happen (`expect`: outcome, the outbound calls in order, the events, the exception). The
Integration is compiled exactly as the operator compiles it and run by the runner's own engine;
only the Caller and EventSink are replaced by recorders, so a fixture proves the real workflow.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from onceflow_operator.api import Connector, Integration, SyncPolicy
from onceflow_operator.compiler.planner import plan_from_integration
from onceflow_operator.compiler.validation import load_manifests
from onceflow_runner.adapters.expression_workers import ExpressionWorkers
from onceflow_runner.contract.plan import Plan
from onceflow_runner.engine.core import Engine
from onceflow_runner.engine.ports import Response
from onceflow_runner.errors import OnceflowError, PermanentFailure, TransientFailure
from onceflow_runner.payloads.decode import decode_payload

__all__ = ["CaseResult", "run_fixtures"]


@dataclass
class _Recorder:
    responses: Mapping[str, Any]
    calls: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    async def request(self, connector: str, method: str, path: str, **kw: Any) -> Response:
        call: dict[str, Any] = {"connector": connector, "method": method, "path": path}
        if kw.get("query"):
            call["query"] = dict(kw["query"])
        if kw.get("body") is not None:
            call["body"] = kw["body"]
        if kw.get("idempotency_key"):
            call["idempotencyKey"] = kw["idempotency_key"]
        self.calls.append(call)
        answer = self.responses.get(
            f"{connector} {method} {path}", {"status": 200, "body": {"data": {"name": f"{connector}-1"}}}
        )
        return Response(int(answer.get("status", 200)), answer.get("body"))

    async def publish_event(self, entity: str, verb: str, data: Any, *, msg_id: str, meta: Mapping[str, Any]) -> None:
        self.events.append({"type": f"io.onceflow.{entity}.{verb}", "id": msg_id, "data": data})

    async def hand_over_edi(
        self, connector: str, document: str, data: Any, *, step: str, msg_id: str, meta: Mapping[str, Any]
    ) -> None:
        self.events.append({"type": f"edi.{connector}.{document}", "id": msg_id, "data": data})


@dataclass
class CaseResult:
    """One fixture's verdict; `problems` is empty when it passed."""

    name: str
    problems: list[str]


def _subset(expected: Any, actual: Any, where: str) -> list[str]:
    """Every key the fixture names must match; keys it leaves out are not checked."""
    if isinstance(expected, Mapping):
        if not isinstance(actual, Mapping):
            return [f"{where}: expected an object, got {actual!r}"]
        out: list[str] = []
        for key, value in expected.items():
            if key not in actual:
                out.append(f"{where}.{key}: missing")
            else:
                out += _subset(value, actual[key], f"{where}.{key}")
        return out
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(expected) != len(actual):
            return [f"{where}: expected {len(expected)} item(s), got {actual!r}"]
        return [
            p for i, (e, a) in enumerate(zip(expected, actual, strict=True)) for p in _subset(e, a, f"{where}[{i}]")
        ]
    return [] if expected == actual else [f"{where}: expected {expected!r}, got {actual!r}"]


async def _run_case(engine: Engine, case: dict[str, Any], recorder: _Recorder) -> dict[str, Any]:
    raw = case.get("inputText")
    payload = decode_payload(raw.encode(), "application/edi-x12") if raw else case.get("input")
    meta = {
        "deliveryId": "fixture-1",
        "source": engine.plan.source,
        "origin": "",
        "revision": engine.plan.revision,
        "integration": engine.plan.integration,
        "streamSequence": 1,
        "delivered": 1,
        **case.get("meta", {}),
    }
    try:
        meta["businessKey"] = await engine.business_key(payload, meta)
        outcome = await engine.run(payload, meta)
    except PermanentFailure as exc:
        return {
            "outcome": "exception",
            "exception": {"reason": exc.reason, "step": exc.step, "message": str(exc)},
        }
    except TransientFailure as exc:
        return {
            "outcome": "retry",
            "exception": {"reason": "Transient", "step": exc.step, "message": str(exc)},
        }
    return {
        "outcome": outcome.kind,
        "businessKey": meta["businessKey"],
        "record": outcome.record,
        "reason": outcome.reason,
        "step": outcome.step,
    }


def run_fixtures(manifests: list[Path], fixtures: Path, *, namespace: str = "default") -> list[CaseResult]:
    """Run every fixture in `fixtures` against the Integration(s) in `manifests`."""
    docs = [d for p in manifests for d in load_manifests(p)]
    connectors = {d["metadata"]["name"]: Connector.model_validate(d) for d in docs if d.get("kind") == "Connector"}
    policies = {d["metadata"]["name"]: SyncPolicy.model_validate(d) for d in docs if d.get("kind") == "SyncPolicy"}
    integrations = [Integration.model_validate(d) for d in docs if d.get("kind") == "Integration"]
    if len(integrations) != 1:
        raise OnceflowError(f"give exactly one Integration with -f (found {len(integrations)})")
    integration = integrations[0]
    for step in integration.spec.steps:  # stand-ins for Connectors not given: no network is used
        request = step.lookup or step.dedupe or step.call
        if request and request.connector not in connectors:
            connectors[request.connector] = Connector.model_validate(
                {
                    "metadata": {"name": request.connector},
                    "spec": {"type": "REST", "rest": {"baseURL": "http://fixture.invalid"}},
                }
            )
    if integration.spec.trigger.connector and integration.spec.trigger.connector.name not in connectors:
        name = integration.spec.trigger.connector.name
        connectors[name] = Connector.model_validate(
            {
                "metadata": {"name": name},
                "spec": {
                    "type": "Webhook",
                    "webhook": {
                        "signature": {
                            "scheme": "hmac",
                            "header": "X-Signature",
                            "secretRef": {"name": "x", "key": "x"},
                        }
                    },
                },
            }
        )
    ref = integration.spec.sync_policy_ref
    plan = plan_from_integration(integration, connectors, policies.get(ref.name) if ref else None, namespace=namespace)
    cases = {path.stem: yaml.safe_load(path.read_text()) or {} for path in sorted(fixtures.glob("*.yaml"))}
    return asyncio.run(_run_cases(plan, cases))


async def _run_cases(plan: Plan, cases: Mapping[str, dict[str, Any]]) -> list[CaseResult]:
    """Run the cases in order, with CEL that iterates under the plan's deadline as the runner runs it.

    The workers start on the first expression that needs them (none for a plan that never iterates).
    """
    workers = ExpressionWorkers(deadline=plan.expression_timeout)
    results = []
    try:
        for name, case in cases.items():
            recorder = _Recorder(case.get("responses", {}))
            engine = Engine(plan, recorder, recorder, workers)
            actual = await _run_case(engine, case, recorder)
            actual["calls"], actual["events"] = recorder.calls, recorder.events
            results.append(CaseResult(name, _subset(case.get("expect", {}), actual, "expect")))
    finally:
        await workers.aclose()
    return results
