"""Shared pieces of the benchmarks: processes on loopback, plans, timing helpers."""

from __future__ import annotations

import asyncio
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


class _Exchange(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: write a whole request, read one answer's status.

    Why not aiohttp's client: it builds a request object, a response object, header multidicts
    and a timer per request, about 0.3-0.4 ms of CPU each, and the senders share the cores with
    what is measured. This writes bytes built before the load starts and reads the status line and
    Content-Length of the answer, nothing else; one request at a time per connection (no
    pipelining: a real sender waits for its answer).
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None:
            return
        head = bytes(self.buffer[:end]).lower()
        length = next((int(line[15:]) for line in head.split(b"\r\n") if line.startswith(b"content-length:")), 0)
        if len(self.buffer) < end + 4 + length:
            return
        status = int(self.buffer[9:12])
        del self.buffer[: end + 4 + length]
        if not self.waiter.done():
            self.waiter.set_result(status)
        self.waiter = None
        if b"connection: close" in head:
            self.closed = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed before the answer"))

    async def exchange(self, request: bytes) -> int:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter


class RawSender:
    """A pool of up to `limit` keep-alive connections to host:port sending pre-built requests.

    `send` waits for a free connection (opening one while fewer than `limit` are open), so an
    open-loop caller measures from the due time, queueing included.
    """

    def __init__(self, host: str, port: int, *, limit: int) -> None:
        self.host, self.port, self.limit = host, port, limit
        self.idle: list[_Exchange] = []
        self.opened = 0
        self.freed = asyncio.Condition()

    async def _take(self) -> _Exchange:
        async with self.freed:
            while True:
                while self.idle and self.idle[-1].closed:  # the server closed it while idle (keep-alive)
                    self.idle.pop()
                    self.opened -= 1
                if self.idle or self.opened < self.limit:
                    break
                await self.freed.wait()
            if self.idle:
                return self.idle.pop()
            self.opened += 1
        try:
            transport, conn = await asyncio.get_running_loop().create_connection(_Exchange, self.host, self.port)
        except OSError:
            await self._give(None)
            raise
        conn.transport = transport  # uvloop calls connection_made only after this returns
        return conn

    async def _give(self, conn: _Exchange | None) -> None:
        async with self.freed:
            if conn is not None and not conn.closed:
                self.idle.append(conn)
            else:
                self.opened -= 1
            self.freed.notify()

    async def send(self, request: bytes) -> int:
        """The answer's status; raises ConnectionError (OSError) when the connection failed."""
        conn = await self._take()
        try:
            return await conn.exchange(request)
        except RuntimeError as exc:  # uvloop: written to a transport closed a moment ago
            conn.closed = True
            raise ConnectionError(str(exc)) from None
        except BaseException:
            conn.closed = True
            if conn.transport is not None:
                conn.transport.close()
            raise
        finally:
            await self._give(conn)

    def close(self) -> None:
        for conn in self.idle:
            if conn.transport is not None:
                conn.transport.close()
        self.idle.clear()


def post_request(path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """A complete HTTP/1.1 POST, keep-alive, ready to write."""
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
