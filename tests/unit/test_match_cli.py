"""`onceflow match train|eval` offline: records and labels from files, the policy from -f manifests."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from onceflow_operator.api.syncpolicy import SyncPolicy
from onceflow_operator.cli import main
from onceflow_runner.testing.customers import candidate_pairs, generate_customers

POLICY = {
    "apiVersion": "onceflow.io/v1alpha1",
    "kind": "SyncPolicy",
    "metadata": {"name": "customers"},
    "spec": {"entity": "customer", "ownership": {"default": "erp"}, "identity": {"keys": ["tax_id"]}},
}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("match")
    data = generate_customers(41, originals=800)
    truth = data.true_pairs()
    (folder / "policy.yaml").write_text(yaml.safe_dump(POLICY))
    (folder / "records.json").write_text(json.dumps(data.records))
    with (folder / "labels.jsonl").open("w") as out:
        for i, j in sorted(candidate_pairs(data.records)):
            out.write(json.dumps({"left": data.records[i], "right": data.records[j], "same": (i, j) in truth}) + "\n")
    flat = [
        {"name": r["name"], "postal_code": r["postal_code"], "address.city": r["address"]["city"]} for r in data.records
    ]
    with (folder / "records.csv").open("w", newline="") as out:
        writer = csv.DictWriter(out, ["name", "postal_code", "address.city"])
        writer.writeheader()
        writer.writerows(flat)
    return {
        "policy": folder / "policy.yaml",
        "records": folder / "records.json",
        "labels": folder / "labels.jsonl",
        "csv": folder / "records.csv",
    }


def invoke(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def test_train_from_records_prints_a_patch_the_policy_accepts_and_eval_measures_it(
    files: dict[str, Path], tmp_path: Path
) -> None:
    code, out, err = invoke("match", "train", "customers", "-f", files["policy"], "--records", files["records"])
    assert code == 0, err
    assert "m by EM over" in err
    patch = yaml.safe_load(out)
    matching = patch["spec"]["matching"]
    assert matching["fields"][0]["field"] == "name"
    assert 0 < matching["priorLinkRate"] < 0.01
    trained = {**POLICY, "spec": {**POLICY["spec"], **patch["spec"]}}
    SyncPolicy.model_validate(trained)
    (tmp_path / "trained.yaml").write_text(yaml.safe_dump(trained))
    code, out, err = invoke(
        "match", "eval", "customers", "-f", tmp_path / "trained.yaml", "--labels", files["labels"], "-o", "json"
    )
    assert code == 0, err
    [figures] = json.loads(out)
    assert figures["precision"] >= 0.98
    assert figures["recall"] >= 0.95


def test_eval_of_the_untuned_defaults_prints_a_table(files: dict[str, Path]) -> None:
    code, out, err = invoke("match", "eval", "customers", "-f", files["policy"], "--labels", files["labels"])
    assert code == 0, err
    header, row = out.splitlines()
    assert header.split()[:4] == ["PAIRS", "PRECISION", "RECALL", "F1"], out
    assert float(row.split()[1]) >= 0.98


def test_train_from_reviewer_labels_and_from_a_csv_with_dotted_headers(files: dict[str, Path]) -> None:
    code, out, err = invoke(
        "match", "train", "customers", "-f", files["policy"], "--labels", files["labels"], "-o", "json"
    )
    assert code == 0, err
    assert "m/u from" in err
    assert json.loads(out)["spec"]["matching"]["fields"]
    code, out, err = invoke("match", "train", "customers", "-f", files["policy"], "--records", files["csv"])
    assert code == 0, err


def test_wrong_input_is_one_line_naming_what_to_fix(files: dict[str, Path], tmp_path: Path) -> None:
    code, _, err = invoke("match", "train", "customers", "-f", files["policy"])
    assert code == 2
    assert "give one of --records" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"left": {}, "right": {}, "same": "yes"}\n')
    code, _, err = invoke("match", "eval", "customers", "-f", files["policy"], "--labels", bad)
    assert code == 1
    assert f"{bad}:1: a label is" in err
    assert "Traceback" not in err
    code, _, err = invoke("match", "train", "nobody", "-f", files["policy"], "--records", files["records"])
    assert "no SyncPolicy named 'nobody'" in err
    code, _, err = invoke(
        "match", "train", "customers", "-f", files["policy"], "--records", files["records"], "--block", "colour"
    )
    assert "cannot block on 'colour'" in err
