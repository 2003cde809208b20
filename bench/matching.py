"""What probabilistic matching costs per record, beside the deterministic rules, and where to run it.

Prints, for one record against 500 candidates (generated customers, seed 15):
  1. the deterministic match rules of examples/customer-onboarding (tax id; name at the same
     postcode), as the dedupe step ran them before issue #15                        -- baseline
  2. the default customer model, every candidate value new (memoised prepare emptied per record)
  3. the same model, candidate values seen before (a search returning the same neighbours)
and the ratios to the baseline, in CPU time of the scoring thread (the machine is shared: wall
time there measures the neighbours); then, for 40 records scored in a row from an asyncio loop, the
wall time per record and the longest stall of a 1 ms ticker on the loop when the scoring runs
inline, in a thread (asyncio.to_thread, what the dedupe step does) or in a process pool (candidates
pickled to a worker). Last line: one JSON object.

Run: .venv/bin/python bench/matching.py [--records N]
Never part of the test suite; timings are printed, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import env_note

from onceflow_runner.contract.plan import MatchFieldPlan, MatchingPlan, MatchRulePlan, SyncPolicyPlan
from onceflow_runner.engine.steps.dedupe import find_matches
from onceflow_runner.matching.compare import clear_caches
from onceflow_runner.matching.defaults import DEFAULT_PRIOR, default_model
from onceflow_runner.testing.customers import generate_customers

CANDIDATES = 500
RULES = (
    MatchRulePlan(name="same-tax-id", exact=("tax_id",)),
    MatchRulePlan(name="similar-name-same-postcode", exact=("postal_code",), fuzzy_field="name", fuzzy_threshold=0.9),
)


def _policies() -> tuple[SyncPolicyPlan, SyncPolicyPlan]:
    model = default_model("customer")
    matching = MatchingPlan(
        fields=tuple(MatchFieldPlan(paths=f.paths, comparison=f.kind, m=f.m, u=f.u) for f in model.fields),
        prior_link_rate=DEFAULT_PRIOR,
    )
    base = SyncPolicyPlan(name="customer", entity="customer", owner_default="erp", match_rules=RULES)
    return base, base.model_copy(update={"matching": matching})


def _workload(count: int) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    data = generate_customers(15)
    rng = random.Random(1)
    records = data.records
    return [(records[i], rng.sample(records, CANDIDATES)) for i in rng.sample(range(len(records)), count)]


def _per_record_ms(
    work: list[tuple[dict[str, Any], list[dict[str, Any]]]], policy: SyncPolicyPlan, *, cold: bool
) -> float:
    total = 0.0
    for record, candidates in work:
        if cold:
            clear_caches()
        started = time.thread_time()
        find_matches(record, candidates, policy)
        total += time.thread_time() - started
    return 1000 * total / len(work)


def _score_cold(record: dict[str, Any], candidates: list[dict[str, Any]], policy: SyncPolicyPlan) -> None:
    """One record's scoring with every candidate value new, wherever it runs (a pool worker keeps its own caches)."""
    clear_caches()
    find_matches(record, candidates, policy)


async def _loop_stall(
    work: list[tuple[dict[str, Any], list[dict[str, Any]]]], policy: SyncPolicyPlan, how: str, pool: ProcessPoolExecutor
) -> tuple[float, float]:
    """(ms per record, longest ms between ticks of a 1 ms ticker) while scoring `work` one after another."""
    stall = 0.0
    done = False

    async def ticker() -> None:
        nonlocal stall
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            stall = max(stall, now - last)
            last = now

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    for record, candidates in work:
        if how == "inline":
            _score_cold(record, candidates, policy)
        elif how == "thread":
            await asyncio.to_thread(_score_cold, record, candidates, policy)
        else:
            await loop.run_in_executor(pool, _score_cold, record, candidates, policy)
    elapsed = time.perf_counter() - started
    done = True
    await tick
    return 1000 * elapsed / len(work), 1000 * stall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200)
    args = parser.parse_args()
    work = _workload(args.records)
    rules, probabilistic = _policies()
    _per_record_ms(work[:5], probabilistic, cold=False)  # imports and first calls
    baseline = _per_record_ms(work, rules, cold=True)
    cold = _per_record_ms(work, probabilistic, cold=True)
    _per_record_ms(work, probabilistic, cold=False)  # every candidate value seen once
    warm = _per_record_ms(work, probabilistic, cold=False)
    print(f"# {env_note()}; 1 record x {CANDIDATES} candidates, {len(work)} records")
    print(f"deterministic rules (baseline)   {baseline:7.2f} CPU ms/record")
    print(f"probabilistic, values new        {cold:7.2f} CPU ms/record   ratio {cold / baseline:5.1f}")
    print(f"probabilistic, values seen       {warm:7.2f} CPU ms/record   ratio {warm / baseline:5.1f}")
    placements: dict[str, tuple[float, float]] = {}
    with ProcessPoolExecutor(max_workers=1) as pool:
        pool.submit(sum, [1]).result()  # the worker started
        for how in ("inline", "thread", "process"):
            placements[how] = asyncio.run(_loop_stall(work[:40], probabilistic, how, pool))
            ms, stall = placements[how]
            print(f"on the loop: {how:<8} {ms:7.2f} ms/record, longest loop stall {stall:6.2f} ms")
    print(
        json.dumps(
            {
                "baseline_ms": round(baseline, 3),
                "cold_ms": round(cold, 3),
                "warm_ms": round(warm, 3),
                "placements": {
                    k: {"ms_per_record": round(v[0], 3), "stall_ms": round(v[1], 2)} for k, v in placements.items()
                },
            }
        )
    )


if __name__ == "__main__":
    main()
