"""A real Prometheus server for tests: loopback, free port, its own data folder, stopped by PID."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

from onceflow_operator.dev.controlplane import free_port


def prometheus_binary() -> str:
    """$ONCEFLOW_PROMETHEUS (set by `make test`), else hack/install-prometheus.sh."""
    found = os.environ.get("ONCEFLOW_PROMETHEUS") or shutil.which("prometheus")
    if found:
        return found
    script = Path(__file__).resolve().parents[1] / "hack" / "install-prometheus.sh"
    out = subprocess.run([str(script)], capture_output=True, text=True, check=True, timeout=600)
    return out.stdout.strip().splitlines()[-1]


class PrometheusServer:
    """Scrapes `targets` (host:port of /metrics endpoints) every second."""

    def __init__(self, targets: list[str]) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="onceflow-prom-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "onceflow-runners", "static_configs": [{"targets": targets}]}],
        }
        (self.folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = (self.folder / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [
                prometheus_binary(),
                f"--config.file={self.folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"Prometheus did not become ready; see {self.folder / 'prometheus.log'}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.folder, ignore_errors=True)
