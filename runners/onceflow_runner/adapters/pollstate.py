"""A schedule trigger's state in JetStream KV: its watermark, and the lease that makes one poller.

Why a module of its own: with several runner replicas (and a canary lane) every process of an
Integration could poll; the lease decides which one does, between processes, with JetStream's
compare-and-set on a key's last revision, as `keystore` decides one effect per business key.

- The lease (`<integration>.lease`) names its owner and an expiry. The holder renews it with
  compare-and-set before each poll and while polling; another process takes it over only after
  it expired (the holder was killed), also with compare-and-set, so two cannot both win.
- The watermark (`<integration>.watermark`) is written with compare-and-set on the revision read
  at the start of the poll: a poller that lost its lease mid-poll (stalled past the expiry) and
  finishes late cannot move the watermark over the new holder's. Even then nothing is doubled:
  what both published carries the same `Nats-Msg-Id` and business keys.

The bucket (`onceflow-poll-<ns>`) keeps one revision per key and no TTL: a watermark must not
expire, or an idle source would be read again from its first-run start.
"""

from __future__ import annotations

import time

from nats.js import JetStreamContext
from nats.js.errors import APIError, NotFoundError

from onceflow_runner.adapters.natsio import bind_bucket as natsio_bind_bucket
from onceflow_runner.contract import headers as h
from onceflow_runner.contract import subjects
from onceflow_runner.contract.messages import PollLease, PollWatermark
from onceflow_runner.errors import WireFormatError

__all__ = ["PollState"]

_WRONG_LAST_SEQUENCE = {10071, 10164}
_FREED = {h.KV_DELETE, h.KV_PURGE}


class PollState:
    """The lease and watermark of one Integration's schedule trigger."""

    def __init__(self, js: JetStreamContext, bucket: str, integration: str, owner: str) -> None:
        self.js, self.bucket, self.owner = js, bucket, owner
        self.stream = subjects.kv_stream(bucket)
        self.lease_key = subjects.poll_lease_key(integration)
        self.watermark_key = subjects.poll_watermark_key(integration)
        self._lease_revision = 0

    async def ensure_bucket(self) -> None:
        """Bind the namespace's poll bucket (the operator creates it; this waits until it exists)."""
        await natsio_bind_bucket(self.js, self.bucket)

    async def _read(self, key: str) -> tuple[bytes | None, int]:
        try:
            stored = await self.js.get_msg(self.stream, subject=subjects.kv_subject(self.bucket, key))
        except NotFoundError:
            return None, 0
        if (stored.headers or {}).get(h.KV_OPERATION) in _FREED:
            return None, int(stored.seq or 0)
        return stored.data or b"", int(stored.seq or 0)

    async def _put(self, key: str, value: bytes, *, last: int, delete: bool = False) -> int | None:
        headers = {h.EXPECTED_LAST_SUBJECT_SEQUENCE: str(last)}
        if delete:
            headers[h.KV_OPERATION] = h.KV_DELETE
        try:
            ack = await self.js.publish(subjects.kv_subject(self.bucket, key), value, headers=headers)
        except APIError as exc:
            if exc.err_code in _WRONG_LAST_SEQUENCE:
                return None
            raise
        return int(ack.seq)

    async def hold_lease(self, seconds: float) -> bool:
        """Take or renew the lease for `seconds`; False when another live process holds it."""
        data, revision = await self._read(self.lease_key)
        now = time.time()
        if data is not None and revision != self._lease_revision:
            try:
                held = PollLease.from_wire(data)
            except WireFormatError:
                held = None
            if held is not None and held.owner != self.owner and held.until > now:
                return False
        mine = PollLease(owner=self.owner, until=now + seconds).to_wire()
        written = await self._put(self.lease_key, mine, last=revision)
        self._lease_revision = written or 0
        return written is not None

    async def release_lease(self) -> None:
        """Give the lease up (a graceful stop), so another replica polls at its next firing."""
        if self._lease_revision:
            await self._put(self.lease_key, b"", last=self._lease_revision, delete=True)
            self._lease_revision = 0

    async def watermark(self) -> tuple[PollWatermark | None, int]:
        """The stored watermark (None before the first poll stored one) and its revision for `advance`."""
        data, revision = await self._read(self.watermark_key)
        if not data:
            return None, revision
        try:
            return PollWatermark.from_wire(data), revision
        except WireFormatError:
            return None, revision

    async def advance(self, value: PollWatermark, *, last: int) -> bool:
        """Store a new watermark if nobody stored one since revision `last`; False when another poller did."""
        return await self._put(self.watermark_key, value.to_wire(), last=last) is not None
