"""What evaluating CEL that iterates in a killable worker costs, beside inline evaluation.

Prints, for a few record sizes, the time per evaluation of one comprehension rule:
  1. inline in the event loop's thread (what the runner did before; cannot be stopped)  -- baseline
  2. through ExpressionWorkers (one worker, pickled variables over a pipe, deadline armed)
and the ratio of the two, then the time a fresh worker takes to start. Last line: one JSON object.

Run: .venv/bin/python bench/expression_isolation.py [--evaluations N]
Never part of the test suite; timings are printed, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import env_note

from onceflow_runner.adapters.expression_workers import ExpressionWorkers
from onceflow_runner.engine.expressions import evaluate

RULE = "input.lines.all(l, l.qty > 0 && l.sku.startsWith('S'))"


def _record(lines: int) -> dict[str, object]:
    return {"input": {"lines": [{"sku": f"S{i:05d}", "qty": 1 + i % 5, "price": 9.5} for i in range(lines)]}}


async def _measure(evaluations: int) -> dict[str, object]:
    started = time.perf_counter()
    workers = ExpressionWorkers(workers=1, deadline=10.0)
    await workers.start()
    start_seconds = time.perf_counter() - started
    rows = []
    try:
        for lines in (1, 20, 500):
            variables = _record(lines)
            t = time.perf_counter()
            for _ in range(evaluations):
                evaluate(RULE, variables, step="b", what="rule")
            inline = (time.perf_counter() - t) / evaluations
            t = time.perf_counter()
            for _ in range(evaluations):
                await workers.evaluate(RULE, variables, step="b", what="rule")
            isolated = (time.perf_counter() - t) / evaluations
            rows.append(
                {"lines": lines, "inline_us": inline * 1e6, "isolated_us": isolated * 1e6, "ratio": isolated / inline}
            )
    finally:
        await workers.aclose()
    return {"rows": rows, "worker_start_s": start_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--evaluations", type=int, default=2000)
    args = parser.parse_args()
    result = asyncio.run(_measure(args.evaluations))
    print(f"# {env_note()}; rule: {RULE}")
    print(f"{'lines':>6} {'inline us':>10} {'worker us':>10} {'ratio':>6}")
    for row in result["rows"]:  # type: ignore[attr-defined]
        print(f"{row['lines']:>6} {row['inline_us']:>10.1f} {row['isolated_us']:>10.1f} {row['ratio']:>6.2f}")
    print(f"worker start: {result['worker_start_s']:.2f}s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
