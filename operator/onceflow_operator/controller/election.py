"""One active operator among replicas: a coordination.k8s.io Lease, held as client-go's leader election holds it.

Why a Lease and not Kopf's peering: peering pauses operators of *equal* priority against each
other (both stop), and a dead peer is noticed only when its peering record expires (a minute by
default). A Lease is what every Kubernetes controller uses: the holder renews it every few
seconds; a standby takes it over once it has seen no renewal for the lease's duration, measured
on its own clock (so clocks need not agree); a holder that stops cleanly hands it over at once.

The holder runs every handler; a standby runs none and writes nothing but its attempts to take
the Lease. A holder that cannot renew within the lease's duration stops its handlers (a standby
may already be acting) and exits, so two operators never reconcile at the same time for longer
than one renewal.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from onceflow_operator.clients.kube import KubeClient, KubeError

__all__ = ["LeaderElection", "LeaseTerms", "lease_spec"]

LEASE_API = "coordination.k8s.io/v1"
log = logging.getLogger("onceflow.election")


@dataclass(frozen=True)
class LeaseTerms:
    """client-go's defaults, shortened: failover after a crash within `duration` (+ one `retry`)."""

    duration: float = 15.0
    renew_every: float = 5.0
    retry: float = 2.0


def _micro(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_spec(current: dict[str, Any], identity: str, duration: float, now: datetime) -> dict[str, Any]:
    """The Lease's spec once `identity` holds it (pure): a take-over counts a transition and stamps acquireTime."""
    taking_over = current.get("holderIdentity") != identity
    return {
        "holderIdentity": identity,
        "leaseDurationSeconds": max(1, int(duration)),
        "acquireTime": _micro(now) if taking_over else current.get("acquireTime", _micro(now)),
        "renewTime": _micro(now),
        "leaseTransitions": int(current.get("leaseTransitions") or 0) + (1 if taking_over and current else 0),
    }


class LeaderElection:
    """Take, keep and hand over one Lease."""

    def __init__(
        self, kube: KubeClient, namespace: str, name: str, identity: str, terms: LeaseTerms | None = None
    ) -> None:
        self.kube, self.namespace, self.name, self.identity = kube, namespace, name, identity
        self.terms = terms or LeaseTerms()
        #: The holder and renewal last seen, and when (this process's monotonic clock).
        self._observed: tuple[str, str] = ("", "")
        self._observed_at = 0.0
        self.lost = False

    async def try_acquire_or_renew(self) -> bool:
        """One attempt; True when this process holds the Lease afterwards."""
        lease = await self.kube.get(LEASE_API, "Lease", self.namespace, self.name)
        now = datetime.now(UTC)
        if lease is None:
            body = {
                "apiVersion": LEASE_API,
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": lease_spec({}, self.identity, self.terms.duration, now),
            }
            try:
                await self.kube.create(body)
            except KubeError as exc:
                if exc.status == 409:
                    return False
                raise
            return True
        spec = lease.get("spec") or {}
        holder = str(spec.get("holderIdentity") or "")
        seen = (holder, str(spec.get("renewTime") or ""))
        if seen != self._observed:
            self._observed, self._observed_at = seen, time.monotonic()
        duration = float(spec.get("leaseDurationSeconds") or self.terms.duration)
        if holder and holder != self.identity and time.monotonic() - self._observed_at < duration:
            return False  # held, and renewed within its duration as far as this process has seen
        updated = {**lease, "spec": lease_spec(spec, self.identity, self.terms.duration, now)}
        try:
            await self.kube.replace(updated)
        except KubeError as exc:
            if exc.status == 409:  # someone else renewed or took it in between
                return False
            raise
        if holder != self.identity:
            log.warning("took the lease %s/%s over from %r", self.namespace, self.name, holder or "nobody")
        return True

    async def acquire(self) -> None:
        """Wait (as a standby) until this process holds the Lease."""
        while True:
            try:
                if await self.try_acquire_or_renew():
                    return
            except KubeError as exc:
                log.warning("could not read or take the lease: %s", exc)
            await asyncio.sleep(self.terms.retry)

    async def keep(self, stop: asyncio.Event) -> None:
        """Renew until `stop` is set; a renewal that does not succeed within the duration sets `lost` and `stop`."""
        last = time.monotonic()
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self.terms.renew_every)
                return
            except TimeoutError:
                pass
            while not stop.is_set():
                try:
                    if await self.try_acquire_or_renew():
                        last = time.monotonic()
                        break
                except KubeError as exc:
                    log.warning("could not renew the lease: %s", exc)
                if time.monotonic() - last >= self.terms.duration - self.terms.retry:
                    log.error("lost the lease %s/%s: stopping the handlers", self.namespace, self.name)
                    self.lost = True
                    stop.set()
                    return
                await asyncio.sleep(self.terms.retry)

    async def release(self) -> None:
        """Hand the Lease over at once (a clean stop): empty holder, as client-go's ReleaseOnCancel."""
        try:
            lease = await self.kube.get(LEASE_API, "Lease", self.namespace, self.name)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            spec = {**lease["spec"], "holderIdentity": "", "leaseDurationSeconds": 1}
            await self.kube.replace({**lease, "spec": spec})
        except KubeError as exc:
            log.warning("could not hand the lease over (a standby takes it when it expires): %s", exc)
