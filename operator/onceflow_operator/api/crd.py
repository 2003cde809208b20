"""Generate the CustomResourceDefinitions from the pydantic models.

Why: the models are the single source of truth (as kubebuilder does with Go types), so the
schema the API server enforces, the validation `onceflow validate` runs offline and the types the
operator reads can never disagree. Pydantic writes JSON Schema 2020-12 with `$ref`s; the API
server wants a *structural* OpenAPI v3 schema: everything inlined, no `anyOf` for optional
fields, boolean `exclusiveMinimum`, no titles. This module does that translation and nothing else.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, NoDefault
from pydantic_core import core_schema

from onceflow_operator.api.connector import Connector
from onceflow_operator.api.integration import Integration
from onceflow_operator.api.names import GROUP, VERSION
from onceflow_operator.api.syncpolicy import SyncPolicy

__all__ = ["GROUP", "KINDS", "VERSION", "KindInfo", "build_crd", "build_crds", "openapi_schema"]

CATEGORY = "onceflow"
_READY = '.status.conditions[?(@.type=="Ready")].status'

#: Root-level rule: names become NATS subject tokens and label values, so no dots and <= 63.
_NAME_RULE = {
    "rule": "self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 63",
    "message": "metadata.name must be a DNS label (lower case letters, digits and '-', at most 63 "
    "characters, no dots) because it becomes a NATS subject token and a label value",
    "fieldPath": ".metadata.name",
}


@dataclass(frozen=True)
class KindInfo:
    """What the CRD needs beyond the schema: names and printer columns."""

    model: type[BaseModel]
    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    columns: tuple[dict[str, Any], ...] = field(default=())


def _column(
    name: str, path: str, type_: str = "string", *, wide: bool = False, description: str = ""
) -> dict[str, Any]:
    col: dict[str, Any] = {"name": name, "type": type_, "jsonPath": path}
    if description:
        col["description"] = description
    if wide:
        col["priority"] = 1
    return col


_AGE = _column("Age", ".metadata.creationTimestamp", "date")

KINDS: tuple[KindInfo, ...] = (
    KindInfo(
        Connector,
        "Connector",
        "connectors",
        "connector",
        ("ofc", "ofconn"),
        (
            _column("Type", ".spec.type", description="REST or Webhook"),
            _column("Ready", _READY),
            _column("Endpoint", ".status.endpoint", description="Base URL called or webhook URL served"),
            _AGE,
            _column("System", ".spec.system", wide=True),
            _column("Status", ".status.lastHttpStatus", "integer", wide=True),
        ),
    ),
    KindInfo(
        Integration,
        "Integration",
        "integrations",
        "integration",
        ("ofi", "ofint"),
        (
            _column("Ready", _READY),
            _column("Phase", ".status.phase"),
            _column("Version", ".spec.version"),
            _column("Revision", ".status.revision", "integer"),
            _column("Weight", ".status.canaryWeight", "integer", description="Percent to the current revision"),
            _AGE,
            _column("Stable", ".status.stableRevision", wide=True),
            _column("Current", ".status.currentRevision", wide=True),
            _column("Message", ".status.message", wide=True),
        ),
    ),
    KindInfo(
        SyncPolicy,
        "SyncPolicy",
        "syncpolicies",
        "syncpolicy",
        ("ofsp",),
        (
            _column("Entity", ".spec.entity"),
            _column("Ready", _READY),
            _column("Drift", ".status.drift.total", "integer"),
            _AGE,
        ),
    ),
)


class _WithFactoryDefaults(GenerateJsonSchema):
    """Emit defaults for `default_factory` fields too, so the API server fills them in.

    A nested object's default is written out in full: the API server checks a default against
    the object's own CEL rules without applying the nested defaults first.
    """

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        factory = schema.get("default_factory")
        if factory is None:
            return super().get_default_value(schema)
        value = factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            return value.model_dump(by_alias=True, exclude_none=True, mode="json")
        return value if value is not None else NoDefault


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = {**base}
    for key, value in extra.items():
        if key == "x-kubernetes-validations" and key in out:
            out[key] = [*out[key], *value]
        else:
            out[key] = value
    return out


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    """Turn one pydantic JSON-schema node into a structural OpenAPI v3 node."""
    if isinstance(node, list):
        return [_structural(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        node = _merge(_structural(target, defs), node)
    if "anyOf" in node:
        options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express a union of {len(options)} types structurally: {options}")
        node = _merge(_structural(options[0], defs), node)
        if node.get("default", ...) is None:
            del node["default"]
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if "exclusiveMinimum" in node and not isinstance(node["exclusiveMinimum"], bool):
        node["minimum"] = node["exclusiveMinimum"]
        node["exclusiveMinimum"] = True
    if "exclusiveMaximum" in node and not isinstance(node["exclusiveMaximum"], bool):
        node["maximum"] = node["exclusiveMaximum"]
        node["exclusiveMaximum"] = True
    node.pop("title", None)
    if "patternProperties" in node:
        # pydantic writes a dict with constrained keys as patternProperties; CRDs do not have it.
        ((key_pattern, value_schema),) = node.pop("patternProperties").items()
        node["additionalProperties"] = value_schema
        node.setdefault("propertyNames", {})["pattern"] = key_pattern
    if "propertyNames" in node:
        # Structural schemas have no propertyNames; the same check as a CEL rule on the keys.
        names = node.pop("propertyNames")
        checks, says = [], []
        if "pattern" in names:
            checks.append(f"k.matches('{names['pattern']}')")
            says.append(f"match {names['pattern']}")
        if "maxLength" in names:
            checks.append(f"size(k) <= {names['maxLength']}")
            says.append(f"be at most {names['maxLength']} characters")
        if checks:
            rule = {
                "rule": f"self.all(k, {' && '.join(checks)})",
                "message": f"every key must {' and '.join(says)}",
            }
            node = _merge(node, {"x-kubernetes-validations": [rule]})
    node.pop("$defs", None)
    if "enum" in node and "type" not in node:
        node["type"] = "string"
    for key in ("properties",):
        if key in node:
            node[key] = {name: _structural(sub, defs) for name, sub in node[key].items()}
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            node[key] = _structural(node[key], defs)
    if node.get("type") == "object" and node.get("additionalProperties") is False:
        del node["additionalProperties"]
    return node


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    """Return the structural OpenAPI v3 schema of a model, as the API server wants it."""
    raw = model.model_json_schema(by_alias=True, mode="validation", schema_generator=_WithFactoryDefaults)
    defs = raw.get("$defs", {})
    return _structural(raw, defs)  # type: ignore[no-any-return]


def build_crd(info: KindInfo) -> dict[str, Any]:
    """Return the CustomResourceDefinition of one kind."""
    schema = openapi_schema(info.model)
    props = schema["properties"]
    props["apiVersion"] = {"type": "string", "description": "onceflow.io/v1alpha1"}
    props["kind"] = {"type": "string", "description": info.kind}
    props["metadata"] = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 63}}}
    schema["required"] = ["spec"]
    # kstatus (Flux's `wait`, kubectl's and cli-utils' status) reads an object without
    # `status.observedGeneration` as Current: a new object the operator has not seen yet would
    # count as healthy. The API server fills this default when it serves an object with no status
    # (status is dropped on create), so until the operator's first write the object reads as
    # generation 0 observed, which kstatus calls InProgress and Argo CD's health.lua Progressing.
    props["status"]["default"] = {"observedGeneration": 0}
    schema.setdefault("x-kubernetes-validations", []).append(copy.deepcopy(_NAME_RULE))
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{info.plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "onceflow"},
            "annotations": {"argocd.argoproj.io/sync-wave": "-10"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": info.kind,
                "listKind": f"{info.kind}List",
                "plural": info.plural,
                "singular": info.singular,
                "shortNames": list(info.short_names),
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": list(info.columns),
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def build_crds() -> list[dict[str, Any]]:
    """Return the CRDs of every kind, in a stable order."""
    return [build_crd(info) for info in KINDS]
