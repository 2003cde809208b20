"""CEL that iterates cannot stall the runner: real worker processes, killed at a deadline.

The first tests drive `ExpressionWorkers` (child Python processes evaluating CEL) directly;
the last runs a whole Integration (gateway, nats-server, runner, sandbox ERP) with a rule that
is quadratic in the record's lines, and checks the ledger: the large record becomes one
ExpressionBudgetExceeded exception with its original bytes while small records keep flowing
and the runner stays healthy.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from onceflow_operator.dev.natsserver import NatsServer
from onceflow_runner.adapters.expression_workers import ExpressionWorkers
from onceflow_runner.errors import ExpressionBudgetExceeded, InvalidRecord, TransientFailure
from tests.integration.scenario import eventually
from tests.integration.test_delivery_faults import start, stop

#: Quadratic in the number of lines: 20,000 numbers through `map` take many seconds.
SLOW = "input.xs.map(x, x + 1).size() > 0"
SLOW_INPUT = {"input": {"xs": list(range(20_000))}}
FAST = "input.xs.exists(x, x == 3)"
FAST_INPUT = {"input": {"xs": [1, 2, 3]}}


def _gone(pid: int) -> bool:
    """True when no process `pid` runs (a zombie counts as gone: it no longer runs)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1].startswith("Z")
    except FileNotFoundError:
        return True


@pytest.fixture
async def workers() -> AsyncIterator[ExpressionWorkers]:
    pool = ExpressionWorkers(workers=2, deadline=3.0)
    await pool.start()
    yield pool
    pids = pool.pids
    await pool.aclose()
    assert all(_gone(pid) for pid in pids), "aclose left a worker running"


async def test_an_expression_past_its_deadline_is_stopped_and_a_fresh_worker_takes_its_place(
    workers: ExpressionWorkers,
) -> None:
    before = set(workers.pids)
    started = time.monotonic()
    with pytest.raises(ExpressionBudgetExceeded) as caught:
        await workers.evaluate(SLOW, SLOW_INPUT, step="check", what="rule")
    assert time.monotonic() - started < 3.0 + 2.0  # stopped at the deadline, not when CEL finished
    assert caught.value.step == "check"
    assert caught.value.reason == "ExpressionBudgetExceeded"
    assert "did not finish within 3s" in str(caught.value)
    assert "spec.expressionTimeout" in str(caught.value)
    killed = before - set(workers.pids)
    assert len(killed) == 1
    await eventually(lambda: all(_gone(pid) for pid in killed))
    await eventually(lambda: workers.idle == 2, within=30)
    assert await workers.evaluate(FAST, FAST_INPUT, step="check", what="rule") is True


async def test_the_loop_and_other_expressions_go_on_while_one_runs_long(workers: ExpressionWorkers) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    tick_task = asyncio.create_task(ticker())
    slow = asyncio.create_task(workers.evaluate(SLOW, SLOW_INPUT, step="check", what="rule"))
    await eventually(lambda: workers.idle == 1)  # the slow one holds a worker
    answers = [await workers.evaluate(FAST, {"input": {"xs": [i]}}, step="s", what="w") for i in range(20)]
    assert answers == [i == 3 for i in range(20)]
    assert not slow.done(), "the fast expressions waited for the slow one"
    with pytest.raises(ExpressionBudgetExceeded):
        await slow
    tick_task.cancel()
    assert ticks > 50, f"the event loop stalled: {ticks} ticks of 10ms in over 3s"


async def test_an_expression_that_outgrows_its_memory_is_stopped_and_named() -> None:
    pool = ExpressionWorkers(workers=1, deadline=30.0, memory_bytes=128 * 2**20)
    await pool.start()
    try:
        grow = {"input": {"xs": list(range(400)), "s": "x" * 200_000}}
        with pytest.raises(ExpressionBudgetExceeded) as caught:
            await pool.evaluate("input.xs.map(x, input.s + input.s).size() > 0", grow, step="check", what="rule")
        assert "used more than 128 MiB" in str(caught.value)
        await eventually(lambda: pool.idle == 1, within=30)
        assert await pool.evaluate(FAST, FAST_INPUT, step="check", what="rule") is True
    finally:
        await pool.aclose()


async def test_a_cancelled_evaluation_never_hands_its_answer_to_the_next_caller(workers: ExpressionWorkers) -> None:
    first = asyncio.create_task(workers.evaluate("input.xs.map(x, x).size()", SLOW_INPUT, step="a", what="w"))
    await eventually(lambda: workers.idle == 1)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    await eventually(lambda: workers.idle == 2, within=30)
    for i in range(4):  # every worker, old and new, answers its own question
        assert await workers.evaluate("size(input.xs)", {"input": {"xs": list(range(i))}}, step="b", what="w") == i
        assert await workers.evaluate("input.xs.all(x, x < 2)", {"input": {"xs": [i]}}, step="b", what="w") == (i < 2)


async def test_workers_that_fail_to_start_are_retried_by_one_loop_and_the_pool_keeps_its_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replacement that dies before it is ready (OOM-killed while importing, say) is retried, not multiplied.

    Each failed start used to schedule a replacement of its own besides the retry: 2 s of failing
    starts made about 500 respawn loops, and 800 workers for a pool of 2 once starts worked again.
    """
    pool = ExpressionWorkers(workers=2, deadline=0.3)
    await pool.start()
    try:
        starts = tmp_path / "starts"
        failing = tmp_path / "python"
        failing.write_text(f"#!/bin/sh\necho >> {starts}\nexit 1\n")
        failing.chmod(0o755)
        real = sys.executable
        monkeypatch.setattr(sys, "executable", str(failing))
        with pytest.raises(ExpressionBudgetExceeded):
            await pool.evaluate(SLOW, SLOW_INPUT, step="check", what="rule")
        await eventually(lambda: starts.exists() and len(starts.read_text().splitlines()) >= 3, within=30)
        assert len(pool._respawns) == 1  # one loop retrying, with its backoff
        monkeypatch.setattr(sys, "executable", real)
        await eventually(lambda: pool.idle == 2 and not pool._respawns, within=60)
        assert len(pool.pids) == 2
        assert await pool.evaluate(FAST, FAST_INPUT, step="check", what="rule") is True
    finally:
        await pool.aclose()


async def test_workers_start_on_first_use_and_a_record_never_waits_for_one_for_ever() -> None:
    pool = ExpressionWorkers(workers=1, deadline=5.0)
    try:
        assert pool.pids == []  # a plan without iterating CEL starts none until a large record comes
        assert await pool.evaluate("size(input.xs)", FAST_INPUT, step="s", what="w") == 3
        assert len(pool.pids) == 1
        pool.wait_limit = 0.5
        slow = asyncio.create_task(pool.evaluate(SLOW, SLOW_INPUT, step="s", what="w"))
        await eventually(lambda: pool.idle == 0)
        with pytest.raises(TransientFailure) as caught:  # redelivered later, not parked, not stuck
            await pool.evaluate(FAST, FAST_INPUT, step="check", what="rule")
        assert "no CEL worker was free within 0.5s" in str(caught.value)
        assert caught.value.step == "check"
        with pytest.raises(ExpressionBudgetExceeded):
            await slow
    finally:
        await pool.aclose()


async def test_what_the_record_got_wrong_is_an_invalid_record_naming_the_field(workers: ExpressionWorkers) -> None:
    with pytest.raises(InvalidRecord) as caught:
        await workers.evaluate("input.lines.all(l, l.qty > 0)", {"input": {}}, step="check", what="rule")
    assert "no field 'lines'" in str(caught.value)
    assert caught.value.step == "check"
    assert workers.idle == 2  # the worker was fine; it goes back to work


def test_a_worker_dies_with_its_runner_even_mid_evaluation() -> None:
    """A runner killed with SIGKILL (OOM, node drain) takes its workers with it."""
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from onceflow_runner.adapters.expression_workers import ExpressionWorkers

        async def main():
            pool = ExpressionWorkers(workers=1, deadline=600)
            await pool.start()
            print(pool.pids[0], flush=True)
            await pool.evaluate({SLOW!r}, {{"input": {{"xs": list(range(200_000))}}}}, step="s", what="w")

        asyncio.run(main())
        """
    )
    runner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert runner.stdout is not None
        worker = int(runner.stdout.readline())
        assert not _gone(worker)
    finally:
        runner.kill()
        runner.wait()
        if runner.stdout is not None:
            runner.stdout.close()
    deadline = time.monotonic() + 20
    while not _gone(worker):
        assert time.monotonic() < deadline, f"worker {worker} outlived its runner"
        time.sleep(0.05)


async def test_a_record_past_its_expression_deadline_is_one_exception_and_the_others_flow(
    nats_server: NatsServer,
) -> None:
    rule = "input.lines.all(l, input.lines.exists_one(m, m.sku == l.sku))"
    h = await start(
        nats_server,
        rules=[{"expression": rule, "message": "a SKU appears twice; merge the lines"}],
        expression_timeout="8s",
        in_process=True,
    )
    try:
        runner = await h.start_runner()
        assert runner.expressions.pids, "the plan iterates, so the runner started its CEL workers"
        big = json.dumps({"key": "big", "name": "Big order", "lines": [{"sku": f"S{i}"} for i in range(6000)]})
        await h.send("big", big.encode())
        await eventually(lambda: runner.expressions.idle < len(runner.expressions.pids), within=30)

        small = [f"s{i}" for i in range(10)]
        for key in small:
            body = json.dumps({"key": key, "name": f"Customer {key}", "lines": [{"sku": "A"}, {"sku": "B"}]})
            await h.send(key, body.encode())
        await eventually(lambda: all(f"k/{k}/create" in h.erp.effects for k in small), within=30)
        async with httpx.AsyncClient(timeout=2) as client:
            health = await client.get(f"http://127.0.0.1:{runner.port}/healthz")
        assert health.status_code == 200
        early = await h.ledger()
        assert early.exceptions == [], "the small records waited for the large one"

        ledger = await h.settled(11, within=90)
        (exc,) = ledger.exceptions
        assert exc.data == big.encode()
        assert exc.headers["Onceflow-Reason"] == "ExpressionBudgetExceeded"
        assert exc.headers["Onceflow-Step"] == "check"
        assert "8s" in exc.headers["Onceflow-Error"]
        assert set(ledger.effects) == set(small)
    finally:
        await stop(h)


async def test_a_large_record_with_plain_rules_is_evaluated_off_the_loop_and_completes(
    nats_server: NatsServer,
) -> None:
    """No rule iterates, so no worker starts with the runner; 600 KB of small values start one."""
    h = await start(
        nats_server,
        rules=[{"expression": "input.key != ''", "message": "a key is needed"}],
        in_process=True,
    )
    try:
        runner = await h.start_runner()
        assert runner.expressions.pids == []
        big = json.dumps({"key": "wide", "name": "Wide record", "pad": [{}] * 200_000}).encode()
        assert len(big) > 500_000
        await h.send("wide", big)
        await h.send("narrow")
        ledger = await h.settled(2, within=60)
        assert set(ledger.effects) == {"wide", "narrow"}
        assert len(runner.expressions.pids) == 2  # started by the large record
    finally:
        await stop(h)
