"""EDI inbound against a real SFTP server (asyncssh's, on 127.0.0.1) and a real nats-server.

The server serves a temporary folder over the real SSH/SFTP protocol with password login and its
own host key; the poller checks that key against known_hosts from a mounted-Secret layout.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import nats
import pytest

from onceflow_operator.clients import topology
from onceflow_operator.dev.natsserver import NatsServer
from onceflow_runner.adapters.control_numbers import ControlNumberStore
from onceflow_runner.adapters.sftp import SftpUnavailable
from onceflow_runner.contract.edi import EdiPartnerPlan
from onceflow_runner.contract.subjects import IN_STREAM, inbound_prefix
from onceflow_runner.edi.poller import EdiInbound, claimed_name
from tests.integration.edi_harness import SftpServer, secrets_for, sftp
from tests.integration.scenario import eventually
from tests.unit.edi_files import partner_997, partner_plan, two_interchanges_one_bad_set

__all__ = ["sftp"]  # the fixture, imported for pytest


@dataclass
class Setup:
    plan: EdiPartnerPlan
    secrets: Path
    server: SftpServer
    nc: nats.NATS

    def poller(self, owner: str, **kwargs: object) -> EdiInbound:
        return EdiInbound(self.plan, nc=self.nc, secrets_dir=self.secrets, owner=owner, **kwargs)  # type: ignore[arg-type]

    @property
    def pickup(self) -> Path:
        return self.server.root / "to-onceflow"

    @property
    def drop(self) -> Path:
        return self.server.root / "from-onceflow"

    async def counts(self) -> dict[str, int]:
        js = self.nc.jetstream()
        prefix = inbound_prefix(self.plan.namespace, self.plan.connector)
        info = await js.stream_info(IN_STREAM, subjects_filter=f"{prefix}.>")
        return {k.removeprefix(prefix + "."): v for k, v in (info.state.subjects or {}).items()}


@pytest.fixture
async def setup(sftp: SftpServer, tmp_path: Path, nats_server: NatsServer) -> AsyncIterator[Setup]:
    namespace = f"edi{uuid.uuid4().hex[:8]}"
    nc = await nats.connect(nats_server.url)
    # The operator's part (pollers only bind): the streams and the namespace's buckets.
    await topology.ensure_streams(nc.jetstream())
    await topology.ensure_buckets(nc.jetstream(), namespace)
    found = Setup(partner_plan(namespace, port=sftp.port), secrets_for(tmp_path, sftp), sftp, nc)
    found.pickup.mkdir()
    yield found
    await nc.drain()


async def drop_file(setup: Setup, name: str, data: bytes) -> None:
    (setup.pickup / name).write_bytes(data)


async def test_a_file_of_two_interchanges_becomes_five_orders_one_rejection_and_997s(setup: Setup) -> None:
    await drop_file(setup, "orders-1.x12", two_interchanges_one_bad_set())
    poller = setup.poller("r1")
    assert await poller.poll_once() == 0  # first listing: not yet known to be complete
    assert await poller.poll_once() == 1
    assert await setup.counts() == {"file": 1, "850": 5, "rejected.850": 1}
    acks = sorted(p.read_text() for p in setup.drop.iterdir())
    assert len(acks) == 2
    assert sum(a.count("AK5*A~") for a in acks) == 5
    assert sum(a.count("AK5*R*5~") for a in acks) == 1
    assert not list(setup.pickup.glob("*.x12"))
    assert [p.name.endswith("_orders-1.x12") for p in (setup.pickup / "done").iterdir()] == [True]
    # The same file dropped again (a partner's resend) has no second effect.
    await drop_file(setup, "orders-1-again.x12", two_interchanges_one_bad_set())
    await poller.poll_once()
    assert await poller.poll_once() == 1
    assert await setup.counts() == {"file": 1, "850": 5, "rejected.850": 1}
    assert len(list(setup.drop.iterdir())) == 2
    assert len(list((setup.pickup / "done").iterdir())) == 2


async def test_a_partners_997_becomes_a_record_and_gets_no_997_back(setup: Setup) -> None:
    await drop_file(setup, "997-from-acme.x12", partner_997(500))
    poller = setup.poller("r1")
    await poller.poll_once()
    assert await poller.poll_once() == 1
    assert await setup.counts() == {"file": 1, "997": 1}
    assert not setup.drop.exists() or not list(setup.drop.iterdir())


async def test_a_file_still_being_written_is_taken_only_when_complete(setup: Setup) -> None:
    data = two_interchanges_one_bad_set()
    await drop_file(setup, "growing.x12", data[:300])
    poller = setup.poller("r1")
    assert await poller.poll_once() == 0
    with (setup.pickup / "growing.x12").open("ab") as handle:
        handle.write(data[300:])
    assert await poller.poll_once() == 0  # it changed since the last listing
    await drop_file(setup, "other.x12.tmp", data)  # a partner's temporary name is never taken
    assert await poller.poll_once() == 1
    assert await poller.poll_once() == 0
    assert await setup.counts() == {"file": 1, "850": 5, "rejected.850": 1}
    assert (setup.pickup / "other.x12.tmp").exists()


async def test_two_pollers_claim_each_file_once(setup: Setup) -> None:
    for n in range(6):
        await drop_file(setup, f"batch-{n}.x12", two_interchanges_one_bad_set(base=10 * n + 1))
    first, second = setup.poller("r1"), setup.poller("r2")
    await asyncio.gather(first.poll_once(), second.poll_once())
    await asyncio.gather(first.poll_once(), second.poll_once())
    taken = first.processed + second.processed
    assert sorted(taken) == [f"batch-{n}.x12" for n in range(6)]
    assert await setup.counts() == {"file": 6, "850": 30, "rejected.850": 6}
    assert len(list(setup.drop.iterdir())) == 12


class Killed(Exception):
    pass


async def test_a_poller_killed_between_claim_and_publish_leaves_the_file_to_be_reclaimed(setup: Setup) -> None:
    await drop_file(setup, "orders.x12", two_interchanges_one_bad_set())
    doomed = setup.poller("r1")

    async def die(*_: object) -> None:
        raise Killed

    doomed._publish = die  # type: ignore[method-assign]
    await doomed.poll_once()
    with pytest.raises(Killed):
        await doomed.poll_once()
    claimed = list((setup.pickup / ".claimed").iterdir())
    assert len(claimed) == 1
    assert claimed[0].name.endswith("~r1~orders.x12")
    survivor = setup.poller("r2")
    assert await survivor.poll_once() == 0  # the lease has time left: not taken
    later = setup.poller("r3", clock=lambda: __import__("time").time() + 120)
    assert await later.poll_once() == 1
    assert await later.poll_once() == 0
    assert await setup.counts() == {"file": 1, "850": 5, "rejected.850": 1}
    assert not list((setup.pickup / ".claimed").iterdir())
    assert claimed_name("x", "r", 1)  # the name format is the module's


async def test_sftp_down_is_retried_and_nothing_is_lost(setup: Setup) -> None:
    await drop_file(setup, "orders.x12", two_interchanges_one_bad_set())
    poller = setup.poller("r1")
    await poller.poll_once()
    await setup.server.stop()
    with pytest.raises(SftpUnavailable, match=r"127\.0\.0\.1"):
        await poller.poll_once()
    stop = asyncio.Event()
    running = asyncio.create_task(poller.run(stop))
    await asyncio.sleep(0.5)  # the loop keeps retrying while the server is down
    assert not running.done()
    await setup.server.start()
    await asyncio.wait_for(poller.finished.wait(), timeout=20)
    stop.set()
    await running
    assert await setup.counts() == {"file": 1, "850": 5, "rejected.850": 1}


async def test_a_broker_failure_mid_pass_is_retried_after_the_lease_with_one_effect(setup: Setup) -> None:
    await drop_file(setup, "orders.x12", two_interchanges_one_bad_set())
    offset = [0.0]
    poller = setup.poller("r1", clock=lambda: time.time() + offset[0])
    publish_sets = poller._publish_sets
    failures = [nats.errors.TimeoutError()]

    async def flaky(*args: Any) -> None:
        if failures:
            raise failures.pop()
        await publish_sets(*args)

    poller._publish_sets = flaky  # type: ignore[method-assign]
    stop = asyncio.Event()
    running = asyncio.create_task(poller.run(stop))
    reason = await eventually(lambda: poller.last_error, within=20)
    assert "TimeoutError" in reason
    assert not running.done()
    offset[0] = 120.0  # past the claim's lease: the next pass takes the file again
    await asyncio.wait_for(poller.finished.wait(), timeout=20)
    stop.set()
    await running
    assert await setup.counts() == {"file": 1, "850": 5, "rejected.850": 1}
    assert len(list(setup.drop.iterdir())) == 2


async def test_an_unknown_host_key_is_refused(setup: Setup, tmp_path: Path) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519")
    secrets = secrets_for(tmp_path / "wrong", setup.server, other)
    poller = EdiInbound(setup.plan, nc=setup.nc, secrets_dir=secrets, owner="r1")
    with pytest.raises(SftpUnavailable, match=r"host key not in sftp\.knownHosts"):
        await poller.poll_once()


async def test_two_allocators_never_hand_out_the_same_control_number(setup: Setup) -> None:
    other = await nats.connect(setup.nc.connected_url.geturl() if setup.nc.connected_url else "")
    try:
        stores = [
            await ControlNumberStore.open(setup.nc.jetstream(), setup.plan.namespace),
            await ControlNumberStore.open(other.jetstream(), setup.plan.namespace),
        ]
        drawn = await asyncio.gather(
            *(stores[n % 2].allocate("acme-edi", interchanges=1, groups=1, sets=2) for n in range(40))
        )
    finally:
        await other.drain()
    interchanges = [number for a in drawn for number in a.interchanges]
    sets = [number for a in drawn for number in a.sets]
    assert sorted(interchanges) == list(range(1, 41))
    assert sorted(sets) == list(range(1, 81))
    # A restart (a fresh store) continues after the last number.
    fresh = await ControlNumberStore.open(setup.nc.jetstream(), setup.plan.namespace)
    assert (await fresh.allocate("acme-edi")).interchanges == (41,)
