"""Estimating m/u (unsupervised EM, or from reviewers' labels) and measuring a model on labels.

Why estimated: the defaults are a good start, but how often unrelated records share a city or a
mailbox, and how carefully a target's users key names, differ per system. The estimate follows
the usual Fellegi-Sunter recipe (as splink does): u from random pairs (nearly all are different
records), then m and the link rate by expectation-maximisation over candidate pairs with u held,
so the EM cannot swap the two classes. Labelled pairs (reviewers' same / not same decisions) give
m and u directly. Patterns are counted first: EM runs over distinct level vectors, not pairs.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from onceflow_runner.matching.model import FieldModel, MatchModel, bayes_factor_to_probability

__all__ = [
    "Evaluation",
    "LabelledPair",
    "absent_fields",
    "blocks_by_fields",
    "estimate_from_labels",
    "estimate_m_em",
    "estimate_u_random",
    "evaluate",
    "pair_levels",
    "prepare_records",
    "train",
    "weights_table",
]

#: Added to every level count so no probability is 0 (a level never seen keeps a small weight).
SMOOTHING = 0.5


@dataclass(frozen=True)
class LabelledPair:
    """Two records and whether a person said they are the same."""

    left: Mapping[str, Any]
    right: Mapping[str, Any]
    same: bool


@dataclass(frozen=True)
class Evaluation:
    """Precision, recall and F1 of a model on labelled pairs, counting matches and review as "same"."""

    pairs: int
    true_positives: int
    false_positives: int
    false_negatives: int
    certain: int
    certain_wrong: int

    @property
    def precision(self) -> float:
        """Share of pairs flagged (certain or review) that are the same."""
        flagged = self.true_positives + self.false_positives
        return self.true_positives / flagged if flagged else 1.0

    @property
    def recall(self) -> float:
        """Share of same pairs that were flagged."""
        same = self.true_positives + self.false_negatives
        return self.true_positives / same if same else 1.0

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall."""
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def absent_fields(model: MatchModel, records: Iterable[Any]) -> list[str]:
    """Names of the compared fields no record has a value for: training keeps their m/u as they are."""
    seen: set[int] = set()
    for rec in records:
        seen.update(k for k, f in enumerate(model.fields) if k not in seen and f.prepared(rec) is not None)
        if len(seen) == len(model.fields):
            break
    return [f.name for k, f in enumerate(model.fields) if k not in seen]


def prepare_records(model: MatchModel, records: Sequence[Any]) -> list[list[Any]]:
    """Each record's prepared value per field, computed once for every pair the record is in."""
    return [[f.prepared(rec) for f in model.fields] for rec in records]


def pair_levels(model: MatchModel, left: Sequence[Any], right: Sequence[Any]) -> tuple[int, ...]:
    """The level per field of two prepared records (-1 when a side is missing)."""
    return tuple(
        -1 if a is None or b is None else f.comparison.level(a, b)
        for f, a, b in zip(model.fields, left, right, strict=True)
    )


def pattern_weight(model: MatchModel, levels: Sequence[int]) -> float:
    """Total log2 Bayes factor of a level vector."""
    return sum(f.weights[level] for f, level in zip(model.fields, levels, strict=True) if level >= 0)


def _probabilities(counts: Sequence[float], unseen: tuple[float, ...]) -> tuple[float, ...]:
    """Smoothed shares of `counts`; `unseen` (the current m or u) when nothing was counted.

    Why: a field the sample or the labels lack (a column not exported) has no counts, and smoothing
    alone made its m and u equal, silently switching off the field's evidence.
    """
    if not any(counts):
        return unseen
    smoothed = [c + SMOOTHING for c in counts]
    total = sum(smoothed)
    return tuple(c / total for c in smoothed)


def estimate_u_random(model: MatchModel, records: Sequence[Any], *, pairs: int = 20000, seed: int = 0) -> MatchModel:
    """U per level from random pairs of records (different records, by far, at any realistic size)."""
    if len(records) < 2:
        raise ValueError("u needs at least 2 records")
    prepared = prepare_records(model, records)
    rng = random.Random(seed)
    counts = [[0.0] * len(f.levels) for f in model.fields]
    for _ in range(pairs):
        i, j = rng.sample(range(len(records)), 2)
        for k, level in enumerate(pair_levels(model, prepared[i], prepared[j])):
            if level >= 0:
                counts[k][level] += 1
    return replace(
        model,
        fields=tuple(
            FieldModel(f.paths, f.kind, f.m, _probabilities(c, f.u)) for f, c in zip(model.fields, counts, strict=True)
        ),
    )


def estimate_m_em(
    model: MatchModel,
    patterns: Mapping[tuple[int, ...], int],
    *,
    iterations: int = 50,
    tolerance: float = 1e-6,
    held: frozenset[int] = frozenset(),
) -> tuple[MatchModel, float]:
    """M per level and the share of candidate pairs that match, by EM with u held; returns both.

    `patterns` counts the level vectors of candidate pairs (the pairs a search would return). The
    model's m/u start the iteration; its u stay as they are, and so do the m of the fields indexed in
    `held`: the fields the candidates were searched by (all pairs of a postcode block agree on the
    postcode, so its m cannot be learnt from them, and EM would call the whole block a match).
    """
    if not patterns:
        raise ValueError("EM needs candidate pairs")
    total = sum(patterns.values())
    link_rate = 0.05
    current = model
    for _ in range(iterations):
        counts = [[0.0] * len(f.levels) for f in current.fields]
        matched = 0.0
        for levels, count in patterns.items():
            # The held fields agree by construction here: their weight is no evidence within the session.
            weight = sum(
                f.weights[lv]
                for k, (f, lv) in enumerate(zip(current.fields, levels, strict=True))
                if lv >= 0 and k not in held
            )
            p = bayes_factor_to_probability(weight, link_rate)
            matched += p * count
            for k, level in enumerate(levels):
                if level >= 0:
                    counts[k][level] += p * count
        new_rate = min(max(matched / total, 1e-6), 0.999)
        fields = tuple(
            f if k in held else FieldModel(f.paths, f.kind, _probabilities(c, f.m), f.u)
            for k, (f, c) in enumerate(zip(current.fields, counts, strict=True))
        )
        change = abs(new_rate - link_rate) + max(
            abs(a - b)
            for old, new in zip(current.fields, fields, strict=True)
            for a, b in zip(old.m, new.m, strict=True)
        )
        current, link_rate = replace(current, fields=fields), new_rate
        if change < tolerance:
            break
    return current, link_rate


def _agreed(patterns: Mapping[tuple[int, ...], int], share: float = 0.9) -> frozenset[int]:
    """Fields on which nearly every pair of a session agrees exactly (the city of a postcode block).

    Such agreement is no evidence within the session, and EM would take the whole block for matches.
    """
    held = set()
    width = len(next(iter(patterns)))
    for k in range(width):
        present = sum(c for levels, c in patterns.items() if levels[k] >= 0)
        exact = sum(c for levels, c in patterns.items() if levels[k] == 0)
        if present and exact / present >= share:
            held.add(k)
    return frozenset(held)


def train(
    model: MatchModel,
    records: Sequence[Any],
    blocks: Mapping[tuple[str, ...], Iterable[tuple[int, int]]],
    *,
    seed: int = 0,
) -> MatchModel:
    """Estimate u from random pairs, then m and the prior by EM, one session per blocking rule.

    `blocks` maps the fields a blocking rule searched by (held in its session, with any field
    nearly all its pairs agree on) to its candidate pairs. A field's m is the mean over the
    sessions that could learn it (as splink trains); the prior is the largest number of matches a
    session found, over all pairs of records (each blocking rule misses some duplicates).
    """
    with_u = estimate_u_random(model, records, seed=seed)
    prepared = prepare_records(with_u, records)
    learnt: list[list[tuple[float, ...]]] = [[] for _ in with_u.fields]
    matches = 0.0
    for searched, pairs in blocks.items():
        patterns = Counter(pair_levels(with_u, prepared[i], prepared[j]) for i, j in pairs)
        if not patterns:
            continue
        held = frozenset(k for k, f in enumerate(with_u.fields) if set(f.paths) & set(searched)) | _agreed(patterns)
        session, rate = estimate_m_em(with_u, patterns, held=held)
        matches = max(matches, rate * sum(patterns.values()))
        for k, f in enumerate(session.fields):
            if k not in held:
                learnt[k].append(f.m)
    fields = tuple(
        FieldModel(f.paths, f.kind, tuple(sum(col) / len(ms) for col in zip(*ms, strict=True)), f.u) if ms else f
        for f, ms in zip(with_u.fields, learnt, strict=True)
    )
    all_pairs = len(records) * (len(records) - 1) / 2
    # Below 0.5, as spec.matching requires: a sample in which half of all pairs are duplicates is no
    # sample of a target system (a handful of spellings of one company), and 0.5 itself was refused.
    prior = min(max(matches / all_pairs, 1e-7), 0.25) if matches else model.prior
    return replace(with_u, fields=fields, prior=prior)


def blocks_by_fields(
    model: MatchModel, records: Sequence[Any], fields: Sequence[str], *, max_block: int = 200
) -> dict[tuple[str, ...], set[tuple[int, int]]]:
    """Candidate pairs per blocking field: records whose prepared values agree (company names: first 4 letters).

    This is what a dedupe search by that field returns. Blocks larger than `max_block` (a value
    everyone shares, e.g. one country) are left out: their pairs are mostly unrelated and cost
    quadratic time. Raises ValueError for a field the model does not compare.
    """
    by_path = {p: f for f in model.fields for p in f.paths}
    out: dict[tuple[str, ...], set[tuple[int, int]]] = {}
    for name in fields:
        f = by_path.get(name)
        if f is None:
            raise ValueError(f"cannot block on {name!r}: it is not a compared field ({', '.join(by_path)})")
        groups: dict[str, list[int]] = {}
        for index, rec in enumerate(records):
            value = f.prepared(rec)
            if value is None:
                continue
            key = value.replace(" ", "")[:4] if f.kind == "company" else str(value)
            groups.setdefault(key, []).append(index)
        out[f.paths] = {
            (a, b)
            for members in groups.values()
            if len(members) <= max_block
            for i, a in enumerate(members)
            for b in members[i + 1 :]
        }
    return out


def estimate_from_labels(model: MatchModel, labels: Sequence[LabelledPair]) -> MatchModel:
    """M from pairs labelled the same, u from pairs labelled different (levels never seen smoothed)."""
    same = [lab for lab in labels if lab.same]
    different = [lab for lab in labels if not lab.same]
    if not same or not different:
        raise ValueError("labels need pairs marked the same and pairs marked different")
    m_counts = [[0.0] * len(f.levels) for f in model.fields]
    u_counts = [[0.0] * len(f.levels) for f in model.fields]
    for lab in labels:
        counts = m_counts if lab.same else u_counts
        levels = pair_levels(
            model, [f.prepared(lab.left) for f in model.fields], [f.prepared(lab.right) for f in model.fields]
        )
        for k, level in enumerate(levels):
            if level >= 0:
                counts[k][level] += 1
    return replace(
        model,
        fields=tuple(
            FieldModel(f.paths, f.kind, _probabilities(m, f.m), _probabilities(u, f.u))
            for f, m, u in zip(model.fields, m_counts, u_counts, strict=True)
        ),
    )


def evaluate(model: MatchModel, labels: Iterable[LabelledPair]) -> Evaluation:
    """Score each labelled pair: flagged when the model says match or review."""
    tp = fp = fn = certain = certain_wrong = n = 0
    for lab in labels:
        n += 1
        levels = pair_levels(
            model, [f.prepared(lab.left) for f in model.fields], [f.prepared(lab.right) for f in model.fields]
        )
        decision = model.decide(bayes_factor_to_probability(pattern_weight(model, levels), model.prior))
        flagged = decision != "new"
        if decision == "match":
            certain += 1
            certain_wrong += not lab.same
        tp += flagged and lab.same
        fp += flagged and not lab.same
        fn += (not flagged) and lab.same
    return Evaluation(n, tp, fp, fn, certain, certain_wrong)


def weights_table(model: MatchModel) -> list[tuple[str, str, float, float, float]]:
    """(field, level, m, u, weight) rows, for printing a trained model."""
    return [
        (f.name, level, m, u, math.log2(m / u))
        for f in model.fields
        for level, m, u in zip(f.levels, f.m, f.u, strict=True)
    ]
