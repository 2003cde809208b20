"""`onceflow match train|eval` fed what a careless operator exports: the patch is right, or one line says why.

Why: a trained patch replaces the policy's m/u. A sample that silently lacks a field (a byte order
mark on the first header, semicolons, no header row) used to zero that field's evidence while
printing a patch that looked trained; an all-alike sample wrote a patch the API server refuses.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from onceflow_operator.cli import main
from onceflow_operator.compiler.validation import validate_manifest
from onceflow_runner.matching.defaults import KIND_DEFAULTS
from onceflow_runner.testing.customers import candidate_pairs, generate_customers

POLICY: dict[str, Any] = {
    "apiVersion": "onceflow.io/v1alpha1",
    "kind": "SyncPolicy",
    "metadata": {"name": "customers"},
    "spec": {"entity": "customer", "ownership": {"default": "erp"}, "identity": {"keys": ["tax_id"]}},
}
COLUMNS = ["name", "postal_code", "address.city"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("attack")
    (folder / "policy.yaml").write_text(yaml.safe_dump(POLICY))
    data = generate_customers(41, originals=300)
    flat = [
        {"name": r["name"], "postal_code": r["postal_code"], "address.city": r["address"]["city"]} for r in data.records
    ]
    for name, delimiter, encoding, header in (
        ("plain.csv", ",", "utf-8", True),
        ("bom.csv", ",", "utf-8-sig", True),
        ("semicolons.csv", ";", "utf-8", True),
        ("noheader.csv", ",", "utf-8", False),
    ):
        with (folder / name).open("w", newline="", encoding=encoding) as out:
            writer = csv.DictWriter(out, COLUMNS, delimiter=delimiter)
            if header:
                writer.writeheader()
            writer.writerows(flat)
    same = {"name": "Acme GmbH", "postal_code": "10115", "email": "ann@acme.de"}
    (folder / "alike.jsonl").write_text("\n".join(json.dumps(same) for _ in range(300)))
    (folder / "badline.jsonl").write_text('{"name": "A"}\n{not json\n{"name": "B"}\n')
    truth = data.true_pairs()
    with (folder / "labels.jsonl").open("w") as out:
        for i, j in sorted(candidate_pairs(data.records)):
            left = {k: v for k, v in data.records[i].items() if k != "tax_id"}
            right = {k: v for k, v in data.records[j].items() if k != "tax_id"}
            out.write(json.dumps({"left": left, "right": right, "same": (i, j) in truth}) + "\n")
    return folder


def invoke(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def _train(folder: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    code, out, err = invoke("match", "train", "customers", "-f", folder / "policy.yaml", "-o", "json", *args)
    return code, (json.loads(out) if code == 0 else {}), err


def _levels(patch: dict[str, Any], field: str) -> dict[str, tuple[float, float]]:
    [entry] = [f for f in patch["spec"]["matching"]["fields"] if f["field"] == field]
    return {lv["level"]: (lv["m"], lv["u"]) for lv in entry["levels"]}


def _assert_valid(patch: dict[str, Any]) -> None:
    trained = {**POLICY, "spec": {**POLICY["spec"], **patch["spec"]}}
    assert validate_manifest(trained, "trained.yaml") == []


@pytest.mark.parametrize("name", ["plain.csv", "bom.csv", "semicolons.csv"])
def test_a_csv_with_a_byte_order_mark_or_semicolons_trains_the_name_like_a_plain_one(folder: Path, name: str) -> None:
    code, patch, err = _train(folder, "--records", str(folder / name))
    assert code == 0, err
    m, u = _levels(patch, "name")["exact"]
    assert m > 100 * u, f"{name}: the name was not learnt ({m=}, {u=})"
    _assert_valid(patch)


def test_fields_the_sample_lacks_keep_their_m_and_u(folder: Path) -> None:
    code, patch, err = _train(folder, "--records", str(folder / "plain.csv"))
    assert code == 0, err
    m, u = KIND_DEFAULTS["identifier"]
    assert _levels(patch, "tax_id") == dict(
        zip(("exact", "one-edit", "different"), zip(m, u, strict=True), strict=True)
    )
    assert "tax_id" in err  # said, not silent


def test_fields_the_labels_lack_keep_their_m_and_u(folder: Path) -> None:
    code, patch, err = _train(folder, "--labels", str(folder / "labels.jsonl"))
    assert code == 0, err
    m, u = KIND_DEFAULTS["identifier"]
    assert _levels(patch, "tax_id")["exact"] == (m[0], u[0])
    _assert_valid(patch)


def test_a_csv_without_a_header_row_is_refused_naming_the_fields_it_lacks(folder: Path) -> None:
    code, _, err = _train(folder, "--records", str(folder / "noheader.csv"))
    assert code == 1
    assert "none of the compared fields" in err
    assert "header" in err
    assert len(err.strip().splitlines()) == 1


def test_a_sample_of_identical_records_is_refused_not_written(folder: Path) -> None:
    code, _, err = _train(folder, "--records", str(folder / "alike.jsonl"))
    assert code == 1
    assert "no candidate pairs" in err or "agree" in err, err
    assert len(err.strip().splitlines()) == 1


def test_a_bad_json_line_is_named_by_its_number(folder: Path) -> None:
    code, _, err = _train(folder, "--records", str(folder / "badline.jsonl"))
    assert code == 1
    assert "badline.jsonl:2:" in err


def test_eval_says_when_labels_share_no_compared_field_or_contradict_each_other(folder: Path, tmp_path: Path) -> None:
    acme = {"name": "Acme GmbH", "postal_code": "10115"}
    other = {"name": "Zeta AG", "postal_code": "80331"}
    labels = tmp_path / "labels.jsonl"
    lines = [
        {"left": acme, "right": dict(acme), "same": True},
        {"left": dict(acme), "right": acme, "same": False},  # the same pair, the other verdict
        {"left": {"customer_name": "Acme"}, "right": {"customer_name": "ACME"}, "same": True},  # unmapped names
        {"left": acme, "right": other, "same": False},
    ]
    labels.write_text("\n".join(json.dumps(line) for line in lines))
    code, out, err = invoke(
        "match", "eval", "customers", "-f", folder / "policy.yaml", "--labels", labels, "-o", "json"
    )
    assert code == 0, err
    assert json.loads(out)[0]["pairs"] == 4
    assert "1 of 4 labelled pairs share no compared field" in err
    assert "1 pair(s) labelled both the same and not the same" in err


def test_a_tiny_sample_of_duplicates_gives_a_prior_the_api_server_accepts_or_one_line(tmp_path: Path) -> None:
    """Found: EM on three spellings of one company capped the prior at 0.5, which spec.matching refuses."""
    rows = [
        {"name": "Acme Logistik GmbH", "postal_code": "10115", "email": "ann@acme.de", "phone": "+49 30 1234567"},
        {"name": "ACME Logistik G.m.b.H.", "postal_code": "10115", "email": "ann@acme.de", "phone": "030 1234567"},
        {"name": "Acme Logistik", "postal_code": "10115", "email": "ann@acme.de", "phone": "+49 (30) 1234567"},
        {"name": "Zeta Tools AG", "postal_code": "80331", "email": "bob@zeta.de", "phone": "+49 89 7654321"},
        {"name": "Zeta Tools", "postal_code": "80331", "email": "bob@zeta.de", "phone": "089 7654321"},
    ]
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(POLICY))
    sample = tmp_path / "tiny.json"
    sample.write_text(json.dumps(rows))
    code, patch, err = _train(tmp_path, "--records", str(sample))
    if code == 0:
        assert patch["spec"]["matching"]["priorLinkRate"] < 0.5
        _assert_valid(patch)
    else:
        assert code == 1
        assert "Traceback" not in err
        assert len(err.strip().splitlines()) == 1


def test_a_trained_model_outside_what_spec_matching_allows_is_refused_in_one_line() -> None:
    """The guard behind every printed or applied patch: here a prior of 0.5 (EM's old cap), which the schema refuses."""
    from dataclasses import replace

    import click

    from onceflow_operator.api.syncpolicy import SyncPolicy
    from onceflow_operator.cli.match import _refuse_invalid, matching_patch
    from onceflow_runner.matching.defaults import default_model

    policy = SyncPolicy.model_validate(POLICY)
    _refuse_invalid(policy, matching_patch(policy, default_model("customer")))  # the defaults pass
    with pytest.raises(click.ClickException, match=r"would be refused \(spec.matching.priorLinkRate"):
        _refuse_invalid(policy, matching_patch(policy, replace(default_model("customer"), prior=0.5)))
