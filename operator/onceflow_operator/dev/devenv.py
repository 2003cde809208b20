"""`onceflow dev up | down`: the embedded system in the background, and a clean stop.

`up` starts `onceflow dev serve` as its own session (process group) and waits for it to write
`state.json` (kubeconfig, NATS URL, sandbox URLs, and each gateway's full URL, signature scheme
and Secret). `down` asks it to stop (SIGTERM: it stops the operator, runners, gateways,
sandboxes, nats-server and the control plane), then kills whatever is left of the group, so no
process outlives it. Development only.

`describe` and `shell_exports` turn state.json into what a person pastes: the summary `dev up`
prints and the lines `onceflow dev env` prints for `eval`. `running` is how `onceflow send` finds
a gateway's URL when none is given.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["DevError", "default_state", "describe", "down", "running", "shell_exports", "up"]


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


def running(state: Path) -> dict[str, Any] | None:
    """What state.json says when the background system is up; None when it is not."""
    pid = _read_pid(state)
    if pid is None or not _alive(pid):
        return None
    try:
        return dict(json.loads((state / "state.json").read_text()))
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


#: A payload of scenario 1 beside the examples, for the summary's ready-to-paste `onceflow send`.
SAMPLE_WEBHOOK = Path("customer-onboarding") / "webhooks" / "customer-approved.json"


def shell_exports(info: dict[str, Any]) -> list[str]:
    """The lines that point a shell at the system (`eval "$(onceflow dev env)"`)."""
    return [
        f"export KUBECONFIG={shlex.quote(str(info['kubeconfig']))}",
        f"export ONCEFLOW_NATS_URL={shlex.quote(str(info['nats']))}",
    ]


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    return [
        "  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in (header, *rows)
    ]


def describe(info: dict[str, Any], *, bin_dir: Path, on_path: bool) -> list[str]:
    """The summary `dev up` prints: how to reach each part, and commands that work when pasted.

    `bin_dir` is where `onceflow`, `kubectl` and `kubectl-onceflow` are installed; when it is not
    on PATH (`on_path` False) the summary says how to put it there, since `kubectl onceflow` is
    found only through PATH.
    """
    ns = str(info["namespace"])
    lines = [f"onceflow dev is up (pid {info['pid']}, namespace {ns})."]
    if not on_path:
        lines += [
            "",
            f"Put {bin_dir} on PATH first (onceflow, kubectl and the kubectl onceflow plugin live there):",
            f"  export PATH={shlex.quote(str(bin_dir))}:$PATH",
        ]
    lines += ["", "Point this shell at it:", '  eval "$(onceflow dev env)"', "which sets:"]
    lines += [f"  {line}" for line in shell_exports(info)]
    # A state.json written before gateways carried their scheme and Secret lists bare URLs: skip those.
    gateways = {k: v for k, v in (info.get("gateways") or {}).items() if isinstance(v, dict)}
    if gateways:
        lines += ["", f"Webhook gateways (POST signed requests; `onceflow send CONNECTOR -n {ns}` signs for you):"]
        lines += _table(
            ("CONNECTOR", "URL", "SCHEME", "SIGNING SECRET"),
            [
                (name, g["url"], g["scheme"], f"Secret {g['secret']['name']}, key {g['secret']['key']} (-n {ns})")
                for name, g in sorted(gateways.items())
            ],
        )
    sandboxes: dict[str, str] = info.get("sandboxes") or {}
    if sandboxes:
        lines += ["", "Sandbox systems (each one's own book of effects: GET URL/_sandbox/state):"]
        lines += _table(("SANDBOX", "URL"), sorted(sandboxes.items()))
    partner = info.get("ediPartner")
    if isinstance(partner, dict) and partner.get("folder"):
        lines += [
            "",
            f"EDI partner (SFTP {partner.get('sftp', '')}): drop X12 850s in {partner['folder']}/to-onceflow/;",
            f"  997s, 855s, 856s and 810s for it land in {partner['folder']}/from-onceflow/",
        ]
    lines += ["", "Try:", f"  kubectl onceflow status -n {ns}"]
    sample = Path(str(info.get("examples", ""))) / SAMPLE_WEBHOOK
    if "crm-webhooks" in gateways and info.get("examples") and sample.exists():
        lines.append(f"  onceflow send crm-webhooks -n {ns} -d @{shlex.quote(str(sample))}")
    lines.append(f"  onceflow exceptions list -n {ns}")
    if "erp" in sandboxes:
        lines.append(f"  curl -s {sandboxes['erp']}/_sandbox/state")
    for name, g in sorted(gateways.items())[:1]:
        secret = g["secret"]
        lines.append(
            f"  kubectl get secret {secret['name']} -n {ns} -o jsonpath='{{.data.{secret['key']}}}' | base64 -d"
            f"   # {name}'s signing secret"
        )
    lines += ["", "Stop it with: onceflow dev down"]
    return lines
