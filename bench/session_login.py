"""Session-login Connectors under load: calls per second against token auth, logins per expiry.

Runs the runner's HttpCaller (the production transport) against the sandbox ERP on loopback,
first with token auth, then logged in with sessions that end every `--session-calls` calls, the
same number of GETs at the same concurrency. Prints both rates, their ratio (the cost of the
session machinery: the expiry check, the shared re-login, the resent calls) and logins against
sessions ended (one login per ended session, plus the first, is the herd-free result). Never a
pass/fail on timing.

    .venv/bin/python bench/session_login.py --calls 3000 --concurrency 64 --session-calls 200
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from onceflow_runner.adapters.outbound import HttpCaller
from onceflow_runner.contract.plan import ConnectorPlan
from onceflow_runner.errors import OnceflowError
from onceflow_runner.testing.sandbox import ErpSandbox


async def drive(caller: HttpCaller, calls: int, concurrency: int) -> tuple[float, int]:
    """Calls per second, and how many calls failed (a runner would redeliver their records)."""
    queue = iter(range(calls))
    failed = 0

    async def worker() -> None:
        nonlocal failed
        for _ in queue:
            try:
                await caller.request(
                    "erp", "GET", "/api/method/ping", query={}, body=None, idempotency_key=None, headers={}, step="b"
                )
            except OnceflowError:
                failed += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return calls / (time.perf_counter() - started), failed


async def main(calls: int, concurrency: int, session_calls: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        secrets = Path(tmp)
        (secrets / "erp").mkdir()
        for key, value in {"key": "sandbox-key", "secret": "sandbox-secret", "user": "integration@example.com",
                           "password": "sandbox-password"}.items():  # fmt: skip
            (secrets / "erp" / key).write_text(value)
        limits = {"requests_per_second": 1e6, "burst": 100000, "attempts": 1}
        token_erp = ErpSandbox()
        session_erp = ErpSandbox(auth="session", session_calls=session_calls)
        for box in (token_erp, session_erp):
            await box.start()
        try:
            token = ConnectorPlan.model_validate(
                {"name": "erp", "base_url": token_erp.url, **limits,
                 "auth": {"type": "ERPNextToken", "api_key": {"name": "erp", "key": "key"},
                          "api_secret": {"name": "erp", "key": "secret"}}}
            )  # fmt: skip
            session = ConnectorPlan.model_validate(
                {"name": "erp", "base_url": session_erp.url, **limits,
                 "auth": {"type": "SessionLogin", "session_login": {
                     "path": "/api/method/login", "body": "{'usr': secrets.user, 'pwd': secrets.password}",
                     "secrets": {"user": {"name": "erp", "key": "user"}, "password": {"name": "erp", "key": "password"}}}}}
            )  # fmt: skip
            token_caller, session_caller = HttpCaller({"erp": token}, secrets), HttpCaller({"erp": session}, secrets)
            await drive(token_caller, 200, concurrency)  # warm both pools
            await drive(session_caller, 200, concurrency)
            session_erp.logins = session_erp.sessions_ended = 0
            session_erp.expire_sessions()
            baseline, _ = await drive(token_caller, calls, concurrency)
            measured, failed = await drive(session_caller, calls, concurrency)
            await token_caller.aclose()
            await session_caller.aclose()
        finally:
            for box in (token_erp, session_erp):
                await box.stop()
    print(f"token auth:    {baseline:8.0f} calls/s  ({calls} GETs, {concurrency} in flight)")
    print(f"session login: {measured:8.0f} calls/s  (sessions end every {session_calls} calls)")
    print(f"ratio session/token: {measured / baseline:.2f}")
    print(f"logins: {session_erp.logins}, sessions ended: {session_erp.sessions_ended}, "
          f"calls answered 401 and resent: {session_erp.expired_answers}, calls failed: {failed}")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--session-calls", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.concurrency, args.session_calls))
