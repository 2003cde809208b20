"""The key store: one JetStream KV entry per business key of an Integration, claimed then done.

Why a module of its own: it is the one place where "one effect per business key" is decided
between runner processes, with JetStream's compare-and-set on the key's last sequence (the KV
revision), and it keeps `natsio` small enough to read. It talks only to the namespace's KV bucket.

- `claim`: create-if-absent in one round trip (a fresh key, the common path). When the key
  exists it is read: done -> a duplicate; claimed with time left on its lease -> busy; a lease
  that expired, a released claim or an old `filtered` mark -> taken over with compare-and-set.
- `renew`: the holder extends its lease while it works (compare-and-set on its revision).
- `complete`: the record had its effect; the key is done for good.
- `release`: the record ended without an effect (filtered, parked, retried): the key is free
  again, deleted with compare-and-set so that only the holder's own claim is removed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final, Literal

from nats.js import JetStreamContext
from nats.js.errors import APIError, NotFoundError

from onceflow_runner.adapters.pubacks import AckedPublisher, header_block
from onceflow_runner.contract import headers as h
from onceflow_runner.contract import subjects
from onceflow_runner.contract.keys import KeyState, kv_token
from onceflow_runner.errors import WireFormatError

__all__ = ["Claim", "KeyStore", "kv_key"]

#: JetStream's "wrong last sequence" error codes: a compare-and-set lost.
_WRONG_LAST_SEQUENCE = {10071, 10164}
_FREED = {h.KV_DELETE, h.KV_PURGE}
#: The headers of a fresh claim (create-if-absent), the settle path's first write: encoded once.
_CREATE: Final = header_block({h.EXPECTED_LAST_SUBJECT_SEQUENCE: "0"})


def kv_key(integration: str, business_key: str) -> str:
    """KV keys allow few characters: the (bounded) business key, base64url-encoded, under its Integration."""
    return f"{integration}.{kv_token(business_key)}"


@dataclass
class Claim:
    """What `KeyStore.claim` found: the key is ours (`revision` for compare-and-set), done, or busy."""

    status: Literal["claimed", "done", "busy", "released"]
    key: str
    revision: int = 0
    #: For a busy key: seconds left on the holder's lease.
    wait: float = 0.0


class KeyStore:
    """Claims and done marks of one Integration's business keys in the namespace's KV bucket."""

    def __init__(
        self,
        js: JetStreamContext,
        bucket: str,
        integration: str,
        revision: str,
        acks: AckedPublisher,
    ) -> None:
        self.js, self.bucket, self.integration, self.revision = js, bucket, integration, revision
        self.stream = subjects.kv_stream(bucket)
        #: Where claims and done marks are written (the settle path's writes: see `pubacks`).
        self.acks = acks

    def _subject(self, key: str) -> str:
        return subjects.kv_subject(self.bucket, key)

    async def _put(self, key: str, value: bytes, *, last: int | None, delete: bool = False) -> int | None:
        """Store (or delete) the key; with `last`, only if its last revision is `last`. None: the CAS lost."""
        headers = {h.KV_OPERATION: h.KV_DELETE} if delete else {}
        if last is not None:
            headers[h.EXPECTED_LAST_SUBJECT_SEQUENCE] = str(last)
        try:
            if last == 0 and not delete:
                stored = await self.acks.publish_block(self._subject(key), value, _CREATE)
            else:
                stored = await self.acks.publish(self._subject(key), value, headers or None)
        except APIError as exc:
            if exc.err_code in _WRONG_LAST_SEQUENCE:
                return None
            raise
        return stored.seq

    async def state(self, business_key: str) -> tuple[KeyState | None, int]:
        """The key's entry (None when absent or freed) and its revision (0 when absent)."""
        try:
            stored = await self.js.get_msg(self.stream, subject=self._subject(kv_key(self.integration, business_key)))
        except NotFoundError:
            return None, 0
        revision = int(stored.seq or 0)
        if (stored.headers or {}).get(h.KV_OPERATION) in _FREED:
            return None, revision
        try:
            return KeyState.from_wire(stored.data), revision
        except WireFormatError:
            return None, revision  # not ours to read: taken over like a released claim

    async def claim(self, business_key: str, *, owner: str, lease: float) -> Claim:
        """Claim the key for one record for `lease` seconds, or say it is done or busy (see above)."""
        key = kv_key(self.integration, business_key)
        now = time.time()
        held = KeyState(state="claimed", owner=owner, revision=self.revision, at=now, lease_until=now + lease)
        revision = await self._put(key, held.to_wire(), last=0)
        if revision is not None:
            return Claim("claimed", key, revision)
        found, last = await self.state(business_key)
        if found is not None and found.is_done:
            return Claim("done", key)
        if found is not None and found.lease_left(now) > 0:
            return Claim("busy", key, wait=found.lease_left(now))
        revision = await self._put(key, held.to_wire(), last=last)
        # Lost the take-over to another record: it holds the key now.
        return Claim("claimed", key, revision) if revision is not None else Claim("busy", key, wait=lease)

    async def renew(self, claim: Claim, *, owner: str, lease: float) -> bool:
        """Extend the lease of a claim we hold; False when another record took the key over."""
        now = time.time()
        held = KeyState(state="claimed", owner=owner, revision=self.revision, at=now, lease_until=now + lease)
        revision = await self._put(claim.key, held.to_wire(), last=claim.revision)
        if revision is None:
            return False
        claim.revision = revision
        return True

    async def complete(self, claim: Claim, outcome: str) -> None:
        """The record had its effect: the key is done (whoever holds it now, an effect is an effect)."""
        done = KeyState(state="done", outcome=outcome, revision=self.revision, at=time.time())
        await self._put(claim.key, done.to_wire(), last=None)
        claim.status = "done"

    async def release(self, claim: Claim) -> None:
        """Free a key we hold without an effect; a claim taken over by another record is left alone."""
        if claim.status == "claimed":
            await self._put(claim.key, b"", last=claim.revision, delete=True)
            claim.status = "released"
