"""A real Jaeger for tests: in-memory store, OTLP/HTTP receiver and query API on free loopback ports.

Jaeger v1.76 is the OpenTelemetry-collector-based `jaeger` binary (cmd/jaeger), built once from
the Go module proxy by hack/build-jaeger.sh; it takes a collector-style --config. Stopped by PID.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from onceflow_operator.dev.controlplane import free_port

ROOT = Path(__file__).resolve().parents[1]


def jaeger_binary() -> str:
    """$ONCEFLOW_JAEGER (set by `make ecosystem`); without it the test is skipped.

    Not built by `make test`: its first build takes long enough to double a fresh CI run.
    """
    found = os.environ.get("ONCEFLOW_JAEGER")
    if not found:
        pytest.skip(
            "ONCEFLOW_JAEGER is not set: `make ecosystem` builds Jaeger (hack/build-jaeger.sh) and runs this test"
        )
    return found


class JaegerServer:
    """One Jaeger all-in-one process; `otlp_endpoint` is what OTEL_EXPORTER_OTLP_ENDPOINT should say."""

    def __init__(self, binary: str) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="onceflow-jaeger-"))
        self.otlp_port, self.query_port, self.grpc_port = free_port(), free_port(), free_port()
        self.otlp_endpoint = f"http://127.0.0.1:{self.otlp_port}"
        self.query_url = f"http://127.0.0.1:{self.query_port}"
        config = {
            "service": {
                "extensions": ["jaeger_storage", "jaeger_query"],
                "pipelines": {
                    "traces": {"receivers": ["otlp"], "processors": [], "exporters": ["jaeger_storage_exporter"]}
                },
                # No metrics endpoint of its own (it would take the fixed port 8888).
                "telemetry": {"metrics": {"level": "none"}, "logs": {"level": "warn"}},
            },
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{self.otlp_port}"}}}},
            "extensions": {
                "jaeger_query": {
                    "storage": {"traces": "memory"},
                    "http": {"endpoint": f"127.0.0.1:{self.query_port}"},
                    "grpc": {"endpoint": f"127.0.0.1:{self.grpc_port}"},
                },
                "jaeger_storage": {"backends": {"memory": {"memory": {"max_traces": 10000}}}},
            },
            "exporters": {"jaeger_storage_exporter": {"trace_storage": "memory"}},
        }
        (self.folder / "config.yaml").write_text(yaml.safe_dump(config))
        self.log = (self.folder / "jaeger.log").open("wb")
        self.proc = subprocess.Popen(
            [binary, "--config", str(self.folder / "config.yaml")], stdout=self.log, stderr=subprocess.STDOUT
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jaeger exited: {(self.folder / 'jaeger.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.query_url}/api/services", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"jaeger not ready within {timeout}s")

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        """The trace as Jaeger's query API returns it (`/api/traces/<id>`), or None while it has none."""
        try:
            with urllib.request.urlopen(f"{self.query_url}/api/traces/{trace_id}", timeout=5) as resp:
                body = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise
        traces = body.get("data") or []
        return traces[0] if traces else None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()
