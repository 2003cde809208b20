"""One record against 500 candidates: Onceflow's scorer beside splink's real-time scoring and recordlinkage.

Why: issue #15 asked to choose the matching library by measuring. The dedupe step scores one
record at a time, against what one search returned, inside a runner; a library built for batch
linkage pays its set-up for every record. Prints CPU ms per record for:
  1. onceflow_runner.matching (the default customer model, values new each record)   -- baseline
  2. splink 5 `compare_records` (DuckDB; the SQL cached after the first record, as its docs advise)
  3. recordlinkage 0.16 `Compare` over a pandas MultiIndex of the 500 pairs, plus its ECM classifier
with the ratio of each to the baseline. The comparisons are comparable, not identical: name
(Jaro-Winkler bands), postcode, e-mail, phone, city, street, first and last name, tax id.

Not a dependency of the project: run it in a separate virtualenv with splink, recordlinkage,
rapidfuzz and pydantic installed, with the repository's runners/ on PYTHONPATH:
  PYTHONPATH=runners /path/to/venv/bin/python bench/matching_libraries.py [--records N]
Never part of the test suite; timings are printed, not asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from typing import Any

from onceflow_runner.matching.compare import clear_caches
from onceflow_runner.matching.defaults import default_model
from onceflow_runner.matching.model import score_candidates
from onceflow_runner.testing.customers import generate_customers

CANDIDATES = 500
COLUMNS = ("name", "postal_code", "email", "phone", "city", "street", "first_name", "last_name", "tax_id")


def _flat(rec: dict[str, Any], uid: int) -> dict[str, Any]:
    return {
        "unique_id": uid,
        "name": rec.get("name"),
        "postal_code": rec.get("postal_code"),
        "email": (rec.get("email") or "").lower() or None,
        "phone": "".join(c for c in str(rec.get("phone") or "") if c.isdigit())[-9:] or None,
        "city": rec["address"].get("city"),
        "street": rec["address"].get("line1"),
        "first_name": rec["contact"].get("first_name"),
        "last_name": rec["contact"].get("last_name"),
        "tax_id": rec.get("tax_id"),
    }


def _workload(count: int) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    records = generate_customers(15).records
    rng = random.Random(1)
    return [(records[i], rng.sample(records, CANDIDATES)) for i in rng.sample(range(len(records)), count)]


def _cpu_ms(fn: Any, work: list[Any]) -> float:
    fn(*work[0])  # set-up, imports, first SQL
    started = time.process_time()
    for item in work:
        fn(*item)
    return 1000 * (time.process_time() - started) / len(work)


def _onceflow(work: list[Any]) -> float:
    model = default_model("customer")

    def run(record: dict[str, Any], candidates: list[dict[str, Any]]) -> None:
        clear_caches()
        score_candidates(model, record, candidates)

    return _cpu_ms(run, work)


def _splink(work: list[Any]) -> float:
    import splink.comparison_library as cl
    from splink import DuckDBAPI, SettingsCreator
    from splink.internals.realtime import compare_records

    settings = SettingsCreator(
        link_type="dedupe_only",
        comparisons=[
            cl.JaroWinklerAtThresholds("name", [0.92, 0.8]),
            cl.ExactMatch("postal_code"),
            cl.JaroWinklerAtThresholds("email", [0.88]),
            cl.ExactMatch("phone"),
            cl.JaroWinklerAtThresholds("city", [0.92]),
            cl.JaroWinklerAtThresholds("street", [0.9]),
            cl.JaroWinklerAtThresholds("first_name", [0.88]),
            cl.JaroWinklerAtThresholds("last_name", [0.88]),
            cl.LevenshteinAtThresholds("tax_id", [1]),
        ],
    )
    db_api = DuckDBAPI()

    def run(record: dict[str, Any], candidates: list[dict[str, Any]]) -> None:
        left = _flat(record, 0)
        right = [_flat(c, i + 1) for i, c in enumerate(candidates)]
        compare_records(left, right, settings, db_api, sql_cache_key="bench").as_record_list()

    return _cpu_ms(run, work)


def _recordlinkage(work: list[Any]) -> float:
    import pandas as pd
    import recordlinkage

    compare = recordlinkage.Compare()
    compare.string("name", "name", method="jarowinkler", threshold=0.85, label="name")
    compare.exact("postal_code", "postal_code", label="postal_code")
    compare.exact("email", "email", label="email")
    compare.exact("phone", "phone", label="phone")
    compare.string("city", "city", method="jarowinkler", threshold=0.9, label="city")
    compare.string("street", "street", method="jarowinkler", threshold=0.9, label="street")
    compare.string("first_name", "first_name", method="jarowinkler", threshold=0.88, label="first_name")
    compare.string("last_name", "last_name", method="jarowinkler", threshold=0.88, label="last_name")
    compare.exact("tax_id", "tax_id", label="tax_id")
    classifier = recordlinkage.ECMClassifier()
    trained = False

    def run(record: dict[str, Any], candidates: list[dict[str, Any]]) -> None:
        nonlocal trained
        left = pd.DataFrame([_flat(record, 0)]).set_index("unique_id")
        right = pd.DataFrame([_flat(c, i + 1) for i, c in enumerate(candidates)]).set_index("unique_id")
        pairs = pd.MultiIndex.from_product([left.index, right.index])
        features = compare.compute(pairs, left, right)
        if not trained:
            classifier.fit(features)
            trained = True
        classifier.predict(features)

    return _cpu_ms(run, work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50)
    args = parser.parse_args()
    work = _workload(args.records)
    results = {"onceflow": _onceflow(work), "splink": _splink(work), "recordlinkage": _recordlinkage(work)}
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"# {os.cpu_count()} cores, load average {load}, python {sys.version.split()[0]}; 1 x {CANDIDATES}, {len(work)} records"
    )
    base = results["onceflow"]
    for name, ms in results.items():
        print(f"{name:<14} {ms:8.2f} CPU ms/record   ratio {ms / base:6.1f}")
    print(json.dumps({k: round(v, 3) for k, v in results.items()}))


if __name__ == "__main__":
    main()
