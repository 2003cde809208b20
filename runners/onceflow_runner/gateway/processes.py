"""Several gateway processes in one pod, on one webhook port (SO_REUSEPORT).

Why: one gateway process is one Python interpreter, so one core: about 4,000-7,000 webhooks/s
here on its own (docs/benchmarks.md). A pod given more cores serves more with `processes` > 1
(the Connector's `spec.webhook.processesPerPod`, or `onceflow gateway --processes`): each process
binds the webhook port with SO_REUSEPORT and the kernel spreads new connections over them. Each
process has its own NATS connection and publishes each webhook itself, so every guarantee holds
per request as with one process (202 only after the PubAck, the duplicate window in the stream,
the connection cap per process).

The first process (the leader) starts the others and is the pod's face to Kubernetes: its
operations port serves /metrics as the sum over every process (the backlog gauge as the largest:
each process sees the same runners), /readyz ready only when every process is, and /healthz
failing when a process exited, does not answer (hung) or is itself unhealthy (its NATS connection
closed), so the kubelet restarts the pod instead of leaving it at part strength or, unready, out
of service for good. A process that does not answer a scrape counts with the figures it last
gave (its counters never seem to go back, which Prometheus would read as a reset), and
`onceflow_gateway_processes_unanswered` says how many did not answer. The other processes serve
their operations endpoints on an ephemeral loopback port that only the leader reads.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path

import aiohttp
from prometheus_client import CollectorRegistry, Metric, generate_latest
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["ProcessGroup", "merge_metrics"]

#: Gauges that every process measures alike (the runners' reported lag): the largest, not the sum.
_SAME_IN_EVERY_PROCESS = frozenset({"onceflow_gateway_backlog"})
#: Seconds a process has to report its operations port after it was started.
REPORT_SECONDS = 60.0
#: Seconds each process has to answer the leader's /healthz (the kubelet gives the leader 1 s).
HEALTH_SECONDS = 0.5
_UNANSWERED = (
    "# HELP onceflow_gateway_processes_unanswered Gateway processes of this pod that did not answer"
    " this scrape (their last figures are counted).\n"
    "# TYPE onceflow_gateway_processes_unanswered gauge\n"
    "onceflow_gateway_processes_unanswered {}\n"
)


def merge_metrics(texts: Iterable[str]) -> bytes:
    """One Prometheus exposition for several processes of one gateway: samples added up.

    Counters, histograms and gauges add up (`_created` keeps the earliest); the gauges in
    `_SAME_IN_EVERY_PROCESS` keep the largest.
    """
    families: dict[str, tuple[str, str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            _, _, samples = families.setdefault(family.name, (family.documentation, family.type, {}))
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                if key not in samples:
                    samples[key] = sample.value
                elif sample.name.endswith("_created"):
                    samples[key] = min(samples[key], sample.value)
                elif family.name in _SAME_IN_EVERY_PROCESS:
                    samples[key] = max(samples[key], sample.value)
                else:
                    samples[key] += sample.value

    class _Merged:
        def collect(self) -> Iterable[Metric]:
            for name, (documentation, kind, samples) in families.items():
                metric = Metric(name, documentation, kind)
                for (sample_name, labels), value in samples.items():
                    metric.add_sample(sample_name, dict(labels), value)
                yield metric

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged())
    return generate_latest(registry)


@dataclass
class _Member:
    index: int
    process: BaseProcess
    pipe: Connection
    operations_url: str = ""
    #: The last /metrics it answered: counted again while it does not answer.
    last_metrics: str = ""


@dataclass
class ProcessGroup:
    """The leader's view of the other processes of its pod."""

    plan_path: Path
    nats_url: str
    secrets_dir: Path
    host: str
    count: int
    #: What each other process runs: `onceflow_runner.main.run_gateway_worker`'s signature.
    worker: Callable[[int, Path, str, Path, str, int, Connection], None]
    members: list[_Member] = field(default_factory=list)

    def start(self, port: int) -> None:
        """Start processes 1..count-1 serving `port` (the leader bound it first, with SO_REUSEPORT)."""
        spawn = multiprocessing.get_context("spawn")  # no fork of a process with an event loop and threads
        for index in range(1, self.count):
            ours, theirs = spawn.Pipe(duplex=False)
            process = spawn.Process(
                target=self.worker,
                args=(index, self.plan_path, self.nats_url, self.secrets_dir, self.host, port, theirs),
                name=f"gateway-{index}",
                daemon=True,
            )
            process.start()
            theirs.close()
            self.members.append(_Member(index, process, ours))

    async def reported(self) -> None:
        """Wait until every process said where its operations endpoints are (it is then listening).

        At most REPORT_SECONDS; a process that did not report by then shows in /readyz.
        """
        deadline = time.monotonic() + REPORT_SECONDS
        for member in self.members:
            while not _has_reported(member):
                if not member.process.is_alive() or time.monotonic() > deadline:
                    return
                await asyncio.sleep(0.05)

    def exited(self) -> str | None:
        """Which process exited, if one did (the pod then needs a restart)."""
        for member in self.members:
            if not member.process.is_alive():
                return f"gateway process {member.index} exited with code {member.process.exitcode}"
        return None

    async def unhealthy(self) -> str | None:
        """Why the pod needs a restart (None when it does not): a process exited, hangs or is unhealthy.

        Each process that reported is asked for its /healthz at once, HEALTH_SECONDS at most; one
        still starting is not asked (readiness waits for it).
        """
        problem = self.exited()
        if problem is not None:
            return problem
        started = [member for member in self.members if _has_reported(member)]
        if not started:
            return None
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HEALTH_SECONDS)) as session:
            answers = await asyncio.gather(*(_health(session, member) for member in started))
        return next((answer for answer in answers if answer is not None), None)

    async def not_ready(self) -> str | None:
        """Why some process is not ready (None when every one is)."""
        problem = self.exited()
        if problem is not None:
            return problem
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            for member in self.members:
                if not _has_reported(member):
                    return f"gateway process {member.index} not started"
                try:
                    async with session.get(f"{member.operations_url}/readyz") as resp:
                        if resp.status != 200:
                            return f"gateway process {member.index}: {(await resp.text())[:200]}"
                except (aiohttp.ClientError, TimeoutError):
                    return f"gateway process {member.index} does not answer"
        return None

    async def metrics(self, own: bytes) -> bytes:
        """The leader's metrics and every other process's, added up (a silent one's last figures)."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            answered = await asyncio.gather(*(_scraped(session, member) for member in self.members))
        texts = [own.decode(), *(member.last_metrics for member in self.members if member.last_metrics)]
        texts.append(_UNANSWERED.format(answered.count(False)))
        return merge_metrics(texts)

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM to every process, then wait for each (it finishes the requests it holds)."""
        for member in self.members:
            if member.process.is_alive() and member.process.pid is not None:
                member.process.terminate()
        for member in self.members:
            member.process.join(grace)
            if member.process.is_alive():
                member.process.kill()


def _has_reported(member: _Member) -> bool:
    """Whether the process said where its operations endpoints are (read from its pipe when it has)."""
    if not member.operations_url:
        try:
            if member.pipe.poll():
                member.operations_url = str(member.pipe.recv())
        except (EOFError, OSError):  # it exited before reporting: `exited` says so
            return False
    return bool(member.operations_url)


async def _health(session: aiohttp.ClientSession, member: _Member) -> str | None:
    try:
        async with session.get(f"{member.operations_url}/healthz") as resp:
            if resp.status == 200:
                return None
            return f"gateway process {member.index}: {(await resp.text())[:200]}"
    except (aiohttp.ClientError, TimeoutError):
        return f"gateway process {member.index} does not answer"


async def _scraped(session: aiohttp.ClientSession, member: _Member) -> bool:
    """Read the process's /metrics into `last_metrics`; False when it did not answer."""
    if not _has_reported(member):
        return False
    try:
        async with session.get(f"{member.operations_url}/metrics") as resp:
            if resp.status != 200:
                return False
            member.last_metrics = await resp.text()
    except (aiohttp.ClientError, TimeoutError):
        return False
    return True
