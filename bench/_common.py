"""Shared pieces of the benchmarks: processes on loopback, plans, timing helpers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from onceflow_operator.dev.controlplane import free_port
from onceflow_runner.contract.plan import PLAN_VERSION, Plan

ROOT = Path(__file__).resolve().parents[1]


def wait_http(url: str, timeout: float = 30.0) -> float:
    """Seconds until `url` answers 200."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return time.perf_counter() - started
        except OSError:
            time.sleep(0.01)
    raise RuntimeError(f"{url} not ready after {timeout}s")


def start_sandbox() -> tuple[subprocess.Popen[bytes], str]:
    """The sandbox ERP in its own process, so it does not share the measured process's CPU."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "onceflow_operator",
            "sandbox",
            "--erp-port",
            str(port),
            "--recorder",
            f"wms={free_port()}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_http(f"http://127.0.0.1:{port}/healthz")
    return proc, f"http://127.0.0.1:{port}"


def erp_state(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/_sandbox/state") as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


def peak_rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return round(total / 1024, 1)


def bench_plan(
    namespace: str,
    steps: list[dict[str, Any]],
    connectors: dict[str, Any] | None = None,
    concurrency: int = 64,
) -> Plan:
    base = f"onceflow.{namespace}"
    return Plan.model_validate(
        {
            "planVersion": PLAN_VERSION,
            "namespace": namespace,
            "integration": "bench",
            "revision": "bench-1",
            "source": "src",
            "business_key": "'k/' + input.key",
            "steps": steps,
            "connectors": connectors or {},
            "concurrency": concurrency,
            "nats": {
                "stream": "ONCEFLOW_IN",
                "subject": f"{base}.in.src.bench",
                "consumer": f"{namespace}_bench",
                "exceptions_subject": f"{base}.exceptions.bench",
                "dlq_subject": f"{base}.dlq.bench",
                "audit_subject": f"{base}.audit.bench",
                "events_prefix": f"{base}.events",
                "stats_subject": f"{base}.stats.bench",
                "decisions_subject": f"{base}.decisions.bench",
                "kv_bucket": f"onceflow-keys-{namespace}",
            },
        }
    )


VALIDATE_MAP = [
    {
        "name": "canonical",
        "kind": "map",
        "map": {
            "fields": {
                "name": "input.company",
                "tax_id": "input.tax",
                "country": "input.country",
                "postal_code": "input.zip",
            }
        },
    },
    {"name": "check", "kind": "validate", "validate": {"entity": "customer"}},
]


def record(i: int) -> dict[str, Any]:
    return {
        "key": f"r{i}",
        "company": f"Customer {i} GmbH",
        "tax": f"DE{i:09d}",
        "country": "DE",
        "zip": "10115",
    }


def env_note() -> str:
    """Cores, load average (1/5/15 min: the machine is shared, so say how busy it was) and Python."""
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{os.cpu_count()} cores, load average {load}, python {sys.version.split()[0]}"


def loop_name() -> str:
    """The event loop the benchmark ran on (uvloop when installed, as in the runner's process)."""
    import importlib.util

    return "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
