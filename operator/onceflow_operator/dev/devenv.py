"""`onceflow dev up | down`: the embedded system in the background, and a clean stop.

`up` starts `onceflow dev serve` as its own session (process group) and waits for it to write
`state.json` (kubeconfig, NATS URL, sandbox and gateway URLs). `down` asks it to stop (SIGTERM:
it stops the operator, runners, gateways, sandboxes, nats-server and the control plane), then
kills whatever is left of the group, so no process outlives it. Development only.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["DevError", "default_state", "down", "up"]


class DevError(Exception):
    """The embedded system could not start; the message says why and where the log is."""


def default_state() -> Path:
    """Beside the other cached tools: $ONCEFLOW_CACHE/dev, by default ~/.cache/onceflow/dev."""
    cache = os.environ.get("ONCEFLOW_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "onceflow"
    )
    return Path(cache) / "dev"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_pid(state: Path) -> int | None:
    try:
        return int((state / "pid").read_text())
    except (OSError, ValueError):
        return None


def up(examples: Path, state: Path, *, within: float = 600) -> dict[str, Any]:
    """Start the system in the background (or find it running); return what state.json says."""
    pid = _read_pid(state)
    if pid is not None and _alive(pid) and (state / "state.json").exists():
        return dict(json.loads((state / "state.json").read_text()))
    if pid is not None:
        down(state)
    state.mkdir(parents=True, exist_ok=True)
    log = (state / "dev.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "onceflow_operator",
            "dev",
            "serve",
            "--examples",
            str(examples),
            "--state",
            str(state),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    log.close()
    (state / "pid").write_text(str(proc.pid))
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:  # polled: the child reports readiness by writing a file
        if (state / "state.json").exists():
            return dict(json.loads((state / "state.json").read_text()))
        if proc.poll() is not None:
            tail = (state / "dev.log").read_text(errors="replace")[-2000:]
            down(state)
            raise DevError(f"the embedded system stopped while starting (exit {proc.returncode}):\n{tail}")
        time.sleep(0.5)
    down(state)
    raise DevError(f"not up within {within:.0f}s; see {state / 'dev.log'}")


def down(state: Path, *, grace: float = 90) -> bool:
    """Stop the background system; True when one was running. Leaves no process of it behind."""
    pid = _read_pid(state)
    if pid is None:
        shutil.rmtree(state, ignore_errors=True)
        return False
    running = _alive(pid)
    if running:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
    # The session's process group: anything the graceful stop missed goes now.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    shutil.rmtree(state, ignore_errors=True)
    return running
