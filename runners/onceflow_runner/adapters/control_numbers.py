"""X12 control numbers (ISA13, GS06, ST02) allocated atomically and persistently per partner.

Why JetStream KV with compare-and-set: every runner replica, and every restart, must draw from
one sequence per partner, and a number once handed out must never come back (partners reject
duplicate control numbers, and a reused ISA13 can make a partner drop a real document as a
duplicate). Each allocation reads the partner's counter, adds what it needs and writes back
only if nobody wrote in between (the KV revision it read); on a lost race it reads again. A
number is allocated before the document is written, so a crash in between leaves a gap, never
a reuse: gaps are visible as allocations without a `sent` entry (`record_sent`).

The bucket has no TTL (unlike the business-key bucket, whose keys expire after 90 days): a
counter that expired would start again at 1. ISA13 and GS06 wrap from 999999999 to 1, as X12
allows; ST02 is unique within its group and drawn from the same counter.

Everything else in the bucket is history that would otherwise grow for ever (a partner sending
a thousand files a day leaves a key per file, per document and per number): the notes of what
was sent, the files taken in, the documents numbered and what the partner's 997s said. Each is
written with a per-message TTL (`HISTORY_TTL`, JetStream 2.11+), and an entry no longer needed
is purged with a marker that expires too, so the bucket keeps about a year of history and the
counters for ever.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.errors import BadRequestError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from onceflow_runner.adapters.natsio import bind_bucket
from onceflow_runner.contract.keys import kv_token
from onceflow_runner.contract.subjects import edi_bucket

__all__ = ["HISTORY_TTL", "MAX_CONTROL", "Allocation", "ControlNumberStore", "edi_bucket"]

MAX_CONTROL = 999_999_999
#: How long history entries stay (seconds): past a year of audits and chargeback disputes, and
#: past the business-key bucket's 90 days, so a file a partner sends again is still known.
HISTORY_TTL = 400 * 86_400
#: How long the marker of a purged entry stays: long enough for a lagging watcher to see it.
MARKER_TTL = 86_400
#: Compare-and-set attempts before an allocation gives up (only under extreme contention).
ATTEMPTS = 100


def _advance(last: int, count: int) -> list[int]:
    """The `count` numbers after `last`, wrapping from MAX_CONTROL to 1."""
    return [(last + i - 1) % MAX_CONTROL + 1 for i in range(1, count + 1)]


@dataclass(frozen=True)
class Allocation:
    """Numbers drawn in one compare-and-set: interchanges, groups and sets, and the KV revision written."""

    interchanges: tuple[int, ...]
    groups: tuple[int, ...]
    sets: tuple[int, ...]
    revision: int


class ControlNumberStore:
    """One namespace's counters, one KV key per partner (the Connector's name)."""

    def __init__(self, kv: KeyValue, js: JetStreamContext, bucket: str, *, history_ttl: float = HISTORY_TTL) -> None:
        self.kv, self.js, self.history_ttl = kv, js, history_ttl
        self._prefix = f"$KV.{bucket}."

    @classmethod
    async def open(
        cls, js: JetStreamContext, namespace: str, *, history_ttl: float = HISTORY_TTL
    ) -> ControlNumberStore:
        """Bind the namespace's EDI bucket (the operator creates it; this waits until it exists)."""
        bucket = edi_bucket(namespace)
        return cls(await bind_bucket(js, bucket), js, bucket, history_ttl=history_ttl)

    async def keep(self, key: str, value: bytes, *, last: int | None = None) -> int:
        """Write a history entry that expires after `history_ttl`; with `last`, only over that revision.

        Returns the entry's revision. KeyWrongLastSequenceError when `last` is no longer the latest.
        """
        headers = {} if last is None else {"Nats-Expected-Last-Subject-Sequence": str(last)}
        try:
            ack = await self.js.publish(self._prefix + key, value, headers=headers or None, msg_ttl=self.history_ttl)
        except BadRequestError as exc:
            if exc.err_code in (10071, 10164):  # the entry changed since `last` was read
                raise KeyWrongLastSequenceError(description=exc.description) from None
            raise
        return int(ack.seq)

    async def keep_new(self, key: str, value: bytes) -> int:
        """Create a history entry (expiring as `keep`'s); KeyWrongLastSequenceError when it exists."""
        return await self.kv.create(key, value, msg_ttl=self.history_ttl)

    async def forget(self, key: str) -> None:
        """Remove an entry: a purge, whose marker expires after a day (a delete's would stay for ever)."""
        await self.kv.purge(key, msg_ttl=MARKER_TTL)

    @staticmethod
    def counter_key(partner: str) -> str:
        return f"counter.{kv_token(partner)}"

    async def current(self, partner: str) -> tuple[dict[str, int], int]:
        """The partner's last numbers (0 when none yet) and the KV revision (0 when absent)."""
        try:
            entry = await self.kv.get(self.counter_key(partner))
        except KeyNotFoundError:
            return {"interchange": 0, "group": 0, "set": 0}, 0
        value = json.loads(entry.value or b"{}")
        return {name: int(value.get(name, 0)) for name in ("interchange", "group", "set")}, int(entry.revision or 0)

    async def allocate(self, partner: str, *, interchanges: int = 1, groups: int = 1, sets: int = 1) -> Allocation:
        """Draw numbers for one outbound interchange; never the same number twice for a partner."""
        key = self.counter_key(partner)
        for _ in range(ATTEMPTS):
            last, revision = await self.current(partner)
            drawn = {
                name: _advance(last[name], count)
                for name, count in (("interchange", interchanges), ("group", groups), ("set", sets))
            }
            value = {name: (numbers[-1] if numbers else last[name]) for name, numbers in drawn.items()}
            value["at"] = int(time.time())
            payload = json.dumps(value).encode()
            try:
                if revision == 0:
                    written = await self.kv.create(key, payload)
                else:
                    written = await self.kv.update(key, payload, last=revision)
            except (KeyWrongLastSequenceError, BadRequestError):
                continue  # another allocator wrote first: read again
            return Allocation(tuple(drawn["interchange"]), tuple(drawn["group"]), tuple(drawn["set"]), written)
        raise RuntimeError(f"control numbers for partner {partner!r}: {ATTEMPTS} compare-and-set attempts lost")

    async def record_sent(self, partner: str, interchange: int, document: dict[str, object]) -> None:
        """Note what an interchange number was used for; a number without this note is a visible gap."""
        await self.keep(f"sent.{kv_token(partner)}.{interchange:09d}", json.dumps(document).encode())

    async def sent(self, partner: str, interchange: int) -> dict[str, object] | None:
        try:
            entry = await self.kv.get(f"sent.{kv_token(partner)}.{interchange:09d}")
        except KeyNotFoundError:
            return None
        value = json.loads(entry.value or b"{}")
        return value if isinstance(value, dict) else None
