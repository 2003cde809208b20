"""Compile API objects into the runner's plan: pure functions, no cluster, no NATS.

`plan_from_integration` is what the operator stores (one plan per revision) and what
`onceflow local run` feeds the runner. Problems are raised as `InvalidSpec` carrying field paths,
so the same message reaches `onceflow validate`, a Stalled condition and an Event.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from onceflow_operator.api import Connector, Integration, SyncPolicy
from onceflow_operator.api._base import SecretKeyRef
from onceflow_operator.api.integration import EXPRESSION_TIMEOUT_DEFAULT
from onceflow_operator.compiler.matching import matching_plan
from onceflow_operator.compiler.paths import literal_path
from onceflow_operator.compiler.schedule import SCHEDULE_PATH, poll_plan
from onceflow_operator.compiler.steps import compile_step, paging_plan
from onceflow_operator.compiler.tenancy import TRIGGER_SUBJECT_PATH, trigger_subject
from onceflow_operator.compiler.validation import (
    ack_wait_problems,
    connector_problems,
    semantic_problems,
    syncpolicy_problems,
)
from onceflow_runner.contract import subjects
from onceflow_runner.contract.durations import parse_duration
from onceflow_runner.contract.plan import (
    PLAN_VERSION,
    AuthPlan,
    ConnectorPlan,
    DriftCheckPlan,
    DriftCheckSide,
    ErrorPolicyPlan,
    GatewayPlan,
    MatchRulePlan,
    NatsPlan,
    PagingPlan,
    Plan,
    SecretRef,
    SessionLoginPlan,
    SignaturePlan,
    StepPlan,
    SyncPolicyPlan,
)

__all__ = [
    "InvalidSpec",
    "SpecProblem",
    "connector_plan",
    "gateway_plan",
    "plan_from_integration",
    "revision_hash",
    "workflow_spec",
]


@dataclass(frozen=True)
class SpecProblem:
    """One reason a spec cannot be planned: where and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class InvalidSpec(Exception):
    """The objects cannot be compiled into a plan; `problems` says where and why."""

    def __init__(self, problems: list[SpecProblem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


def _ref(ref: SecretKeyRef | None) -> SecretRef | None:
    return SecretRef(name=ref.name, key=ref.key) if ref else None


def workflow_spec(integration: Integration) -> dict[str, object]:
    """The part of the spec that makes a revision (how it is run — replicas, strategy — does not)."""
    spec = integration.spec.model_dump(by_alias=True, exclude_none=True, mode="json")
    workflow: dict[str, object] = {
        k: spec[k]
        for k in ("trigger", "businessKey", "steps", "errorPolicy", "syncPolicyRef", "concurrency")
        if k in spec
    }
    # Only when changed: a field added with a default must not make a new revision of every Integration.
    if spec.get("expressionTimeout", EXPRESSION_TIMEOUT_DEFAULT) != EXPRESSION_TIMEOUT_DEFAULT:
        workflow["expressionTimeout"] = spec["expressionTimeout"]
    return workflow


def revision_hash(integration: Integration, extra: Mapping[str, object] | None = None) -> str:
    """A short, stable hash of the normalised workflow spec (and what it compiles in)."""
    doc = {"workflow": workflow_spec(integration), **(extra or {})}
    digest = hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return digest[:10]


def connector_plan(connector: Connector) -> ConnectorPlan:
    """A REST Connector as runners call it (and as the operator's probe calls it, with its credentials)."""
    rest = connector.spec.rest
    assert rest is not None
    auth = rest.auth
    auth_plan = AuthPlan(type=auth.type)
    if auth.bearer:
        auth_plan = AuthPlan(type="Bearer", token=_ref(auth.bearer.token_ref))
    elif auth.basic:
        auth_plan = AuthPlan(
            type="Basic", username=_ref(auth.basic.username_ref), password=_ref(auth.basic.password_ref)
        )
    elif auth.api_key:
        auth_plan = AuthPlan(type="APIKey", header=auth.api_key.header, api_key=_ref(auth.api_key.value_ref))
    elif auth.erpnext_token:
        auth_plan = AuthPlan(
            type="ERPNextToken",
            api_key=_ref(auth.erpnext_token.api_key_ref),
            api_secret=_ref(auth.erpnext_token.api_secret_ref),
        )
    elif auth.oauth2:
        assertion = auth.oauth2.client_assertion
        auth_plan = AuthPlan(
            type="OAuth2ClientCredentials",
            client_id=_ref(auth.oauth2.client_id_ref),
            client_secret=_ref(auth.oauth2.client_secret_ref),
            token_url=auth.oauth2.token_url,
            scopes=tuple(auth.oauth2.scopes),
            assertion_key=_ref(assertion.private_key_ref) if assertion else None,
            assertion_key_id=assertion.key_id if assertion else "",
            assertion_algorithm=assertion.algorithm if assertion else "",
        )
    elif auth.session_login:
        login = auth.session_login
        auth_plan = AuthPlan(
            type="SessionLogin",
            session_login=SessionLoginPlan(
                method=login.method,
                path=login.path,
                secrets={name: SecretRef(name=ref.name, key=ref.key) for name, ref in login.secrets.items()},
                body=login.body,
                session=login.session,
                expires_in=login.expires_in,
                lifetime=parse_duration(login.lifetime) if login.lifetime else None,
                refresh_before=parse_duration(login.refresh_before),
                send_as=login.send_as,
                header=login.header or "",
                header_value=login.header_value,
                expired_when=login.expired_when,
            ),
        )
    return ConnectorPlan(
        name=str(connector.metadata.get("name")),
        base_url=rest.base_url,
        system=connector.spec.system,
        auth=auth_plan,
        requests_per_second=rest.rate_limit.requests_per_second,
        burst=rest.rate_limit.burst,
        connect_timeout=parse_duration(rest.timeouts.connect),
        read_timeout=parse_duration(rest.timeouts.read),
        total_timeout=parse_duration(rest.timeouts.total),
        max_response_bytes=rest.max_response_bytes,
        attempts=rest.retry.attempts,
        initial_backoff=parse_duration(rest.retry.initial_backoff),
        max_backoff=parse_duration(rest.retry.max_backoff),
        on_redirect=rest.on_redirect,
        headers=dict(rest.headers),
    )


def _sync_policy_plan(policy: SyncPolicy) -> SyncPolicyPlan:
    spec = policy.spec
    return SyncPolicyPlan(
        name=str(policy.metadata.get("name")),
        entity=spec.entity,
        owner_default=spec.ownership.default,
        owners=dict(spec.ownership.fields),
        identity_keys=tuple(spec.identity.keys),
        match_rules=tuple(
            MatchRulePlan(
                name=r.name,
                exact=tuple(r.exact),
                fuzzy_field=r.fuzzy.field if r.fuzzy else None,
                fuzzy_threshold=r.fuzzy.threshold if r.fuzzy else 1.0,
            )
            for r in spec.match_rules
        ),
        matching=matching_plan(policy),
        conflict_policy=spec.conflict_policy,
        price_deviation_percent=spec.tolerances.price_deviation_percent,
    )


def nats_names(namespace: str, integration: str, subject: str) -> NatsPlan:
    """DESIGN.md's NATS layout for one Integration (every name from `contract.subjects`)."""
    return NatsPlan(
        stream=subjects.stream_of_trigger(subject),
        subject=subject,
        consumer=subjects.consumer_name(namespace, integration),
        exceptions_subject=subjects.exceptions_subject(namespace, integration),
        dlq_subject=subjects.dlq_subject(namespace, integration),
        audit_subject=subjects.audit_subject(namespace, integration),
        events_prefix=subjects.events_prefix(namespace),
        stats_subject=subjects.stats_subject(namespace, integration),
        decisions_subject=subjects.decisions_subject(namespace, integration),
        kv_bucket=subjects.kv_bucket(namespace),
    )


def send_edi_problems(step: StepPlan, index: int, connectors: Mapping[str, Connector]) -> Iterator[tuple[str, str]]:
    """A sendEdi step's partner must be an EDI Connector that lists the document in spec.edi.send."""
    block = step.send_edi
    if block is None:
        return
    path = f"spec.steps[{index}].sendEdi.connector"
    conn = connectors.get(block.connector)
    if conn is None:
        yield path, f"Connector {block.connector!r} does not exist in this namespace"
    elif conn.spec.edi is None:
        yield path, f"Connector {block.connector!r} is {conn.spec.type}; sendEdi needs an EDI Connector"
    elif block.document not in conn.spec.edi.send:
        yield (
            f"spec.steps[{index}].sendEdi.document",
            f"Connector {block.connector!r} does not send {block.document}: add it to its spec.edi.send",
        )


def plan_from_integration(
    integration: Integration,
    connectors: Mapping[str, Connector],
    sync_policy: SyncPolicy | None,
    *,
    namespace: str,
) -> Plan:
    """Compile one Integration with the Connectors and SyncPolicy it names into a runner plan."""
    spec = integration.spec
    name = str(integration.metadata.get("name"))
    problems = [SpecProblem(path, message) for path, message in semantic_problems(integration)]

    source = source_system = ""
    trigger = spec.trigger
    if trigger.connector:
        source = trigger.connector.name
        hook = connectors.get(source)
        source_system = hook.spec.system if hook is not None else ""
        if hook is None:
            problems.append(
                SpecProblem("spec.trigger.connector.name", f"Connector {source!r} does not exist in {namespace}")
            )
        elif hook.spec.type not in ("Webhook", "EDI"):
            problems.append(
                SpecProblem(
                    "spec.trigger.connector.name", f"Connector {source!r} is {hook.spec.type}, not Webhook or EDI"
                )
            )
        event = trigger.connector.event
        subject = subjects.inbound_subject(namespace, source, subjects.ANY_TAIL if event == "*" else event)
    elif trigger.subject:
        subject, outside = trigger_subject(trigger.subject, namespace)
        if outside is not None:
            problems.append(SpecProblem(TRIGGER_SUBJECT_PATH, outside))
    else:
        subject = subjects.poll_subject(namespace, name)

    used: dict[str, ConnectorPlan] = {}
    if trigger.schedule:
        polled = trigger.schedule.poll.connector
        conn = connectors.get(polled)
        path = f"{SCHEDULE_PATH}.poll.connector"
        if conn is None:
            problems.append(SpecProblem(path, f"Connector {polled!r} does not exist in {namespace}"))
        elif conn.spec.type != "REST":
            problems.append(SpecProblem(path, f"Connector {polled!r} is {conn.spec.type}; polling needs REST"))
        else:
            used[polled] = connector_plan(conn)
            source, source_system = polled, conn.spec.system
    steps: list[StepPlan] = []
    for i, step in enumerate(spec.steps):
        compiled = compile_step(step, f"spec.steps[{i}]", has_sync_policy=spec.sync_policy_ref is not None)
        request = compiled.plan.request
        if request is not None:
            conn = connectors.get(request.connector)
            path = f"spec.steps[{i}].{step.kind}.connector"
            if conn is None:
                problems.append(SpecProblem(path, f"Connector {request.connector!r} does not exist in {namespace}"))
            elif conn.spec.type != "REST":
                problems.append(
                    SpecProblem(path, f"Connector {request.connector!r} is {conn.spec.type}; calls need REST")
                )
            elif request.connector not in used:
                used[request.connector] = connector_plan(conn)
                problems += [
                    SpecProblem(path, f"Connector {request.connector!r}: {where}: {message}")
                    for where, message in connector_problems(conn)
                ]
        problems += [SpecProblem(path, message) for path, message in send_edi_problems(compiled.plan, i, connectors)]
        problems += [SpecProblem(path, message) for path, message in compiled.problems]
        steps.append(compiled.plan)

    problems += [SpecProblem(path, message) for path, message in ack_wait_problems(integration, connectors)]
    if spec.sync_policy_ref and sync_policy is None:
        problems.append(
            SpecProblem(
                "spec.syncPolicyRef.name",
                f"SyncPolicy {spec.sync_policy_ref.name!r} does not exist in {namespace}",
            )
        )
    if problems:
        raise InvalidSpec(problems)

    policy = spec.error_policy
    compiled_in = {
        "connectors": {k: v.model_dump(mode="json") for k, v in sorted(used.items())},
        "syncPolicy": _sync_policy_plan(sync_policy).model_dump(mode="json") if sync_policy else None,
    }
    return Plan(
        plan_version=PLAN_VERSION,
        namespace=namespace,
        integration=name,
        revision=f"{name}-{revision_hash(integration, compiled_in)}",
        version=spec.version,
        source=source,
        source_system=source_system,
        business_key=spec.business_key,
        steps=tuple(steps),
        connectors=used,
        error_policy=ErrorPolicyPlan(
            backoff=tuple(parse_duration(d) for d in policy.backoff),
            max_deliver=policy.max_deliver,
            ack_wait=parse_duration(policy.ack_wait),
            permanent_failures=policy.permanent_failures,
        ),
        sync_policy=_sync_policy_plan(sync_policy) if sync_policy else None,
        concurrency=spec.concurrency,
        expression_timeout=parse_duration(spec.expression_timeout),
        nats=nats_names(namespace, name, subject),
        poll=poll_plan(integration, namespace=namespace) if trigger.schedule else None,
    )


def drift_check_plan(policy: SyncPolicy, connectors: Mapping[str, Connector], *, namespace: str) -> DriftCheckPlan:
    """Compile a SyncPolicy's `reconcile` block (its drift check) into the plan its CronJob runs."""
    spec = policy.spec.reconcile
    name = str(policy.metadata.get("name"))
    if spec is None:
        raise InvalidSpec([SpecProblem("spec.reconcile", "this SyncPolicy has no reconcile block")])
    problems = [SpecProblem(path, message) for path, message in syncpolicy_problems(policy)]
    sides = {}
    for side_name, side in (("left", spec.left), ("right", spec.right)):
        conn = connectors.get(side.connector)
        if conn is None or conn.spec.type != "REST":
            problems.append(
                SpecProblem(
                    f"spec.reconcile.{side_name}.connector",
                    f"REST Connector {side.connector!r} does not exist in {namespace}",
                )
            )
            continue
        if not problems:
            sides[side_name] = DriftCheckSide(
                connector=connector_plan(conn),
                path=literal_path(side.path),
                key_field=side.key_field,
                paging=paging_plan(side.paging) or PagingPlan(),
            )
    if problems:
        raise InvalidSpec(problems)
    return DriftCheckPlan(
        plan_version=PLAN_VERSION,
        namespace=namespace,
        sync_policy=name,
        entity=policy.spec.entity,
        left=sides["left"],
        right=sides["right"],
        events_subject=subjects.drift_subject(namespace, policy.spec.entity, name),
    )


def gateway_plan(connector: Connector, *, namespace: str) -> GatewayPlan:
    """Compile a Webhook Connector into its gateway's plan."""
    hook = connector.spec.webhook
    name = str(connector.metadata.get("name"))
    if hook is None:
        raise InvalidSpec([SpecProblem("spec.webhook", f"Connector {name!r} is not a Webhook connector")])
    sig = hook.signature
    return GatewayPlan(
        plan_version=PLAN_VERSION,
        namespace=namespace,
        connector=name,
        system=connector.spec.system,
        path=hook.path,
        signature=SignaturePlan(
            scheme=sig.scheme,
            secret=SecretRef(name=sig.secret_ref.name, key=sig.secret_ref.key),
            header=sig.header or "",
            algorithm=sig.algorithm,
            encoding=sig.encoding,
            prefix=sig.prefix,
            tolerance_seconds=sig.tolerance_seconds,
        ),
        event_header=hook.event.header,
        event_body_field=hook.event.body_field,
        event_default=hook.event.default,
        max_body_bytes=hook.max_body_bytes,
        max_backlog=hook.max_backlog,
        max_pending_publishes=hook.max_pending_publishes,
        processes=hook.processes_per_pod,
        subject_prefix=subjects.inbound_prefix(namespace, name),
    )
