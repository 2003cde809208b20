"""Process entry points of the data plane: `onceflow runner`, `onceflow gateway`, `onceflow edi-inbound`.

Kept free of operator imports: a runner pod starts in well under a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Coroutine, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar

from onceflow_runner.contract.environment import DEFAULT_METRICS_PORT, METRICS_PORT_ENV
from onceflow_runner.contract.plan import load_gateway_plan, load_plan
from onceflow_runner.contract.split import Lane
from onceflow_runner.errors import PlanError

__all__ = [
    "configure_logging",
    "exported_spans",
    "run_drift_check_job",
    "run_edi_inbound",
    "run_gateway",
    "run_gateway_worker",
    "run_loop",
    "run_runner",
]

EXIT_BAD_PLAN = 2
#: Seconds between a gateway process's looks at whether its leader is still there.
ORPHAN_CHECK_SECONDS = 1.0
_T = TypeVar("_T")


class _JsonFormatter(logging.Formatter):
    """One JSON object per line. Only fields we put there: never headers or secret values."""

    _SKIP = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in self._SKIP})
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO") -> None:
    """JSON logs on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise at scale


@contextlib.contextmanager
def exported_spans(service_name: str) -> Iterator[None]:
    """Export spans over OTLP inside the block when the `OTEL_*` environment asks (docs/observability.md).

    On the way out the spans still queued are sent, so a pod's last records reach the collector.
    """
    from onceflow_runner.adapters import otlp

    if not otlp.configure(service_name):
        yield
        return
    try:
        yield
    finally:
        otlp.shutdown()


def run_loop(main: Coroutine[Any, Any, _T]) -> _T:
    """`asyncio.run` on uvloop when it is installed, else on asyncio's own loop.

    Why: the runner and the gateway spend most of their CPU in the event loop (a NATS request,
    an HTTP exchange and a few tasks per record); uvloop measured about +20% records per
    CPU-second on the runner (docs/benchmarks.md). It stays optional: a platform without it
    runs the same code, only slower.
    """
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def run_runner(plan_path: Path, nats_url: str, secrets_dir: Path, host: str, port: int, lane: Lane = "main") -> int:
    """Run a runner until SIGTERM; return the exit code (2 for a plan it cannot run)."""
    from onceflow_runner.runner import Runner, run_until_signalled

    try:
        plan = load_plan(plan_path)
        runner = Runner(plan, nats_url=nats_url, secrets_dir=secrets_dir, host=host, port=port, lane=lane)
    except PlanError as exc:
        print(f"onceflow runner: {exc}", file=sys.stderr)
        return EXIT_BAD_PLAN
    configure_logging()
    with exported_spans("onceflow-runner"):
        run_loop(run_until_signalled(runner))
    return 0


def run_gateway(
    plan_path: Path,
    nats_url: str,
    secrets_dir: Path,
    host: str,
    port: int,
    metrics_port: int | None = None,
    processes: int | None = None,
) -> int:
    """Run a gateway until SIGTERM; return the exit code (2 for a plan it cannot run).

    Webhooks are served on `port`; /metrics, /healthz and /readyz on `metrics_port` (default:
    $ONCEFLOW_METRICS_PORT, else 9090). A gateway whose signing secret is empty or malformed does
    not exit: it stays not ready and says why (readiness and one log line), so the Deployment shows
    the reason instead of a crash loop, and rolls to a new pod when the Secret is fixed.
    `processes` (default: the plan's) > 1 serves the port from that many processes (gateway/processes.py).
    """
    from onceflow_runner.gateway.listener import PortInUse
    from onceflow_runner.gateway.processes import ProcessGroup
    from onceflow_runner.gateway.server import Gateway

    if metrics_port is None:
        metrics_port = int(os.environ.get(METRICS_PORT_ENV) or DEFAULT_METRICS_PORT)
    try:
        plan = load_gateway_plan(plan_path)
        count = processes or plan.processes
        group = ProcessGroup(plan_path, nats_url, secrets_dir, host, count, run_gateway_worker) if count > 1 else None
        gateway = Gateway(
            plan,
            nats_url=nats_url,
            secrets_dir=secrets_dir,
            host=host,
            port=port,
            metrics_port=metrics_port,
            reuse_port=group is not None,
            group=group,
        )
    except PlanError as exc:
        print(f"onceflow gateway: {exc}", file=sys.stderr)
        return EXIT_BAD_PLAN
    configure_logging()

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await gateway.start()
        if group is not None:  # the port is bound (SO_REUSEPORT): the others join it
            group.start(gateway.port)
            await group.reported()
        print(
            json.dumps({"gateway": plan.connector, "url": gateway.url, "operations": gateway.operations_url}),
            flush=True,
        )
        await stop.wait()
        if group is not None:
            await asyncio.gather(asyncio.to_thread(group.stop), gateway.stop())
        else:
            await gateway.stop()

    try:
        with exported_spans("onceflow-gateway"):
            run_loop(serve())
    except PortInUse as exc:  # before any other process started
        print(f"onceflow gateway: {exc}", file=sys.stderr)
        return 1
    return 0


def run_gateway_worker(
    index: int, plan_path: Path, nats_url: str, secrets_dir: Path, host: str, port: int, report: Connection
) -> None:
    """Process `index` of a gateway pod: serve webhooks on the shared port until SIGTERM."""
    from onceflow_runner.gateway.server import Gateway

    configure_logging()
    gateway = Gateway(
        load_gateway_plan(plan_path),
        nats_url=nats_url,
        secrets_dir=secrets_dir,
        host=host,
        port=port,
        metrics_port=0,
        operations_host="127.0.0.1",
        reuse_port=True,
    )

    leader = os.getppid()

    async def orphaned(stop: asyncio.Event) -> None:
        """Stop when the leader is gone (killed without passing SIGTERM on, e.g. SIGKILL outside a container).

        A process left alone would go on serving the port with no one reading its health.
        """
        while not stop.is_set():
            if os.getppid() != leader:
                stop.set()
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), ORPHAN_CHECK_SECONDS)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await gateway.start()
        report.send(gateway.operations_url)
        report.close()
        watching = asyncio.create_task(orphaned(stop))
        await stop.wait()
        await gateway.stop()
        watching.cancel()

    with exported_spans("onceflow-gateway"):
        run_loop(serve())


def run_edi_inbound(plan_path: Path, nats_url: str, secrets_dir: Path, host: str, port: int) -> int:
    """Poll one trading partner's SFTP folders until SIGTERM (docs/edi.md); exit 2 for an unusable plan.

    /healthz, /readyz and /metrics are served on `port`. SFTP trouble does not end the process: it
    is retried every poll interval and shown by readiness, so files wait on the server, not lost.
    """
    from onceflow_runner.contract.edi import load_edi_plan
    from onceflow_runner.edi.service import EdiService

    try:
        plan = load_edi_plan(plan_path)
    except PlanError as exc:
        print(f"onceflow edi-inbound: {exc}", file=sys.stderr)
        return EXIT_BAD_PLAN
    configure_logging()
    service = EdiService(plan, nats_url=nats_url, secrets_dir=secrets_dir, host=host, port=port)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await service.run(stop)

    asyncio.run(serve())
    return 0


def run_drift_check_job(plan_path: Path, nats_url: str, secrets_dir: Path) -> int:
    """Run one drift check; print its result as JSON; exit 2 for an unusable plan, 1 on failure."""
    import nats.errors

    from onceflow_runner.contract.plan import load_drift_check_plan
    from onceflow_runner.drift.job import run_drift_check
    from onceflow_runner.errors import OnceflowError

    try:
        plan = load_drift_check_plan(plan_path)
    except PlanError as exc:
        print(f"onceflow drift-check: {exc}", file=sys.stderr)
        return EXIT_BAD_PLAN
    try:
        result = asyncio.run(run_drift_check(plan, nats_url, secrets_dir))
    except (OnceflowError, OSError, nats.errors.Error) as exc:
        print(f"onceflow drift-check: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(result.to_wire().decode())
    return 0
