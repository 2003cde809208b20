"""CEL that iterates, evaluated in worker processes the runner kills at a deadline.

Why processes: the CEL library holds the GIL for a whole evaluation, so a slow expression in
the runner (or in a thread of it) stops heartbeats, health checks and every other record, and
no thread can be stopped. A worker is a child Python process that evaluates one expression at a
time; the runner waits for its answer without blocking the loop, and kills it when the deadline
passes or when it dies of its memory limit (`RLIMIT_AS`; the CEL library aborts when an
allocation fails). A fresh worker replaces it; the record becomes ExpressionBudgetExceeded.

The wire between them is a 4-byte big-endian length and a pickle, both ways. Both ends are this
module, and what crosses is the decoded record (JSON types) and CEL's answer for it.

Expressions that iterate come here (`engine.expressions.iterates`), and every expression of a
record whose payload or answers are large (`engine.expressions.HEAVY_BYTES`); a plan without
iterating expressions starts its workers on its first large record.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import pickle
import resource
import signal
import sys
from collections.abc import Mapping
from typing import Any, BinaryIO

from onceflow_runner.engine.expressions import evaluate
from onceflow_runner.errors import ExpressionBudgetExceeded, InvalidRecord, PlanError, TransientFailure

__all__ = ["DEFAULT_MEMORY_BYTES", "ExpressionWorkers", "main"]

log = logging.getLogger("onceflow.runner.expressions")

#: Address space of one worker. An idle worker maps about 50 MiB; the rest is room for a 1 MiB
#: payload as CEL values and what an expression builds from it. Two of these and the runner fit
#: the runner pod's 512Mi limit.
DEFAULT_MEMORY_BYTES = 192 * 1024 * 1024
#: How long a new worker may take to import and say it is ready.
_START_SECONDS = 30.0
_READY = b"ready"
_LENGTH = 4


def _frame(data: bytes) -> bytes:
    return len(data).to_bytes(_LENGTH, "big") + data


class _Worker:
    """One child process and its pipes."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        assert process.stdin is not None
        assert process.stdout is not None
        self.stdin = process.stdin
        self.stdout = process.stdout

    async def read(self) -> bytes:
        size = int.from_bytes(await self.stdout.readexactly(_LENGTH), "big")
        return await self.stdout.readexactly(size)

    async def call(self, request: bytes) -> tuple[str, Any]:
        self.stdin.write(_frame(request))
        await self.stdin.drain()
        kind, value = pickle.loads(await self.read())
        return str(kind), value

    def kill(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()


class ExpressionWorkers:
    """A fixed number of CEL worker processes, each serving one evaluation at a time.

    An evaluation waits for a free worker (the deadline starts when one takes it), sends the
    expression and the variables it reads, and waits up to `deadline` seconds for the answer.
    Workers start on `start()` or, for a plan with no iterating expression, on the first
    evaluation (a heavy record); a record that finds no worker free within `wait_limit` seconds
    (workers that cannot start, a queue of slow records) is a TransientFailure: redelivered later,
    never waiting for ever.
    """

    def __init__(self, *, workers: int = 1, deadline: float = 1.0, memory_bytes: int = DEFAULT_MEMORY_BYTES) -> None:
        if workers < 1:
            raise ValueError("ExpressionWorkers needs at least one worker")
        self.size = workers
        self.deadline = deadline
        self.memory_bytes = memory_bytes
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        self._all: set[_Worker] = set()
        self._respawns: set[asyncio.Task[None]] = set()
        self._closed = False
        self._started = False
        self._starting = asyncio.Lock()
        #: Longest wait for a free worker: every other in-flight record ahead of this one may hold a
        #: worker for a whole deadline, and a lost worker takes a start to replace.
        self.wait_limit = _START_SECONDS + 10 * deadline

    @property
    def idle(self) -> int:
        """Workers waiting for an expression now."""
        return self._idle.qsize()

    @property
    def pids(self) -> list[int]:
        """Process ids of the running workers."""
        return [w.process.pid for w in self._all]

    async def start(self) -> None:
        """Start every worker (once); raise PlanError if one cannot start."""
        async with self._starting:
            if self._started:
                return
            spawned = await asyncio.gather(*(self._spawn() for _ in range(self.size)), return_exceptions=True)
            failed = [r for r in spawned if isinstance(r, BaseException)]
            if failed:
                for worker in spawned:
                    if isinstance(worker, _Worker):
                        worker.kill()
                        self._all.discard(worker)
                raise PlanError(f"cannot start a CEL worker process: {failed[0]}")
            for worker in spawned:
                assert isinstance(worker, _Worker)
                self._idle.put_nowait(worker)
            self._started = True

    async def _spawn(self) -> _Worker:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            __name__,
            "--memory-bytes",
            str(self.memory_bytes),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        worker = _Worker(process)
        self._all.add(worker)
        try:
            if await asyncio.wait_for(worker.read(), _START_SECONDS) != _READY:
                raise OSError("the CEL worker did not say it was ready")
        except BaseException:
            # Not `_discard`: whoever called us retries (or gives up); a replacement from here too
            # would double the respawn loops on every failed start, and the pool with them.
            # (asyncio's child watcher reaps the killed process.)
            worker.kill()
            self._all.discard(worker)
            raise
        return worker

    def _discard(self, worker: _Worker) -> None:
        """Kill a worker whose state is unknown, reap it in the background, and start another."""
        worker.kill()
        self._all.discard(worker)
        task = asyncio.create_task(self._reap_and_replace(worker))
        self._respawns.add(task)
        task.add_done_callback(self._respawns.discard)

    async def _reap_and_replace(self, worker: _Worker) -> None:
        await worker.process.wait()
        delay = 0.5
        while not self._closed:
            try:
                fresh = await self._spawn()
            except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
                log.error("cannot start a CEL worker; trying again", extra={"error": str(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            if self._closed:
                fresh.kill()
                self._all.discard(fresh)
            else:
                self._idle.put_nowait(fresh)
            return

    async def evaluate(self, source: str, variables: Mapping[str, Any], *, step: str, what: str) -> Any:
        """Evaluate in a worker; raise InvalidRecord or ExpressionBudgetExceeded as the engine expects."""
        if self._closed:
            raise RuntimeError("ExpressionWorkers is closed")
        if not self._started:
            try:
                await self.start()
            except PlanError as exc:
                raise TransientFailure(f"{what}: {exc}; the record is tried again later", step=step) from None
        request = pickle.dumps((source, dict(variables), step, what), protocol=pickle.HIGHEST_PROTOCOL)
        try:
            worker = await asyncio.wait_for(self._idle.get(), self.wait_limit)
        except TimeoutError:
            raise TransientFailure(
                f"{what}: no CEL worker was free within {self.wait_limit:g}s; the record is tried again later",
                step=step,
            ) from None
        try:
            kind, value = await asyncio.wait_for(worker.call(request), self.deadline)
        except TimeoutError:
            self._discard(worker)
            raise ExpressionBudgetExceeded(
                f"{what}: did not finish within {self.deadline:g}s on this record (spec.expressionTimeout) and was "
                f"stopped; simplify the expression (comprehensions over large lists are slow) or raise "
                f"spec.expressionTimeout, then retry the record ({source})",
                step=step,
            ) from None
        except (asyncio.IncompleteReadError, ConnectionError):
            self._discard(worker)
            raise ExpressionBudgetExceeded(
                f"{what}: used more than {self.memory_bytes // 2**20} MiB on this record and was stopped; "
                f"simplify the expression (map and filter copy their lists) ({source})",
                step=step,
            ) from None
        except BaseException:
            # Cancelled mid-call: its answer would reach the next caller. Start over with a fresh worker.
            self._discard(worker)
            raise
        self._idle.put_nowait(worker)
        if kind == "ok":
            return value
        raise InvalidRecord(str(value), step=step)

    async def aclose(self) -> None:
        """Close every worker's input (it exits) and kill what has not exited within a second."""
        self._closed = True
        for task in list(self._respawns):
            task.cancel()
        workers = list(self._all)
        self._all.clear()
        for worker in workers:
            with contextlib.suppress(Exception):
                worker.stdin.close()
        for worker in workers:
            try:
                await asyncio.wait_for(worker.process.wait(), 1.0)
            except TimeoutError:
                worker.kill()
                await worker.process.wait()


# --- the worker process -------------------------------------------------------------------------


def _die_with_parent() -> None:
    """Ask Linux to kill this worker when the runner dies, even mid-evaluation (PR_SET_PDEATHSIG)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
        if os.getppid() == 1:  # the runner died before the request took effect
            os._exit(0)


def _answer(request: bytes) -> bytes:
    source, variables, step, what = pickle.loads(request)
    try:
        reply: tuple[str, Any] = ("ok", evaluate(source, variables, step=step, what=what))
    except InvalidRecord as exc:
        reply = ("invalid", str(exc))
    except (PlanError, RecursionError) as exc:
        reply = ("invalid", f"{what}: {exc} ({source})")
    try:
        return pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError):
        return pickle.dumps(("invalid", f"{what}: the expression's result cannot be used as a value ({source})"))


def serve(requests: BinaryIO, answers: BinaryIO) -> None:
    """Answer requests until the runner closes our input."""
    answers.write(_frame(_READY))
    answers.flush()
    while True:
        head = requests.read(_LENGTH)
        if len(head) < _LENGTH:
            return
        request = requests.read(int.from_bytes(head, "big"))
        answers.write(_frame(_answer(request)))
        answers.flush()


def main(argv: list[str] | None = None) -> None:
    """Worker entry point: limit memory, keep stdout for answers only, serve."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--memory-bytes", type=int, default=DEFAULT_MEMORY_BYTES)
    args = parser.parse_args(argv)
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C to the runner's group is the runner's to handle
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print cannot corrupt the answers
    resource.setrlimit(resource.RLIMIT_AS, (args.memory_bytes, args.memory_bytes))
    serve(sys.stdin.buffer, answers)


if __name__ == "__main__":
    main()
