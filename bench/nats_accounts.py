"""What an account per namespace costs the operator and NATS, against one shared account.

Starts a nats-server on a full resolver (`nats-auth init --isolation account`'s configuration) for
each mode, has the operator's connection provider (`clients.accounts.NatsLinks`) ensure the same
number of namespaces (user mode: the shared streams once, then each namespace's KV buckets;
account mode: push each account, connect into it, create its streams and buckets), then times
one stream-health round (what the stream watcher does every ONCEFLOW_STREAM_HEALTH_SECONDS) and
reads the server's resident memory. Prints both modes and their ratios. Never a pass/fail.

    .venv/bin/python bench/nats_accounts.py --namespaces 40
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from onceflow_operator.build.natsauth import bootstrap
from onceflow_operator.clients.accounts import AccountSettings, NatsLinks
from onceflow_operator.dev.natsserver import NatsServer


async def measure(mode: str, namespaces: int) -> tuple[float, float, float]:
    """Seconds to ensure every namespace, seconds of one health round, the server's RSS in MiB."""
    keys = bootstrap()
    folder = Path(tempfile.mkdtemp(prefix="onceflow-bench-accounts-"))
    (folder / "auth.conf").write_text(keys.server_config("full", str(folder / "jwt")))
    server = NatsServer(extra=["-c", str(folder / "auth.conf")])
    server.start()
    try:
        if mode == "user":
            (folder / "operator.creds").write_text(keys.operator_creds)
            os.environ["ONCEFLOW_NATS_CREDS_FILE"] = str(folder / "operator.creds")
            links = NatsLinks(server.url, lambda *_: None)
        else:
            os.environ.pop("ONCEFLOW_NATS_CREDS_FILE", None)
            settings = AccountSettings(keys.operator_signing, keys.system_creds)
            links = NatsLinks(server.url, lambda *_: None, accounts=settings)
        started = time.perf_counter()
        for i in range(namespaces):
            await links.ensure_namespace(f"ns{i}")
        ensured = time.perf_counter() - started
        started = time.perf_counter()
        for link in links.links():
            await link.stream_health()
        health = time.perf_counter() - started
        assert server.proc is not None
        status = Path(f"/proc/{server.proc.pid}/status").read_text()
        rss = int(status.split("VmRSS:")[1].split()[0]) / 1024
        await links.close()
        return ensured, health, rss
    finally:
        server.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespaces", type=int, default=40)
    args = parser.parse_args()
    found = {mode: await measure(mode, args.namespaces) for mode in ("user", "account")}
    for mode, (ensured, health, rss) in found.items():
        print(
            f"{mode:8} {args.namespaces} namespaces ensured in {ensured:.2f} s"
            f" ({ensured / args.namespaces * 1000:.0f} ms each); one health round {health * 1000:.0f} ms;"
            f" nats-server RSS {rss:.0f} MiB"
        )
    (ue, uh, ur), (ae, ah, ar) = found["user"], found["account"]
    print(f"account/user: ensure x{ae / ue:.1f}, health round x{ah / max(uh, 1e-6):.1f}, server memory x{ar / ur:.1f}")


if __name__ == "__main__":
    asyncio.run(main())
