"""The Fellegi-Sunter model: per-field levels with m/u probabilities, a prior, two thresholds.

A pair's evidence is the sum over fields of log2(m/u) of the level the pair reaches (m: how often
true duplicates reach that level, u: how often unrelated records do); a missing value adds 0.
With the prior link rate that gives a match probability; at or above `match_threshold` the
candidate is a certain match, at or above `review_threshold` a person decides, below it the record
is new. Candidates are scored one record against many: each record value is prepared once, each
candidate value through the comparison's memoised `prepare`, so 500 candidates cost a few ms.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from onceflow_runner.contract.plan import MatchingPlan
from onceflow_runner.matching.compare import MAX_VALUE_CHARS, Comparison, comparison
from onceflow_runner.matching.fields import field_value

__all__ = [
    "PROBABILISTIC_RULE",
    "Decision",
    "FieldModel",
    "MatchModel",
    "bayes_factor_to_probability",
    "model_from_plan",
    "score_candidates",
]

Decision = Literal["match", "review", "new"]
PROBABILISTIC_RULE = "probabilistic"


def _read(row: Any, path: str) -> Any:
    """`field_value`, with the common case (a dict nested one level, no flat dotted key) inlined: hot path."""
    if type(row) is dict and path not in row:
        head, dot, rest = path.partition(".")
        if dot and "." not in rest:
            inner = row.get(head)
            if type(inner) is dict:
                return inner.get(rest)
    return field_value(row, path)


def _logit(probability: float) -> float:
    return math.log2(probability / (1 - probability)) if probability < 1 else math.inf


def bayes_factor_to_probability(weight: float, prior: float) -> float:
    """Match probability from a total log2 Bayes factor and the prior link rate."""
    logit = weight + math.log2(prior / (1 - prior))
    if logit > 60:
        return 1.0
    if logit < -60:
        return 0.0
    return float(1.0 / (1.0 + 2.0 ** (-logit)))


@dataclass(frozen=True)
class FieldModel:
    """One compared field (two for a person's name): its comparison and m/u per level (without "missing")."""

    paths: tuple[str, ...]
    kind: str
    m: tuple[float, ...]
    u: tuple[float, ...]
    comparison: Comparison = field(init=False, compare=False, repr=False)
    weights: tuple[float, ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        cmp = comparison(self.kind)
        if len(self.paths) != cmp.arity:
            raise ValueError(f"{self.kind} compares {cmp.arity} field(s), got {len(self.paths)}")
        if not (len(self.m) == len(self.u) == len(cmp.levels)):
            raise ValueError(f"{self.name}: {self.kind} has {len(cmp.levels)} levels {cmp.levels}, m/u must match")
        for p in (*self.m, *self.u):
            if not 0 < p <= 1:
                raise ValueError(f"{self.name}: m and u are probabilities in (0, 1], got {p}")
        object.__setattr__(self, "comparison", cmp)
        object.__setattr__(self, "weights", tuple(math.log2(m / u) for m, u in zip(self.m, self.u, strict=True)))

    @property
    def name(self) -> str:
        """How the field is named in explanations: its path, or `first + last` for a person's name."""
        return " + ".join(self.paths)

    @property
    def levels(self) -> tuple[str, ...]:
        """The comparison's level names, most similar first."""
        return self.comparison.levels

    def raw(self, row: Any) -> Any:
        """The field's raw value in a row (a tuple for a comparison over two fields)."""
        if len(self.paths) == 1:
            return _read(row, self.paths[0])
        return tuple(_read(row, p) for p in self.paths)

    def prepared(self, row: Any) -> Any:
        """The field's prepared value in a row, None when missing."""
        return self.comparison.prepare(self.raw(row))


@dataclass(frozen=True)
class MatchModel:
    """Fields, prior link rate and thresholds (match probabilities) of one SyncPolicy's matching."""

    fields: tuple[FieldModel, ...]
    prior: float = 0.001
    match_threshold: float = 0.99
    review_threshold: float = 0.5

    def decide(self, probability: float) -> Decision:
        """Certain match, a person decides, or a new record."""
        if probability >= self.match_threshold:
            return "match"
        return "review" if probability >= self.review_threshold else "new"


def score_candidates(
    model: MatchModel, record: Mapping[str, Any], candidates: Iterable[Any], *, explain_all: bool = False
) -> list[dict[str, Any]]:
    """Candidates that are a certain match or need a person, best first, each with its explanation.

    Each result is the matching contract's candidate: rule "probabilistic", score (probability),
    decision, weight (total log2 Bayes factor), per-field level/weight/values, and the candidate row.
    `explain_all` keeps new-record candidates too (decision "new"), for evaluation.
    """
    prepared = [(f, f.prepared(record), f.raw(record)) for f in model.fields]
    # The hot loop's view of each field the record has: how to read it, prepare it, grade it, weigh it.
    compared = [
        (k, f.paths[0] if len(f.paths) == 1 and "." not in f.paths[0] else None, f, mine, f.comparison.prepare_str)
        for k, (f, mine, _) in enumerate(prepared)
        if mine is not None
    ]
    prior_logit = math.log2(model.prior / (1 - model.prior))
    # Most candidates are plainly someone else: compare the most telling fields first, and stop once
    # even the best levels of the fields left could not lift the candidate to review.
    compared.sort(key=lambda c: min(c[2].weights) - max(c[2].weights))
    best_left = [sum(max(0.0, max(c[2].weights)) for c in compared[i:]) for i in range(len(compared) + 1)]
    needed = -math.inf if explain_all else _logit(model.review_threshold) - prior_logit
    found: list[dict[str, Any]] = []
    for candidate in candidates:
        if type(candidate) is not dict and not isinstance(candidate, Mapping):
            continue
        total = 0.0
        levels = [-1] * len(prepared)
        hopeless = False
        for i, (k, key, f, mine, prepare_str) in enumerate(compared):
            if total + best_left[i] < needed:
                hopeless = True
                break
            cmp = f.comparison
            raw = candidate.get(key) if key is not None else f.raw(candidate)
            theirs = prepare_str(raw) if type(raw) is str and len(raw) <= MAX_VALUE_CHARS else cmp.prepare(raw)
            if theirs is None:
                continue
            level = cmp.level(mine, theirs)
            levels[k] = level
            total += f.weights[level]
        if hopeless:
            continue
        logit = total + prior_logit
        probability = 1.0 if logit > 60 else 0.0 if logit < -60 else 1.0 / (1.0 + 2.0 ** (-logit))
        decision = model.decide(probability)
        if decision == "new" and not explain_all:
            continue
        found.append(
            {
                "rule": PROBABILISTIC_RULE,
                "score": round(probability, 4),
                "decision": decision,
                "weight": round(total, 3),
                "fields": [
                    {
                        "field": f.name,
                        "level": "missing" if level < 0 else f.levels[level],
                        "weight": 0.0 if level < 0 else round(f.weights[level], 3),
                        "record": raw,
                        "candidate": f.raw(candidate),
                    }
                    for (f, _, raw), level in zip(prepared, levels, strict=True)
                ],
                "candidate": dict(candidate),
            }
        )
    found.sort(key=lambda m: -float(m["weight"]))
    return found


def model_from_plan(plan: MatchingPlan) -> MatchModel:
    """The model a plan's matching block describes (memoised: the plan is frozen and read per record)."""
    return _model_from_plan(plan)


@lru_cache(maxsize=64)
def _model_from_plan(plan: MatchingPlan) -> MatchModel:
    return MatchModel(
        tuple(FieldModel(f.paths, f.comparison, f.m, f.u) for f in plan.fields),
        prior=plan.prior_link_rate,
        match_threshold=plan.match_threshold,
        review_threshold=plan.review_threshold,
    )
