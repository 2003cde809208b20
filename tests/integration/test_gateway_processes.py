"""Two gateway processes on one port (SO_REUSEPORT): together they lose nothing and store nothing twice.

`onceflow gateway --processes 2` as a pod runs it, a real nats-server: 600 signed webhooks, each
sent twice, every request on a new connection so the kernel spreads them over both processes.
Every post is answered 202, exactly one of each pair is the stored original and the other the
duplicate, the stream holds each record once, both processes did work, the leader's /metrics adds
both processes' counts, and a process that exits turns /healthz and /readyz red.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import nats
import pytest
from aiohttp import web

from onceflow_operator.clients.topology import ensure_streams
from onceflow_operator.dev.controlplane import free_port
from onceflow_operator.dev.natsserver import NatsServer
from onceflow_runner.contract.subjects import IN_STREAM
from onceflow_runner.gateway import processes
from onceflow_runner.gateway.processes import ProcessGroup
from tests.integration.gateway_harness import SECRET, gateway_plan, raw_exchange, request_head, signed_headers

WEBHOOKS = 600


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_until(condition: object, what: str, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} not within {within}s")


def _launch(folder: Path, nats_url: str, port: int, ops: int, **popen: Any) -> tuple[subprocess.Popen[bytes], str]:
    """`onceflow gateway --processes 2` of a plan of its own in `folder`; returns it and its subject prefix."""
    plan = gateway_plan(f"p{uuid.uuid4().hex[:8]}")
    (folder / "sig").mkdir(parents=True)
    (folder / "sig" / "secret").write_text(SECRET)
    (folder / "plan.json").write_text(plan.to_json())
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "onceflow_operator",
            "gateway",
            "--plan",
            str(folder / "plan.json"),
            "--nats",
            nats_url,
            "--secrets-dir",
            str(folder),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--metrics-port",
            str(ops),
            "--processes",
            "2",
        ],
        stdout=subprocess.PIPE,
        **popen,
    )
    return proc, plan.subject_prefix


@pytest.fixture
def two_processes(nats_server: NatsServer, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, int, str]]:
    async def streams() -> None:
        nc = await nats.connect(nats_server.url)
        await ensure_streams(nc.jetstream())
        await nc.close()

    asyncio.run(streams())
    port, ops = free_port(), free_port()
    proc, prefix = _launch(tmp_path, nats_server.url, port, ops)
    try:
        assert proc.stdout is not None
        started = json.loads(proc.stdout.readline())  # printed once every process listens
        assert started["url"].endswith(f":{port}/hooks")
        yield proc, port, ops, prefix
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        if proc.stdout is not None:
            proc.stdout.close()


def test_two_processes_serve_one_port_and_together_lose_and_double_nothing(
    two_processes: tuple[subprocess.Popen[bytes], int, int, str], nats_server: NatsServer
) -> None:
    proc, port, ops, prefix = two_processes
    wait_until(lambda: get(f"http://127.0.0.1:{ops}/readyz")[0] == 200, "ready")
    children = [int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
    workers = [pid for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(workers) == 1, children
    cpu_before = {pid: cpu_seconds(pid) for pid in (proc.pid, workers[0])}

    async def post(i: int) -> tuple[int, bool]:
        body = json.dumps({"n": i, "run": prefix}).encode()
        head = request_head("/hooks", signed_headers(body, f"d-{i}"), length=len(body))
        status, answer = await raw_exchange(port, head + body)  # a new connection each time
        return status, bool(status == 202 and json.loads(answer)["duplicate"])

    async def load() -> list[tuple[int, bool]]:
        gate = asyncio.Semaphore(32)

        async def bounded(i: int) -> tuple[int, bool]:
            async with gate:
                return await post(i)

        return await asyncio.gather(*(bounded(i % WEBHOOKS) for i in range(2 * WEBHOOKS)))

    answers = asyncio.run(load())
    assert Counter(status for status, _ in answers) == {202: 2 * WEBHOOKS}
    assert sum(1 for _, duplicate in answers if duplicate) == WEBHOOKS

    async def stored() -> int:
        nc = await nats.connect(nats_server.url)
        info = await nc.jetstream().stream_info(IN_STREAM, subjects_filter=f"{prefix}.>")
        await nc.close()
        return sum((info.state.subjects or {}).values())

    assert asyncio.run(stored()) == WEBHOOKS
    # Both processes served: each used CPU for its share (an idle process uses next to none).
    for pid, before in cpu_before.items():
        assert cpu_seconds(pid) - before > 0.1, f"process {pid} served nothing"
    status, metrics = get(f"http://127.0.0.1:{ops}/metrics")
    assert status == 200
    assert 'onceflow_gateway_requests_total{code="202",connector="src"} 1200.0' in metrics

    os.kill(workers[0], signal.SIGKILL)
    # Its port closes at once ("does not answer"), its exit is seen once it is reaped.
    wait_until(
        lambda: get(f"http://127.0.0.1:{ops}/healthz") == (500, "gateway process 1 exited with code -9"),
        "healthz failing after a process exited",
    )
    status, reason = get(f"http://127.0.0.1:{ops}/readyz")
    assert status == 503
    assert "gateway process 1 exited" in reason


def _worker_pid(leader: int) -> int:
    children = [int(p) for p in Path(f"/proc/{leader}/task/{leader}/children").read_text().split()]
    workers = [pid for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(workers) == 1, children
    return workers[0]


async def _post_signed(port: int, prefix: str, tag: str, count: int) -> list[int]:
    """`count` signed webhooks at once on raw connections to `port`; their status codes."""

    async def post(i: int) -> int:
        body = json.dumps({"n": i, "run": prefix}).encode()
        head = request_head("/hooks", signed_headers(body, f"{tag}-{i}"), length=len(body))
        return (await raw_exchange(port, head + body))[0]

    return await asyncio.gather(*(post(i) for i in range(count)))


def _requests_202(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith('onceflow_gateway_requests_total{code="202",connector="src"}'):
            return float(line.split()[-1])
    return 0.0


def test_a_hung_process_fails_liveness_and_metrics_keep_its_figures_saying_it_did_not_answer(
    two_processes: tuple[subprocess.Popen[bytes], int, int, str],
) -> None:
    """A process that stops answering (SIGSTOP here: a deadlock, a stuck syscall) is not an exited one.

    Readiness turned red, but /healthz stayed 200, so the kubelet never restarted the pod and it
    stayed out of service for good. And /metrics summed only the processes that answered: the
    request counters went down (Prometheus reads a counter reset, and rate() a spike when the
    process answers again) and nothing said a process was missing. Now /healthz fails while a
    process does not answer, and /metrics keeps that process's last figures and says how many
    processes did not answer.
    """
    proc, port, ops, prefix = two_processes
    wait_until(lambda: get(f"http://127.0.0.1:{ops}/readyz")[0] == 200, "ready")
    worker = _worker_pid(proc.pid)

    assert set(asyncio.run(_post_signed(port, prefix, "h", 200))) == {202}
    status, before = get(f"http://127.0.0.1:{ops}/metrics")
    assert (status, _requests_202(before)) == (200, 200.0)
    assert "onceflow_gateway_processes_unanswered 0.0" in before
    os.kill(worker, signal.SIGSTOP)
    try:
        wait_until(lambda: get(f"http://127.0.0.1:{ops}/healthz")[0] == 500, "healthz failing for a hung process", 20)
        status, reason = get(f"http://127.0.0.1:{ops}/healthz")
        assert "gateway process 1 does not answer" in reason
        status, during = get(f"http://127.0.0.1:{ops}/metrics")
        assert (status, _requests_202(during)) == (200, 200.0)
        assert "onceflow_gateway_processes_unanswered 1.0" in during
    finally:
        os.kill(worker, signal.SIGCONT)
    wait_until(lambda: get(f"http://127.0.0.1:{ops}/healthz")[0] == 200, "healthy again once it answers", 20)


def test_a_process_whose_leader_was_killed_stops_instead_of_serving_the_port_alone(
    two_processes: tuple[subprocess.Popen[bytes], int, int, str],
) -> None:
    """SIGKILL of the leader (outside a container nothing ends its children): the other process once
    went on serving the webhook port with no one reading its health; it now stops within seconds."""
    proc, _, ops, _ = two_processes
    wait_until(lambda: get(f"http://127.0.0.1:{ops}/readyz")[0] == 200, "ready")
    worker = _worker_pid(proc.pid)
    proc.kill()
    proc.wait(timeout=10)
    wait_until(lambda: not Path(f"/proc/{worker}").exists() or _zombie(worker), "the orphaned process to stop", 20)


def _zombie(pid: int) -> bool:
    """An exited process its new parent has not reaped yet."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _reporting_worker(
    delay: float, index: int, plan: Path, nats_url: str, secrets: Path, host: str, port: int, report: Connection
) -> None:
    """A stand-in gateway process: serves ready operations endpoints, reports them after `delay` s."""

    async def serve() -> None:
        app = web.Application()
        for path in ("/readyz", "/healthz", "/metrics"):
            app.router.add_get(path, lambda _: web.Response(text=""))
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        await asyncio.sleep(delay)
        report.send(f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}")  # type: ignore[union-attr]
        await asyncio.sleep(3600)

    asyncio.run(serve())


def _failing_worker(
    index: int, plan: Path, nats_url: str, secrets: Path, host: str, port: int, report: Connection
) -> None:
    """A gateway process that exits before it reports (a plan it cannot load, say)."""
    sys.exit(3)


def test_a_process_that_reports_after_the_start_window_is_ready_when_it_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow start (many processes on a CPU-starved pod) reported after REPORT_SECONDS was never read.

    The leader looked at the processes' pipes only while starting: readiness then said "gateway
    process 1 not started" for ever, and liveness stayed green, so the pod never served.
    """
    monkeypatch.setattr(processes, "REPORT_SECONDS", 0.2)
    group = ProcessGroup(tmp_path, "nats://unused", tmp_path, "127.0.0.1", 2, functools.partial(_reporting_worker, 1.0))
    group.start(0)
    try:
        asyncio.run(group.reported())
        assert asyncio.run(group.not_ready()) == "gateway process 1 not started"
        wait_until(lambda: asyncio.run(group.not_ready()) is None, "ready once the process reported", 30)
        assert asyncio.run(group.unhealthy()) is None
    finally:
        group.stop(grace=5)


def test_a_process_that_exits_before_reporting_is_named_not_an_eof_error(tmp_path: Path) -> None:
    """Its pipe then reads as closed: `reported` raised EOFError out of the leader's start."""
    group = ProcessGroup(tmp_path, "nats://unused", tmp_path, "127.0.0.1", 2, _failing_worker)
    group.start(0)
    try:
        asyncio.run(group.reported())
        assert asyncio.run(group.unhealthy()) == "gateway process 1 exited with code 3"
        assert asyncio.run(group.not_ready()) == "gateway process 1 exited with code 3"
    finally:
        group.stop(grace=5)


def test_a_second_gateway_on_a_port_another_gateway_serves_exits_instead_of_sharing_it(
    two_processes: tuple[subprocess.Popen[bytes], int, int, str], nats_server: NatsServer, tmp_path: Path
) -> None:
    """SO_REUSEPORT lets any socket of the same user with the option join a port: a second gateway
    (another Connector, a port handed out twice by the local executor) started on the port of a
    running one and took half its connections, answering its senders 401 or 404. The leader now
    claims the port alone first: the second one exits naming the port, and the first keeps it.
    """
    _, port, ops, prefix = two_processes
    wait_until(lambda: get(f"http://127.0.0.1:{ops}/readyz")[0] == 200, "ready")
    other, _ = _launch(
        tmp_path / "other", nats_server.url, port, free_port(), stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        _, err = other.communicate(timeout=30)
    finally:
        if other.poll() is None:  # it serves: stop it and the process it started, then fail
            os.killpg(other.pid, signal.SIGKILL)
            other.communicate()
    assert other.returncode != 0
    message = err.decode().strip()
    assert f"port {port}" in message
    assert "Traceback" not in message
    assert len(message.splitlines()) == 1, message

    assert set(asyncio.run(_post_signed(port, prefix, "o", 50))) == {202}
