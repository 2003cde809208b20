"""What judging an inbound X12 file costs: the envelope split (ours) and per-set validation (pyx12).

Prints, for a realistic 850 file (one interchange of 100 purchase orders of 20 lines each, about
5,300 segments) and a larger one (10 such interchanges), the seconds of:
  1. `split_file` alone (the envelope walk, our code)                        -- baseline
  2. `assess_file` (split + pyx12 per group + the canonical decode per set)
and segments per second, then the one-time cost of building pyx12's map folder. Last line: one
JSON object. docs/edi.md quotes these figures.

Run: .venv/bin/python bench/edi_inbound.py
Never part of the test suite; timings are printed, not asserted.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from onceflow_runner.payloads.edi.envelope import split_file
from onceflow_runner.payloads.edi.inbound import assess_file
from onceflow_runner.payloads.edi.validation import map_folder
from tests.unit.edi_files import interchange, partner_plan, purchase_order


def build(interchanges: int, orders: int, lines: int) -> bytes:
    return "".join(
        interchange(n, [purchase_order(i, f"PO-{n}-{i}", lines) for i in range(1, orders + 1)])
        for n in range(1, interchanges + 1)
    ).encode()


def best(run: object, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    started = time.perf_counter()
    map_folder()
    maps_seconds = time.perf_counter() - started
    plan = partner_plan()
    figures: dict[str, object] = {"map_folder_seconds": round(maps_seconds, 3)}
    for label, data in (("100x850x20", build(1, 100, 20)), ("10x100x850x20", build(10, 100, 20))):
        segments = data.count(b"~")
        split = best(lambda d=data: split_file(d))
        assess = best(lambda d=data: assess_file(d, plan), repeats=1 if len(data) > 500_000 else 3)
        accepted = sum(1 for s in assess_file(data, plan).sets if s.accepted) if len(data) < 500_000 else None
        print(
            f"{label}: {len(data)} bytes, {segments} segments; split {split:.3f}s "
            f"({segments / split:,.0f} seg/s); split+validate+decode {assess:.3f}s ({segments / assess:,.0f} seg/s)"
        )
        figures[label] = {
            "bytes": len(data),
            "segments": segments,
            "split_seconds": round(split, 3),
            "assess_seconds": round(assess, 3),
            "accepted": accepted,
        }
    print(f"pyx12 map folder built once per process in {maps_seconds:.3f}s")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
