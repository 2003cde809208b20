"""A real GitOps loop for tests: a Git repository served over smart HTTP and Flux's
source-controller and kustomize-controller running as local processes against the test API server.

Why these parts: go-git (inside source-controller) speaks only Git's smart HTTP protocol, which
`git http-backend` implements; a tiny threaded HTTP server on 127.0.0.1 runs it as CGI for each
request. The controllers are the real binaries (hack/build-flux.sh builds them once from the Go
module proxy), so health is judged by Flux's own kstatus checks, not by anything in this repo.
Everything binds 127.0.0.1 on free ports; processes are stopped by PID.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from onceflow_operator.dev.controlplane import free_port

__all__ = ["FluxControllers", "GitRepo", "find_flux", "reconcile_count"]


def find_flux() -> Path:
    """The folder hack/build-flux.sh fills (binaries + CRDs), from ONCEFLOW_FLUX; without it the test is skipped.

    Not built by `make test`: the controllers' first build takes about 20 minutes on 2 cores.
    """
    path = os.environ.get("ONCEFLOW_FLUX")
    if not path:
        pytest.skip("ONCEFLOW_FLUX is not set: `make ecosystem` builds Flux (hack/build-flux.sh) and runs this test")
    folder = Path(path)
    for binary in ("source-controller", "kustomize-controller"):
        assert (folder / binary).is_file(), f"{folder / binary} missing; run hack/build-flux.sh"
    return folder


class _GitHandler(BaseHTTPRequestHandler):
    """Runs `git http-backend` (CGI) for one request: the smart HTTP protocol go-git speaks."""

    server: _GitServer

    def do_GET(self) -> None:
        self._cgi()

    def do_POST(self) -> None:
        self._cgi()

    def _cgi(self) -> None:
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.server.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": self.client_address[0],
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            "HTTP_GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
        }
        proc = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, timeout=60)
        separator = b"\r\n\r\n" if b"\r\n\r\n" in proc.stdout else b"\n\n"
        head, _, payload = proc.stdout.partition(separator)
        status = 200
        headers: list[tuple[str, str]] = []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: pytest shows the controllers' logs when a test fails, not every fetch."""


class _GitServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), _GitHandler)
        self.root = root


@dataclass
class GitRepo:
    """A bare repository served over smart HTTP, and a working clone the test commits in."""

    base: Path
    work: Path = field(init=False)
    bare: Path = field(init=False)
    url: str = field(init=False, default="")
    _server: _GitServer | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.bare = self.base / "served" / "onceflow.git"
        self.work = self.base / "work"

    def __enter__(self) -> GitRepo:
        self.bare.parent.mkdir(parents=True)
        self._git(self.base, "init", "--quiet", "--bare", "--initial-branch=main", str(self.bare))
        self._git(self.base, "init", "--quiet", "--initial-branch=main", str(self.work))
        self._git(self.work, "remote", "add", "origin", str(self.bare))
        self._server = _GitServer(self.bare.parent)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/onceflow.git"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _git(self, cwd: Path, *args: str) -> str:
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "Onceflow Tests",
            "GIT_AUTHOR_EMAIL": "tests@onceflow.invalid",
            "GIT_COMMITTER_NAME": "Onceflow Tests",
            "GIT_COMMITTER_EMAIL": "tests@onceflow.invalid",
        }
        proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr}"
        return proc.stdout.strip()

    def commit(self, message: str, files: dict[str, list[dict[str, Any]]]) -> str:
        """Write YAML files (path -> documents), commit them, push; return the commit's SHA."""
        for name, docs in files.items():
            path = self.work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        self._git(self.work, "add", "--all")
        self._git(self.work, "commit", "--quiet", "-m", message)
        self._git(self.work, "push", "--quiet", "origin", "main")
        return self._git(self.work, "rev-parse", "HEAD")

    def revert(self, sha: str) -> str:
        """`git revert` one commit, push; return the new commit's SHA."""
        self._git(self.work, "revert", "--no-edit", sha)
        self._git(self.work, "push", "--quiet", "origin", "main")
        return self._git(self.work, "rev-parse", "HEAD")


@dataclass
class _Process:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    metrics_port: int
    health_port: int

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class FluxControllers:
    """source-controller and kustomize-controller as processes, watching every namespace."""

    flux: Path
    kubeconfig: Path
    base: Path
    processes: dict[str, _Process] = field(default_factory=dict)

    def __enter__(self) -> FluxControllers:
        storage = self.base / "storage"
        storage.mkdir(parents=True)
        storage_port = free_port()
        self._start(
            "source-controller",
            f"--storage-path={storage}",
            f"--storage-addr=127.0.0.1:{storage_port}",
            f"--storage-adv-addr=127.0.0.1:{storage_port}",
        )
        self._start("kustomize-controller")
        return self

    def _start(self, name: str, *args: str) -> None:
        metrics, health = free_port(), free_port()
        log = self.base / f"{name}.log"
        cmd = [
            str(self.flux / name),
            "--enable-leader-election=false",
            f"--metrics-addr=127.0.0.1:{metrics}",
            f"--health-addr=127.0.0.1:{health}",
            "--log-encoding=console",
            "--concurrent=2",
            *args,
        ]
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "RUNTIME_NAMESPACE": "default"}
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        process = _Process(name, proc, log, metrics, health)
        self.processes[name] = process
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"{name} exited ({proc.returncode}):\n{process.tail()}"
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"http://127.0.0.1:{health}/readyz", timeout=2) as resp,
            ):
                if resp.status == 200:
                    return
            time.sleep(0.2)
        raise AssertionError(f"{name} not ready within 60s:\n{process.tail()}")

    def metrics(self, name: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.processes[name].metrics_port}/metrics", timeout=5) as r:
            return r.read().decode()  # type: ignore[no-any-return]

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.tail()}" for p in self.processes.values())

    def __exit__(self, *exc: object) -> None:
        running = [p.proc for p in self.processes.values() if p.proc.poll() is None]
        for proc in running:  # all at once: each takes seconds to shut its manager down
            proc.terminate()
        for proc in running:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.base / "storage", ignore_errors=True)


def reconcile_count(metrics_text: str, controller: str) -> int:
    """Reconciles controller-runtime finished for `controller`, whatever their result."""
    total = 0.0
    pattern = re.compile(r"^controller_runtime_reconcile_total\{([^}]*)\} ([0-9.e+]+)$", re.M)
    for labels, value in pattern.findall(metrics_text):
        if f'controller="{controller}"' in labels:
            total += float(value)
    return int(total)
