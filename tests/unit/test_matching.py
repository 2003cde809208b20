"""Probabilistic matching: comparisons, the untuned customer floors (issue #15), training and labels."""

from __future__ import annotations

import pytest

from onceflow_runner.matching.compare import COMPARISONS
from onceflow_runner.matching.defaults import default_model
from onceflow_runner.matching.fields import field_value
from onceflow_runner.matching.model import score_candidates
from onceflow_runner.matching.training import LabelledPair, blocks_by_fields, estimate_from_labels, evaluate, train
from onceflow_runner.testing.customers import candidate_pairs, generate_customers, without


def _level(kind: str, a: object, b: object) -> str:
    cmp = COMPARISONS[kind]
    return cmp.levels[cmp.level(cmp.prepare(a), cmp.prepare(b))]


def _labels(seed: int, *removed: str) -> list[LabelledPair]:
    data = generate_customers(seed)
    records = without(data.records, *removed)
    truth = data.true_pairs()
    return [LabelledPair(records[i], records[j], (i, j) in truth) for i, j in sorted(candidate_pairs(records))]


def test_field_value_reads_dotted_paths_and_flat_dotted_keys() -> None:
    row = {"address": {"city": "Köln"}, "contact.first_name": "Ann", "name": "Acme"}
    assert field_value(row, "address.city") == "Köln"
    assert field_value(row, "contact.first_name") == "Ann"
    assert field_value(row, "address.postcode") is None
    assert field_value(row, "name.first") is None


@pytest.mark.parametrize(
    ("kind", "a", "b", "level"),
    [
        ("company", "Müller Logistik GmbH", "MUELLER LOGISTIK Gesellschaft mbH", "token-sort>=0.90"),
        ("company", "Weber Intl. Mfg. B.V.", "Weber International Manufacturing BV", "exact"),
        ("company", "WEBER LOGISTIK G.m.b.H.", "Weber Logistik GmbH", "exact"),
        ("company", "Acme & Sons Ltd", "Acme and Sons Limited", "exact"),
        ("personName", ("William", "Smith"), ("Bill", "Smith"), "last-exact-first-similar"),
        ("personName", ("Anna", "Weber"), ("Weber", "Anna"), "swapped"),
        ("date", "1980-03-05", "1980-05-03", "day-month-swapped"),
        ("date", "1980-03-25", "25.03.1980", "exact"),
        ("phone", "+49 30 1234567", "030 1234567", "exact"),
        ("email", "Ann.Lee@Acme.de", "ann.lee@acme.de", "exact"),
        ("email", "info@acme.de", "info@other.de", "different"),
        ("address", "Hauptstraße 5", "Hauptstr. 5", "exact"),
        ("identifier", "DE 123 456 789", "DE123456788", "one-edit"),
    ],
)
def test_comparisons_grade_what_people_key_differently(kind: str, a: object, b: object, level: str) -> None:
    assert _level(kind, a, b) == level


def test_a_missing_value_weighs_nothing_and_a_different_tax_id_counts_against() -> None:
    model = default_model("customer")
    record = {"name": "Acme GmbH", "postal_code": "10115", "country": "DE", "tax_id": "DE111111111"}
    same_but_no_tax = {"name": "Acme GmbH", "postal_code": "10115", "country": "DE"}
    other_tax = {**same_but_no_tax, "tax_id": "DE999999999"}
    [missing] = score_candidates(model, record, [same_but_no_tax], explain_all=True)
    [different] = score_candidates(model, record, [other_tax], explain_all=True)
    tax = {f["field"]: f for f in missing["fields"]}["tax_id"]
    assert (tax["level"], tax["weight"]) == ("missing", 0.0)
    assert different["weight"] < missing["weight"]


def test_candidates_follow_the_matching_contract() -> None:
    model = default_model("customer")
    record = {
        "name": "Acme GmbH",
        "tax_id": "DE123456789",
        "postal_code": "10115",
        "country": "DE",
        "email": "a@acme.de",
    }
    [found] = score_candidates(
        model, record, [{**record, "name": "ACME G.m.b.H."}, {"name": "Other AG", "country": "AT"}]
    )
    assert found["rule"] == "probabilistic"
    assert found["decision"] == "match"
    assert 0.99 <= found["score"] <= 1
    assert {"field", "level", "weight", "record", "candidate"} <= set(found["fields"][0])
    assert found["candidate"]["name"] == "ACME G.m.b.H."


@pytest.mark.parametrize("seed", [15, 7])
def test_untuned_customer_defaults_reach_the_floors(seed: int) -> None:
    """Issue #15: precision >= 0.98 and recall >= 0.95 on blocked candidate pairs; two seeds, so not tuned on one."""
    result = evaluate(default_model("customer"), _labels(seed))
    assert result.precision >= 0.98, result
    assert result.recall >= 0.95, result
    assert result.certain_wrong == 0


@pytest.mark.parametrize("seed", [15, 7])
def test_without_tax_id_and_birth_date_recall_stays_above_090(seed: int) -> None:
    result = evaluate(default_model("customer"), _labels(seed, "tax_id", "date_of_birth"))
    assert result.recall >= 0.90, result
    assert result.precision >= 0.95, result


def test_em_training_from_unlabelled_records_keeps_the_floors() -> None:
    data = generate_customers(23)
    model = default_model("customer")
    trained = train(model, data.records, blocks_by_fields(model, data.records, ["name", "postal_code"]))
    result = evaluate(trained, _labels(23))
    assert result.precision >= 0.98, result
    assert result.recall >= 0.95, result
    assert trained.fields[0].m != default_model("customer").fields[0].m


def test_reviewer_labels_re_estimate_m_and_u() -> None:
    labels = _labels(31)
    model = estimate_from_labels(default_model("customer"), labels[::2])
    result = evaluate(model, labels[1::2])
    assert result.precision >= 0.95, result
    assert result.recall >= 0.95, result
    with pytest.raises(ValueError, match="marked the same and pairs marked different"):
        estimate_from_labels(default_model("customer"), [lab for lab in labels if not lab.same][:5])


@pytest.mark.parametrize(
    "variant",
    [
        "Acme S.A.",
        "ACME SA",
        "Acme s.à r.l.",
        "Acme B.V",
        "Acme GmbH u. Co. KG",
        "Acme Aktiengesellschaft",
        "Acme e. K.",
    ],
)
def test_legal_forms_written_with_dots_and_spaces_are_dropped(variant: str) -> None:
    assert COMPARISONS["company"].prepare(variant) == "acme"
