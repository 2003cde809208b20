from __future__ import annotations

from onceflow_runner.drift.compare import compare_records, records_of


def test_counts_missing_on_each_side_and_mismatches() -> None:
    erp = records_of(
        {
            "data": [
                {"name": "C1", "tax_id": "DE1", "email": "a@x.test", "territory": "DE"},
                {"name": "C2", "tax_id": "DE2", "email": "b@x.test"},
                {"name": "C3", "tax_id": "DE3"},
            ]
        }
    )
    shop = records_of(
        [
            {"id": 1, "tax_id": "de1 ", "email": "A@X.test"},
            {"id": 2, "tax_id": "DE2", "email": "changed@x.test"},
            {"id": 4, "tax_id": "DE4"},
        ]
    )
    report = compare_records(erp, shop, "tax_id", "tax_id")
    assert report.as_status() == {"total": 3, "missingLeft": 1, "missingRight": 1, "mismatched": 1}
    assert report.compared == 2
    assert {"kind": "mismatched", "key": "de2", "fields": ["email"]} in report.examples


def test_examples_are_capped() -> None:
    left = [{"k": str(i)} for i in range(100)]
    report = compare_records(left, [], "k", "k", max_examples=5)
    assert report.missing_right == 100
    assert len(report.examples) == 5


def test_a_side_read_only_in_part_never_counts_the_other_sides_records_as_missing() -> None:
    left = [{"k": str(i), "v": "a"} for i in range(10)]
    right = [{"k": str(i), "v": "a" if i else "b"} for i in range(5)]  # the first 5: a capped read
    report = compare_records(left, right, "k", "k", right_complete=False)
    assert report.as_status() == {"total": 1, "missingLeft": 0, "missingRight": 0, "mismatched": 1}
    assert report.compared == 5
    whole = compare_records(left, right, "k", "k")
    assert whole.missing_right == 5
