"""Offline checks of Onceflow manifests: what `onceflow validate -f` runs before `kubectl apply`.

Why: a platform engineer should learn that a workflow is wrong in their editor or in CI, not
from a Stalled condition after Argo CD synced it. The checks are the same ones the API server
runs (schema from the same pydantic models; the CRDs' own CEL rules, evaluated here with a CEL
library) plus what only Onceflow can know: every CEL expression in the steps compiles, a step
reads only results of steps that run before it, and `errorPolicy.ackWait` outlasts the slowest
call a step can make (that needs the Connectors, so the API server cannot check it). When Secret
manifests are given with the Connectors that name them, a webhook signing secret that is empty or
malformed is refused with the same words the gateway uses (`contract.signing`); the value itself
is never printed.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import cel
import yaml
from pydantic import BaseModel, ValidationError

from onceflow_operator.api import GROUP, KINDS, VERSION, Connector, Integration, SyncPolicy
from onceflow_operator.api.crd import build_crd
from onceflow_operator.compiler.matching import matching_problems
from onceflow_operator.compiler.paths import literal_hint, reconcile_path_problems
from onceflow_operator.compiler.references import reference_problems
from onceflow_operator.compiler.schedule import poll_expressions, schedule_problems
from onceflow_operator.compiler.steps import STEP_COMPILERS, step_expressions, step_path_problems
from onceflow_operator.compiler.tenancy import TRIGGER_SUBJECT_PATH, trigger_subject
from onceflow_runner.contract.durations import parse_duration
from onceflow_runner.contract.plan import worst_call_seconds
from onceflow_runner.contract.signing import SECRET_FIELD, signing_secret_problem
from onceflow_runner.engine.expressions import MAX_NESTED_ITERATIONS, iterates, shape, unknown_functions
from onceflow_runner.engine.functions import CEL_FUNCTIONS

__all__ = [
    "ManifestProblem",
    "ack_wait_problems",
    "cel_expressions",
    "connector_problems",
    "expression_timeout_problems",
    "load_manifests",
    "semantic_problems",
    "signing_secret_problems",
    "syncpolicy_problems",
    "validate_manifest",
    "validate_paths",
]

_API_VERSION = f"{GROUP}/{VERSION}"
_MODELS: dict[str, type[BaseModel]] = {info.kind: info.model for info in KINDS}
#: Steps whose results later steps can read as steps.<name>.
_STEPS_WITH_RESULTS = {kind for kind, compiler in STEP_COMPILERS.items() if compiler.has_result}
_STEP_REF = re.compile(r"\bsteps\s*(?:\.\s*([A-Za-z_][A-Za-z0-9_]*)|\[\s*['\"]([^'\"]+)['\"]\s*\])")


@dataclass(frozen=True)
class ManifestProblem:
    """One thing wrong with one manifest, printed as `file:Kind/name: path: message`."""

    source: str
    kind: str
    name: str
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.source}:{self.kind}/{self.name}: {where}{self.message}"


def load_manifests(path: Path) -> Iterator[dict[str, Any]]:
    """Yield every YAML document in a file that is a mapping (lists of items are expanded)."""
    with path.open() as fh:
        for doc in yaml.safe_load_all(fh):
            if isinstance(doc, dict) and doc.get("kind") == "List":
                yield from (item for item in doc.get("items", []) if isinstance(item, dict))
            elif isinstance(doc, dict):
                yield doc


def _loc_to_path(loc: Iterable[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in {"function-after", "function-before"} or "[" in part:
            continue
        else:
            out += f".{part}" if out else part
    return out


@cache
def _schema(kind: str) -> dict[str, Any]:
    info = next(i for i in KINDS if i.kind == kind)
    schema: dict[str, Any] = build_crd(info)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


@cache
def _program(rule: str) -> cel.Program:
    return cel.compile(rule)


def _check_rules(schema: dict[str, Any], value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Evaluate the schema's x-kubernetes-validations like the API server (not transition rules)."""
    for rule in schema.get("x-kubernetes-validations", []):
        if "oldSelf" in rule["rule"]:
            continue
        try:
            holds = _program(rule["rule"]).execute({"self": value}) is True
        except (ValueError, RuntimeError, KeyError, TypeError):
            holds = False  # the API server also refuses an object whose rule cannot be evaluated
        if not holds:
            yield (path + rule.get("fieldPath", "")).lstrip("."), rule["message"]
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, sub in value.items():
            sub_schema = props.get(key, extra if isinstance(extra, dict) else None)
            if sub_schema is not None:
                yield from _check_rules(sub_schema, sub, f"{path}.{key}" if path else key)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        if schema.get("x-kubernetes-list-type") == "map":
            yield from _duplicate_keys(schema["x-kubernetes-list-map-keys"], value, path)
        for i, item in enumerate(value):
            yield from _check_rules(schema["items"], item, f"{path}[{i}]")


def _duplicate_keys(keys: list[str], items: list[Any], path: str) -> Iterator[tuple[str, str]]:
    seen: set[tuple[Any, ...]] = set()
    for i, item in enumerate(items):
        key = tuple(item.get(k) for k in keys) if isinstance(item, dict) else (item,)
        if key in seen:
            shown = ", ".join(f"{k}={v!r}" for k, v in zip(keys, key, strict=True))
            yield (
                f"{path}[{i}]",
                f"Duplicate value: {shown} is used twice; entries are keyed by {'/'.join(keys)}",
            )
        seen.add(key)


#: Error types whose offending value is safe and useful to echo. Never extra fields: a mistyped
#: key such as `tokne: ...` may hold a secret value.
_ECHO_VALUE = {
    "literal_error",
    "enum",
    "string_pattern_mismatch",
    "greater_than",
    "greater_than_equal",
    "less_than",
    "less_than_equal",
    "int_parsing",
    "bool_parsing",
}


def _describe(err: Any) -> str:
    """Pydantic's message, plus the offending value when it is safe and short enough to show."""
    value = err.get("input")
    if err["type"] in _ECHO_VALUE and isinstance(value, str | int | float | bool) and len(str(value)) <= 80:
        return f"{err['msg']} (got {value!r})"
    return str(err["msg"])


def cel_expressions(integration: Integration) -> Iterator[tuple[str, str]]:
    """Yield (field path, CEL source) for every expression in an Integration's spec."""
    spec = integration.spec
    if spec.business_key:
        yield "spec.businessKey", spec.business_key
    yield from poll_expressions(integration)
    for i, step in enumerate(spec.steps):
        yield from step_expressions(step, f"spec.steps[{i}]")
    if spec.strategy.canary:
        for i, cstep in enumerate(spec.strategy.canary.steps):
            for j, metric in enumerate(cstep.analysis.metrics if cstep.analysis else []):
                base = f"spec.strategy.canary.steps[{i}].analysis.metrics[{j}]"
                yield f"{base}.successCondition", metric.success_condition
                if metric.failure_condition:
                    yield f"{base}.failureCondition", metric.failure_condition


def _step_index(path: str) -> int | None:
    match = re.match(r"spec\.steps\[(\d+)\]", path)
    return int(match.group(1)) if match else None


def connector_problems(connector: Connector) -> Iterator[tuple[str, str]]:
    """Yield (path, message) for a Connector's CEL (its session login) that cannot work."""
    rest = connector.spec.rest
    login = rest.auth.session_login if rest else None
    if login is None:
        return
    base = "spec.rest.auth.sessionLogin"
    for field, source in (
        ("body", login.body),
        ("session", login.session),
        ("expiresIn", login.expires_in),
        ("headerValue", login.header_value),
        ("expiredWhen", login.expired_when),
    ):
        if not source:
            continue
        try:
            cel.compile(source)
        except ValueError as exc:
            detail = str(exc).split("\n", 1)[0].split(": ", 1)[-1]
            yield f"{base}.{field}", f"CEL does not compile ({detail}); fix the expression"
            continue
        if unknown := unknown_functions(source):
            yield (
                f"{base}.{field}",
                f"calls {', '.join(f'{name}()' for name in unknown)}, which CEL and Onceflow do not provide; "
                f"Onceflow adds {', '.join(CEL_FUNCTIONS)}",
            )
        if iterates(source):
            yield (
                f"{base}.{field}",
                "iterates (all/exists/exists_one/map/filter), which a session login's CEL may not: it runs in the "
                "runner's event loop on whole answers, with no worker to stop it; pick fields directly",
            )
        if field in {"body", "headerValue"}:
            for name in _SECRET_REF.findall(source):
                if name not in login.secrets:
                    yield f"{base}.{field}", f"reads secrets.{name}, which sessionLogin.secrets does not name"


_SECRET_REF = re.compile(r"\bsecrets\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)")


def semantic_problems(integration: Integration) -> Iterator[tuple[str, str]]:
    """Yield (path, message) for CEL that cannot work, and for an expression deadline out of range.

    CEL cannot work when it does not compile, nests comprehensions too deep, iterates in a
    rollout analysis condition, or reads a step that is missing, later, or has no result.
    """
    yield from expression_timeout_problems(integration)
    yield from schedule_problems(integration)
    steps = integration.spec.steps
    position = {step.name: i for i, step in enumerate(steps)}
    for path, source in cel_expressions(integration):
        try:
            cel.compile(source)
        except ValueError as exc:
            detail = str(exc).split("\n", 1)[0].split(": ", 1)[-1]
            yield path, f"CEL does not compile ({detail}); fix the expression{literal_hint(path, source)}"
            continue
        unknown = unknown_functions(source) if path.startswith("spec.steps[") else []
        if unknown:
            yield (
                path,
                f"calls {', '.join(f'{name}()' for name in unknown)}, which CEL and Onceflow do not provide; "
                f"Onceflow adds {', '.join(CEL_FUNCTIONS)} (docs/concepts.md, CEL functions)",
            )
        depth = shape(source).depth
        if depth > MAX_NESTED_ITERATIONS:
            yield (
                path,
                f"nests {depth} comprehensions (all/exists/exists_one/map/filter), at most {MAX_NESTED_ITERATIONS} "
                "are allowed: each level multiplies the work by the size of a list in the record; compute the "
                "inner part in an earlier map step, or split the check into several rules",
            )
        if ".analysis.metrics[" in path and iterates(source):
            # The operator evaluates analysis conditions inline, with no worker to stop them: two
            # nested maps over 900-number literals held its event loop for 70 s.
            yield (
                path,
                "iterates (all/exists/exists_one/map/filter), which an analysis condition may not: `result` is a "
                "number or a flat map of numbers; compare them without a comprehension, e.g. result.errorRatio < 0.01",
            )
        at = _step_index(path)
        for match in _STEP_REF.finditer(source):
            ref = match.group(1) or match.group(2)
            if ref not in position:
                yield path, f"reads steps.{ref}, but no step is named {ref!r}; use one of {sorted(position)}"
            elif at is not None and position[ref] >= at:
                yield path, f"reads steps.{ref}, which runs at or after this step; move {ref!r} earlier"
            elif steps[position[ref]].kind not in _STEPS_WITH_RESULTS:
                yield (
                    path,
                    (
                        f"reads steps.{ref}, a {steps[position[ref]].kind} step, which has no result; "
                        "only lookup, dedupe, call and map steps do"
                    ),
                )
    for i, step in enumerate(steps):
        yield from step_path_problems(step, f"spec.steps[{i}]")


def syncpolicy_problems(policy: SyncPolicy) -> Iterator[tuple[str, str]]:
    """Yield (path, message) for reconcile paths the drift check could not request, bad paging CEL, bad matching."""
    yield from matching_problems(policy)
    if policy.spec.reconcile is not None:
        for side in ("left", "right"):
            endpoint = getattr(policy.spec.reconcile, side)
            yield from reconcile_path_problems(f"spec.reconcile.{side}.path", endpoint.path)
            if endpoint.paging.next is not None:
                try:
                    cel.compile(endpoint.paging.next)
                except ValueError as exc:
                    detail = str(exc).split("\n", 1)[0].split(": ", 1)[-1]
                    yield f"spec.reconcile.{side}.paging.next", f"CEL does not compile ({detail}); fix the expression"


#: Bounds of `spec.expressionTimeout`: below 10ms a worker round trip alone can miss it; above 60s
#: a record holds its worker (and its place in line) longer than any sane rule needs.
EXPRESSION_TIMEOUT_RANGE = (0.01, 60.0)


def expression_timeout_problems(integration: Integration) -> Iterator[tuple[str, str]]:
    """Yield (path, message) when `spec.expressionTimeout` is outside `EXPRESSION_TIMEOUT_RANGE`."""
    low, high = EXPRESSION_TIMEOUT_RANGE
    seconds = parse_duration(integration.spec.expression_timeout)
    if not low <= seconds <= high:
        yield (
            "spec.expressionTimeout",
            f"{integration.spec.expression_timeout} is outside 10ms..60s; an expression that needs longer "
            "should be split or computed by the system that sends the record",
        )


def _seconds(value: float) -> str:
    return f"{value:g}s"


def ack_wait_problems(integration: Integration, connectors: Mapping[str, Connector]) -> Iterator[tuple[str, str]]:
    """Yield (path, message) when `errorPolicy.ackWait` is shorter than one call a step can make.

    JetStream redelivers a delivery that says nothing for ackWait; the runner says "in progress"
    every third of it, but a runner that stalls or dies mid-call must not look alive for less
    than its call can take. Connectors not given are left to the planner's own check.
    """
    ack_wait = parse_duration(integration.spec.error_policy.ack_wait)
    worst: tuple[float, str, str] | None = None
    for step in integration.spec.steps:
        request = step.lookup or step.dedupe or step.call
        connector = connectors.get(request.connector) if request is not None else None
        rest = connector.spec.rest if connector is not None else None
        if rest is None:
            continue
        connect, read = parse_duration(rest.timeouts.connect), parse_duration(rest.timeouts.read)
        seconds = worst_call_seconds(
            attempts=rest.retry.attempts,
            connect_timeout=connect,
            read_timeout=read,
            initial_backoff=parse_duration(rest.retry.initial_backoff),
            max_backoff=parse_duration(rest.retry.max_backoff),
        )
        pauses = seconds - rest.retry.attempts * (connect + read)
        how = f"{rest.retry.attempts} attempts x ({_seconds(connect)} connect + {_seconds(read)} read)"
        if worst is None or seconds > worst[0]:
            worst = (seconds, str(connector.metadata.get("name")) if connector else "", f"{how} + {_seconds(pauses)}")
    if worst is not None and ack_wait < worst[0]:
        seconds, name, how = worst
        yield (
            "spec.errorPolicy.ackWait",
            f"{_seconds(ack_wait)} is shorter than one call to Connector {name!r} can take ({how} backoff = "
            f"{_seconds(seconds)}), so JetStream could redeliver a record while its call runs; set ackWait to "
            f"at least {math.ceil(seconds)}s, or lower that Connector's timeouts or retry.attempts",
        )


def validate_manifest(doc: dict[str, Any], source: str, namespace: str | None = None) -> list[ManifestProblem]:
    """Return every problem found in one manifest; an empty list means it is valid.

    `namespace` is where it will be applied (`-n`); the manifest's own `metadata.namespace` wins.
    With neither, what depends on the namespace (a trigger subject's tenancy) is left to the operator.
    """
    kind = str(doc.get("kind", ""))
    metadata = doc.get("metadata") or {}
    name = str(metadata.get("name", "<no name>")) if isinstance(metadata, dict) else "<no name>"
    if isinstance(metadata, dict) and metadata.get("namespace"):
        namespace = str(metadata["namespace"])

    def problem(path: str, message: str) -> ManifestProblem:
        return ManifestProblem(source, kind or "<no kind>", name, path, message)

    if not str(doc.get("apiVersion", "")).startswith(f"{GROUP}/"):
        return []
    if doc.get("apiVersion") != _API_VERSION:
        return [problem("apiVersion", f"unknown version {doc.get('apiVersion')!r}; use {_API_VERSION}")]
    model = _MODELS.get(kind)
    if model is None:
        return [problem("kind", f"unknown kind {kind!r}; use one of {sorted(_MODELS)}")]
    try:
        obj = model.model_validate(doc)
    except ValidationError as exc:
        return [problem(_loc_to_path(err["loc"]), _describe(err)) for err in exc.errors(include_url=False)]
    problems = [
        problem(path, message)
        for path, message in _check_rules(
            _schema(kind), obj.model_dump(by_alias=True, exclude_none=True, mode="json"), ""
        )
    ]
    if isinstance(obj, Integration) and not problems:
        problems += [problem(path, message) for path, message in semantic_problems(obj)]
        if namespace and obj.spec.trigger.subject:
            _, outside = trigger_subject(obj.spec.trigger.subject, namespace)
            if outside is not None:
                problems.append(problem(TRIGGER_SUBJECT_PATH, outside))
    if isinstance(obj, Connector) and not problems:
        problems += [problem(path, message) for path, message in connector_problems(obj)]
    if isinstance(obj, SyncPolicy) and not problems:
        problems += [problem(path, message) for path, message in syncpolicy_problems(obj)]
    return problems


def _secret_values(doc: dict[str, Any]) -> dict[str, str] | None:
    """A Secret manifest's values as text (None when a data value is not base64)."""
    try:
        values = {
            k: base64.b64decode(str(v), validate=True).decode(errors="replace")
            for k, v in (doc.get("data") or {}).items()
        }
    except binascii.Error:
        return None
    return values | {k: str(v) for k, v in (doc.get("stringData") or {}).items()}


def signing_secret_problems(docs: Iterable[tuple[str, dict[str, Any]]]) -> list[ManifestProblem]:
    """Webhook Connectors whose signing secret, given as a Secret manifest among `docs`, is unusable.

    `docs` are (source, manifest) pairs. A Connector whose Secret is not among them is not judged:
    the Secret may be created another way (and the gateway will refuse it if it is unusable).
    """
    docs = list(docs)
    secrets = {
        str((d.get("metadata") or {}).get("name")): (source, d)
        for source, d in docs
        if d.get("kind") == "Secret" and d.get("apiVersion") == "v1"
    }
    problems = []
    for source, doc in docs:
        if doc.get("kind") != "Connector" or not str(doc.get("apiVersion", "")).startswith(f"{GROUP}/"):
            continue
        signature = ((doc.get("spec") or {}).get("webhook") or {}).get("signature") or {}
        ref = signature.get("secretRef") or {}
        if not isinstance(ref, dict) or str(ref.get("name")) not in secrets:
            continue
        name = str((doc.get("metadata") or {}).get("name", "<no name>"))
        values = _secret_values(secrets[str(ref.get("name"))][1])
        value = None if values is None else values.get(str(ref.get("key")))
        if value is None:
            message = f"Secret {ref.get('name')!r} has no key {ref.get('key')!r}"
        else:
            message = signing_secret_problem(str(signature.get("scheme", "")), value) or ""
        if message:
            problems.append(ManifestProblem(source, "Connector", name, SECRET_FIELD, message))
    return problems


def validate_paths(
    paths: Iterable[Path], namespace: str | None = None, *, external: Collection[str] = ()
) -> tuple[int, list[ManifestProblem]]:
    """Validate every Onceflow manifest in the files (applied in `namespace`, if given); return (checked, problems).

    Every Connector, SyncPolicy and Secret a manifest names must be among the files, except the
    kinds in `external` (created another way; see compiler.references).
    """
    checked, problems = 0, []
    given: list[tuple[str, dict[str, Any]]] = []
    valid: list[tuple[str, dict[str, Any]]] = []
    for path in paths:
        try:
            docs = list(load_manifests(path))
        except (OSError, yaml.YAMLError) as exc:
            problems.append(ManifestProblem(str(path), "<file>", "-", "", f"cannot read: {exc}"))
            continue
        except UnicodeDecodeError:
            problems.append(ManifestProblem(str(path), "<file>", "-", "", "is not UTF-8 text; give YAML manifests"))
            continue
        given += [(str(path), doc) for doc in docs]
        for doc in docs:
            if str(doc.get("apiVersion", "")).startswith(f"{GROUP}/"):
                checked += 1
                found = validate_manifest(doc, str(path), namespace)
                problems += found
                if not found:
                    valid.append((str(path), doc))
    problems += _cross_manifest_problems(valid)
    parsed = [(source, _MODELS[str(doc["kind"])].model_validate(doc)) for source, doc in valid]
    problems += [
        ManifestProblem(*found)
        for found in reference_problems(
            given,
            [(source, obj) for source, obj in parsed if isinstance(obj, Connector | Integration | SyncPolicy)],
            namespace=namespace,
            external=external,
        )
    ]
    return checked, problems + signing_secret_problems(given)


def _cross_manifest_problems(docs: list[tuple[str, dict[str, Any]]]) -> list[ManifestProblem]:
    """What needs several manifests: an Integration's ackWait against the Connectors it calls."""
    by_namespace: dict[str, dict[str, Connector]] = {}
    for _, doc in docs:
        if doc.get("kind") == "Connector":
            connector = Connector.model_validate(doc)
            by_namespace.setdefault(str(connector.metadata.get("namespace", "")), {})[
                str(connector.metadata.get("name"))
            ] = connector
    problems = []
    for source, doc in docs:
        if doc.get("kind") == "Integration":
            integration = Integration.model_validate(doc)
            connectors = by_namespace.get(str(integration.metadata.get("namespace", "")), {})
            name = str(integration.metadata.get("name", "<no name>"))
            problems += [
                ManifestProblem(source, "Integration", name, path, message)
                for path, message in ack_wait_problems(integration, connectors)
            ]
    return problems
