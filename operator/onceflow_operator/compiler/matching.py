"""A SyncPolicy's `matching` block compiled into the plan, with the entity's defaults filled in.

Why here and not in the runner: the plan is self-contained (DESIGN.md), so the runner scores with
exactly the m/u the operator compiled, and a defaults change reaches running revisions only
through a new plan. The comparisons' levels come from the runner's `matching.compare`, so the
names a user writes are checked against the code that computes them.
"""

from __future__ import annotations

from collections.abc import Iterator

from onceflow_operator.api.syncpolicy import MatchField, Matching, SyncPolicy
from onceflow_runner.contract.plan import MatchFieldPlan, MatchingPlan
from onceflow_runner.matching.compare import COMPARISONS
from onceflow_runner.matching.defaults import DEFAULT_PRIOR, ENTITY_FIELDS, KIND_DEFAULTS

__all__ = ["matching_plan", "matching_problems"]


def _field_plan(f: MatchField) -> MatchFieldPlan:
    levels = COMPARISONS[f.comparison].levels
    m, u = (list(x) for x in KIND_DEFAULTS[f.comparison])
    for override in f.levels:
        i = levels.index(override.level)
        m[i], u[i] = override.m, override.u
    paths = (f.field, f.last_name_field) if f.last_name_field else (f.field,)
    return MatchFieldPlan(paths=paths, comparison=f.comparison, m=tuple(m), u=tuple(u))


def _entity(policy: SyncPolicy, matching: Matching) -> str:
    return matching.entity or policy.spec.entity


def matching_problems(policy: SyncPolicy) -> Iterator[tuple[str, str]]:
    """Yield (path, message) for what the schema's CEL also refuses, for offline validation."""
    matching = policy.spec.matching
    if matching is None:
        return
    if not matching.fields and _entity(policy, matching) not in ENTITY_FIELDS:
        yield (
            "spec.matching.fields",
            (f"{policy.spec.entity} has no default matching fields; name the fields or set matching.entity"),
        )
    if matching.thresholds.review >= matching.thresholds.match:
        yield "spec.matching.thresholds.review", "must be below thresholds.match"
    for i, f in enumerate(matching.fields):
        here = f"spec.matching.fields[{i}]"
        if (f.comparison == "personName") != (f.last_name_field is not None):
            yield f"{here}.lastNameField", "set lastNameField exactly when comparison is personName"
        levels = COMPARISONS[f.comparison].levels
        for j, level in enumerate(f.levels):
            if level.level not in levels:
                yield (
                    f"{here}.levels[{j}].level",
                    f"{level.level!r} is not a {f.comparison} level; one of {', '.join(levels)}",
                )


def matching_plan(policy: SyncPolicy) -> MatchingPlan | None:
    """The plan's matching block: the policy's fields, or its entity's defaults; None without matching."""
    matching = policy.spec.matching
    if matching is None:
        return None
    if matching.fields:
        fields = tuple(_field_plan(f) for f in matching.fields)
    else:
        fields = tuple(
            MatchFieldPlan(
                paths=d.paths,
                comparison=d.kind,
                m=d.m or KIND_DEFAULTS[d.kind][0],
                u=d.u or KIND_DEFAULTS[d.kind][1],
            )
            for d in ENTITY_FIELDS[_entity(policy, matching)]
        )
    return MatchingPlan(
        fields=fields,
        prior_link_rate=matching.prior_link_rate or DEFAULT_PRIOR,
        match_threshold=matching.thresholds.match,
        review_threshold=matching.thresholds.review,
        on_certain_match=matching.on_certain_match,
    )
