"""The SyncPolicy kind: the rules of one business entity across systems.

A SyncPolicy says which system owns which fields of, say, a customer, how two records are
recognised as the same customer, how conflicts are settled and how often the systems are
compared. The operator compiles it into the plan of every Integration that names it, so the
rules are enforced where the data moves (in the runner), not only documented.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from onceflow_operator.api._base import DNS_LABEL, ApiModel, Condition, cel_rules, conditions_field, immutable
from onceflow_operator.api.types import Entity, Paging, ReconcilePath
from onceflow_runner.matching.compare import COMPARISONS
from onceflow_runner.matching.defaults import ENTITY_FIELDS

__all__ = [
    "Drift",
    "FuzzyMatch",
    "Identity",
    "MatchField",
    "MatchLevel",
    "MatchRule",
    "MatchThresholds",
    "Matching",
    "Ownership",
    "ReconcileEndpoint",
    "ReconcileSchedule",
    "SyncPolicy",
    "SyncPolicySpec",
    "SyncPolicyStatus",
    "Tolerances",
]

FIELD_NAME = r"^[A-Za-z_][A-Za-z0-9_.]*$"
SYSTEM_NAME = DNS_LABEL
FieldName = Annotated[str, Field(pattern=FIELD_NAME, max_length=128)]
#: A dotted path whose every step is non-empty: matching reads "address..city" or "name." as nothing
#: at all, so such a field would never agree or disagree (silently weightless).
MatchPath = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$", max_length=128)]
SystemName = Annotated[str, Field(pattern=SYSTEM_NAME, max_length=63)]


class Ownership(ApiModel):
    """Which system is the system of record, by default and per field."""

    default: str = Field(
        description="System (Connector name) owning every field not listed in fields.",
        pattern=SYSTEM_NAME,
        max_length=63,
    )
    fields: dict[FieldName, SystemName] = Field(
        default_factory=dict,
        description="Canonical field name -> owning system (Connector name).",
        max_length=200,
    )


class FuzzyMatch(ApiModel):
    """Similarity of one text field, 0 to 1 (normalised token-sort ratio)."""

    field: str = Field(description="Canonical field compared, e.g. name.", pattern=FIELD_NAME, max_length=128)
    threshold: float = Field(description="Minimum similarity, e.g. 0.9.", ge=0, le=1)


class MatchRule(ApiModel):
    """Two records are the same when all exact fields are equal and the fuzzy field is similar enough."""

    model_config = {
        "json_schema_extra": cel_rules(
            (
                "size(self.exact) > 0 || has(self.fuzzy)",
                "a match rule needs exact fields, a fuzzy field, or both",
            ),
        )
    }

    name: str = Field(description="Rule name, shown beside candidates.", pattern=DNS_LABEL, max_length=63)
    exact: list[FieldName] = Field(
        default_factory=list,
        description="Fields that must be equal (after trimming and case folding).",
        max_length=8,
    )
    fuzzy: FuzzyMatch | None = Field(default=None, description="A text field that must be similar.")


ComparisonKind = Literal[
    "exact", "identifier", "text", "company", "address", "postcode", "email", "phone", "date", "number", "personName"
]
DEFAULTS_ENTITIES = tuple(ENTITY_FIELDS)


def _levels_rule() -> str:
    """CEL: every level named in `levels` is a level of the field's comparison."""
    clauses = [
        f"(self.comparison == '{kind}' && l.level in [{', '.join(repr(n) for n in c.levels)}])"
        for kind, c in COMPARISONS.items()
    ]
    return f"!has(self.levels) || self.levels.all(l, {' || '.join(clauses)})"


def _levels_message() -> str:
    return "each levels[].level must be a level of the comparison: " + "; ".join(
        f"{kind}: {', '.join(c.levels)}" for kind, c in COMPARISONS.items()
    )


class MatchLevel(ApiModel):
    """m and u of one agreement level: how often true duplicates (m) and unrelated records (u) reach it."""

    # Why: the weight is log2(m/u); swapped m and u (a common slip) make exact agreement count
    # against a match, or total disagreement for one, and the runner would quietly link strangers.
    model_config = {
        "json_schema_extra": cel_rules(
            (
                "self.level != 'exact' || self.m >= self.u",
                "at level exact m must be at least u (exact agreement would count against a match); swap m and u",
            ),
            (
                "self.level != 'different' || self.m <= self.u",
                "at level different m must be at most u (disagreement would count for a match); swap m and u",
            ),
        )
    }

    level: str = Field(description="Level name, e.g. exact, jaro-winkler>=0.92, different.", max_length=64)
    m: float = Field(description="Share of true duplicates whose values reach this level (0 < m <= 1).", gt=0, le=1)
    u: float = Field(description="Share of unrelated records whose values reach this level (0 < u <= 1).", gt=0, le=1)


class MatchField(ApiModel):
    """One compared field: its comparison and, optionally, m/u for some of its levels."""

    model_config = {
        "json_schema_extra": cel_rules(
            (
                "self.comparison == 'personName' ? has(self.lastNameField) : !has(self.lastNameField)",
                "lastNameField is set exactly when comparison is personName (field is then the first name)",
            ),
            (_levels_rule(), _levels_message()),
            (
                "!has(self.levels) || self.levels.all(a, self.levels.exists_one(b, b.level == a.level))",
                "each level may be listed once in levels; remove the repeated one",
            ),
        )
    }

    field: MatchPath = Field(description="Canonical field (dotted path allowed, e.g. address.city).")
    comparison: ComparisonKind = Field(
        description=(
            "How values are compared: exact; identifier (tax ids, one typo tolerated); text (Jaro-Winkler bands); "
            "company (legal forms, stop words, abbreviations normalised; token ratios); address (street words "
            "normalised); postcode; email; phone (digits, country code and trunk prefix ignored); date (day/month "
            "swaps); number (1% tolerance); personName (first name in field, last name in lastNameField: "
            "nicknames, initials, phonetic codes, swapped names)."
        )
    )
    last_name_field: MatchPath | None = Field(default=None, description="The last name, for comparison personName.")
    levels: list[MatchLevel] = Field(
        default_factory=list,
        description="m/u of some levels; levels not listed keep the comparison's defaults (see docs/matching.md).",
        max_length=8,
    )


class MatchThresholds(ApiModel):
    """Match probabilities that separate certain matches, a person's decision and new records."""

    model_config = {
        "json_schema_extra": cel_rules(("self.review < self.match", "thresholds.review must be below thresholds.match"))
    }

    match: float = Field(default=0.99, description="At or above: a certain match (onCertainMatch).", gt=0, le=1)
    review: float = Field(default=0.5, description="At or above (below match): parked for a person.", gt=0, le=1)


class Matching(ApiModel):
    """Probabilistic (Fellegi-Sunter) duplicate matching, after the deterministic matchRules."""

    # Why: a field compared twice counts its evidence twice (the model assumes fields independent),
    # so one shared city would weigh like a shared city and postcode.
    model_config = {
        "json_schema_extra": cel_rules(
            (
                "!has(self.fields) || self.fields.all(a, self.fields.exists_one(b, b.field == a.field))",
                "each field may be compared once in matching.fields; remove the repeated one",
            ),
            # The schema's own bound says "should be less than 0" for 0.5 (the API server prints the
            # bound as an integer), which sends the user the wrong way: this message says the range.
            (
                "!has(self.priorLinkRate) || (self.priorLinkRate > 0.0 && self.priorLinkRate < 0.5)",
                "priorLinkRate is a probability above 0 and below 0.5, e.g. 0.0005; leave it out for the default",
                ".priorLinkRate",
            ),
        )
    }

    entity: Literal["customer", "supplier", "item"] | None = Field(
        default=None,
        description=(
            "Whose default fields and m/u to use when fields is empty; the policy's entity when unset "
            "(customer, supplier and item have defaults)."
        ),
    )
    fields: list[MatchField] = Field(
        default_factory=list,
        description="Compared fields; they replace the entity's defaults. `onceflow match train` writes m/u here.",
        max_length=24,
    )
    thresholds: MatchThresholds = Field(default_factory=MatchThresholds, description="Decision thresholds.")
    prior_link_rate: float | None = Field(
        default=None,
        description="How likely two records, drawn at random, are the same (default 0.0005; trained by match train).",
        gt=0,
        lt=0.5,
    )
    on_certain_match: Literal["Skip", "Update"] = Field(
        default="Skip",
        description=(
            "A certain match: Skip acknowledges the record (the existing one stands); Update runs the later steps "
            "with the existing record in steps.<dedupe>.match, for a call that updates it."
        ),
    )


class Tolerances(ApiModel):
    """How far values may differ before a person must decide."""

    price_deviation_percent: float = Field(
        default=0,
        description="Allowed deviation of an order line price from the ERP price list.",
        ge=0,
        le=100,
    )


class ReconcileEndpoint(ApiModel):
    """Where to list the entity in one system."""

    connector: str = Field(description="REST Connector name.", pattern=DNS_LABEL, max_length=63)
    path: ReconcilePath = Field(
        description="Path listing the records, as written (a query is allowed), e.g. /api/resource/Customer; "
        "'{{' and '}}' are literal braces, the same template grammar as a step's path, without placeholders."
    )
    key_field: str = Field(
        description="Field holding the identity key in that system.", pattern=FIELD_NAME, max_length=128
    )
    paging: Paging = Field(
        default_factory=Paging,
        description=(
            "How the system pages the list; every page is read. Defaults fit ERPNext (limit_start, "
            "limit_page_length). When maxPages stops the reading, the drift check reports itself incomplete "
            "and does not count records only on the other side as missing."
        ),
    )


class ReconcileSchedule(ApiModel):
    """A periodic comparison of the entity between two systems, reporting drift."""

    schedule: str = Field(default="0 * * * *", description="Cron schedule of the drift check.", max_length=128)
    suspend: bool = Field(default=False, description="Stop scheduling drift checks.")
    left: ReconcileEndpoint = Field(description="First system, usually the system of record.")
    right: ReconcileEndpoint = Field(description="Second system.")


class SyncPolicySpec(ApiModel):
    """Desired state of a SyncPolicy."""

    model_config = {
        "json_schema_extra": cel_rules(
            (
                "size(self.identity.keys) > 0 || size(self.matchRules) > 0 || has(self.matching)",
                "set identity.keys, matchRules or matching so records can be recognised as the same",
            ),
            (
                "!has(self.matching) || size(self.matching.fields) > 0 || has(self.matching.entity) || "
                "self.entity in ['customer', 'supplier', 'item']",
                "matching: only customer, supplier and item have default fields; name matching.fields",
            ),
        )
    }

    entity: Entity = Field(
        description="Business entity governed: customer, item, price, order, shipment, invoice or supplier. Immutable.",
        json_schema_extra=immutable("entity", "create a new SyncPolicy for another entity"),
    )
    ownership: Ownership = Field(description="System of record per field.")
    identity: Identity = Field(description="Keys that identify a record across systems.")
    match_rules: list[MatchRule] = Field(
        default_factory=list,
        description="Rules that find likely duplicates; any rule matching makes a candidate.",
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    matching: Matching | None = Field(
        default=None,
        description=(
            "Probabilistic matching of candidates no match rule matched: per-field agreement levels weighed by m/u, "
            "certain matches linked, likely ones parked for a person (docs/matching.md)."
        ),
    )
    conflict_policy: Literal["SystemOfRecordWins", "Manual"] = Field(
        default="SystemOfRecordWins",
        description="SystemOfRecordWins: a change from a non-owner is dropped and reported. "
        "Manual: it is parked for a person.",
    )
    tolerances: Tolerances = Field(default_factory=Tolerances, description="Allowed deviations.")
    reconcile: ReconcileSchedule | None = Field(default=None, description="Periodic drift check.")


class Identity(ApiModel):
    """Fields whose values identify one business record in every system."""

    keys: list[FieldName] = Field(
        default_factory=list,
        description="Canonical identity fields, e.g. tax_id.",
        max_length=8,
    )


class Drift(ApiModel):
    """What the last drift check found."""

    total: int = Field(default=0, description="Records that differ or are missing on one side.", ge=0)
    missing_left: int = Field(default=0, description="Records only in the right system.", ge=0)
    missing_right: int = Field(default=0, description="Records only in the left system.", ge=0)
    mismatched: int = Field(default=0, description="Records in both with differing owned fields.", ge=0)
    complete: bool = Field(
        default=True,
        description=(
            "False when a side's paging stopped at maxPages: records only on the other side were not counted as "
            "missing (they may be on a page not read)."
        ),
    )
    message: str = Field(default="", description="What was not read and what to do, when incomplete.", max_length=1024)
    last_run_time: datetime | None = Field(default=None, description="When the last drift check finished.")


class SyncPolicyStatus(ApiModel):
    """Observed state of a SyncPolicy, written only by the operator."""

    observed_generation: int | None = Field(default=None, description="Generation last reconciled.", ge=0)
    conditions: list[Condition] = conditions_field()
    integrations: list[Annotated[str, Field(max_length=253)]] = Field(
        default_factory=list,
        description="Integrations that use this policy.",
        max_length=500,
    )
    drift: Drift | None = Field(default=None, description="Result of the last drift check.")


class SyncPolicy(ApiModel):
    """Rules for one business entity: system of record per field, identity, conflicts, drift checks."""

    api_version: Literal["onceflow.io/v1alpha1"] = Field(default="onceflow.io/v1alpha1", alias="apiVersion")
    kind: Literal["SyncPolicy"] = "SyncPolicy"
    metadata: dict[str, object] = Field(default_factory=dict)
    spec: SyncPolicySpec
    status: SyncPolicyStatus | None = None


SyncPolicySpec.model_rebuild()
