"""Leader election decisions without a server: who may take the Lease, when, and what it says.

The real API server, two operator processes and a SIGKILL: tests/integration/test_operator_failover.py.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from onceflow_operator.clients.kube import KubeError
from onceflow_operator.controller import election
from onceflow_operator.controller.election import LeaderElection, LeaseTerms, lease_spec

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


class LeaseStore:
    """One Lease with optimistic concurrency, as the API server keeps it."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0

    async def get(self, *_: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.lease)

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        if self.lease is not None:
            raise KubeError(409, "exists")
        return self._store(obj)

    async def replace(self, obj: dict[str, Any]) -> dict[str, Any]:
        assert self.lease is not None
        if obj["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
            raise KubeError(409, "changed")
        return self._store(obj)

    def _store(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        self.lease = copy.deepcopy({**obj, "metadata": {**obj["metadata"], "resourceVersion": str(self.version)}})
        return copy.deepcopy(self.lease)


def test_a_take_over_counts_a_transition_and_a_renewal_keeps_the_acquire_time() -> None:
    first = lease_spec({}, "a", 15, NOW)
    assert (first["holderIdentity"], first["leaseTransitions"], first["leaseDurationSeconds"]) == ("a", 0, 15)
    renewed = lease_spec(first, "a", 15, NOW.replace(minute=1))
    assert renewed["acquireTime"] == first["acquireTime"] != renewed["renewTime"]
    taken = lease_spec(renewed, "b", 15, NOW.replace(minute=2))
    assert (taken["holderIdentity"], taken["leaseTransitions"]) == ("b", 1)


async def test_a_standby_waits_while_the_holder_renews_and_takes_over_once_it_stops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(election.time, "monotonic", lambda: clock[0])
    store = LeaseStore()
    a = LeaderElection(store, "ns", "lease", "a", LeaseTerms(duration=15))  # type: ignore[arg-type]
    b = LeaderElection(store, "ns", "lease", "b", LeaseTerms(duration=15))  # type: ignore[arg-type]
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    clock[0] += 10
    assert await a.try_acquire_or_renew()  # renewed: b sees a new renewTime, its wait starts again
    clock[0] += 10
    assert not await b.try_acquire_or_renew()
    clock[0] += 16  # a is gone: no renewal b has seen for longer than the lease's duration
    assert await b.try_acquire_or_renew()
    assert store.lease is not None
    assert store.lease["spec"]["holderIdentity"] == "b"
    assert not await a.try_acquire_or_renew()  # a, back, is a standby now


async def test_a_clean_stop_hands_the_lease_over_at_once() -> None:
    store = LeaseStore()
    a = LeaderElection(store, "ns", "lease", "a")  # type: ignore[arg-type]
    b = LeaderElection(store, "ns", "lease", "b")  # type: ignore[arg-type]
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    await a.release()
    assert await b.try_acquire_or_renew()
