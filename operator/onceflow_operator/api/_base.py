"""Shared building blocks of the onceflow.io/v1alpha1 API.

Why this module exists: every kind shares the same field naming (Kubernetes camelCase), the same
way of pointing at Secrets, the same status conditions, and the same rule that every string is
bounded (the API server's CEL cost budget depends on it). Keeping those pieces here means the
three kinds cannot drift apart.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict, JsonValue

__all__ = [
    "CONDITIONS_LIST",
    "DNS_LABEL",
    "DURATION",
    "IDENTIFIER",
    "ApiModel",
    "Condition",
    "LocalObjectReference",
    "SecretKeyRef",
    "cel_rules",
    "conditions_field",
    "forbidden_inline_secret",
    "immutable",
]

#: A Kubernetes DNS-1123 label; also a valid NATS subject token (no dots).
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
#: A CEL identifier, so that later steps can read `steps.<name>`.
IDENTIFIER = r"^[a-z][a-zA-Z0-9_]*$"
#: A Go-style duration such as 500ms, 30s, 5m or 1h30m.
DURATION = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"


def cel_rules(*rules: tuple[str, str] | tuple[str, str, str]) -> JsonDict:
    """Return `json_schema_extra` holding `x-kubernetes-validations` rules.

    Each rule is `(rule, message)` or `(rule, message, fieldPath)`; the message must say what is
    wrong and what to do, because it is exactly what `kubectl apply` prints.
    """
    out: list[JsonValue] = []
    for r in rules:
        entry: dict[str, JsonValue] = {"rule": r[0], "message": r[1]}
        if len(r) == 3:
            entry["fieldPath"] = r[2]
        out.append(entry)
    return {"x-kubernetes-validations": out}


def immutable(what: str, todo: str) -> JsonDict:
    """Return `json_schema_extra` making a field immutable once set (a CEL transition rule)."""
    return cel_rules(("self == oldSelf", f"{what} is immutable; {todo}"))


def forbidden_inline_secret(field: str, ref: str) -> JsonDict:
    """Rule refusing an inline secret value in `field`, pointing at the Secret reference to use."""
    return cel_rules(
        (
            f"!has(self.{field})",
            f"inline secret values are not accepted in {field}; store it in a Secret and "
            f"reference it with {ref} (name and key)",
            f".{field}",
        )
    )


class ApiModel(BaseModel):
    """Base of every API object: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
    )


class SecretKeyRef(ApiModel):
    """A key in a Secret in the same namespace. Secret values never appear in Onceflow objects."""

    name: str = Field(
        description="Name of the Secret, in the object's namespace.",
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        max_length=253,
    )
    key: str = Field(
        description="Key inside the Secret's data.",
        pattern=r"^[-._a-zA-Z0-9]+$",
        max_length=253,
    )


class LocalObjectReference(ApiModel):
    """A reference to another object of the named kind in the same namespace."""

    name: str = Field(description="Name of the referenced object.", pattern=DNS_LABEL, max_length=63)


class Condition(ApiModel):
    """One observation of the object's state, following Kubernetes API conventions."""

    type: str = Field(description="Condition type in CamelCase, e.g. Ready, Reconciling, Stalled.", max_length=64)
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(
        default="",
        description="One CamelCase word saying why the condition has its status.",
        max_length=128,
    )
    message: str = Field(default="", description="What happened and what to do, for a person.", max_length=4096)
    last_transition_time: datetime | None = Field(default=None, description="When the status last changed.")
    observed_generation: int | None = Field(
        default=None, description="The metadata.generation this condition was computed from.", ge=0
    )


#: Schema extensions for a list of conditions: one entry per type, merged by type.
CONDITIONS_LIST: JsonDict = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}


def conditions_field() -> Any:
    """Return the `conditions` field every status has."""
    return Field(
        default_factory=list,
        description="Current conditions: Ready always; Reconciling and Stalled only while true.",
        max_length=16,
        json_schema_extra=CONDITIONS_LIST,
    )
