"""Which runner lane owns which record during a canary rollout (pure).

An Integration has up to two lanes, each a durable consumer on the same stream and filter:
`main` (the stable revision) and `canary`. During a rollout both lanes see every record; a
record belongs to exactly one of them, decided by its stream sequence alone:

    owner(seq) = canary  if bucket(seq) < weight in force at seq  else  main

`bucket` spreads sequences evenly over 0..99. The weight in force at a sequence comes from
*split markers*: small messages the operator publishes into the same stream on the
Integration's rollout subject. A marker published at sequence M sets the weight for every
record with a higher sequence; records before the first marker belong to `main`.

Because a marker is ordered with the records in the stream, both lanes judge a record by the
same weight however far apart their backlogs are: no record is taken by both, none by neither.
A runner re-reads the newest marker after every fetch; any marker that could apply to a record
it holds was stored before that read, so its table is complete for the batch. The lane that
does not own a record acks it without effect. A marker is a `SplitMarker`: its body (the
earlier entries and its weight) and its `Onceflow-Rollout: split` header.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from onceflow_runner.contract.headers import ROLLOUT
from onceflow_runner.errors import WireFormatError

__all__ = ["SPLIT_MARKER_VALUE", "Lane", "SplitMarker", "SplitTable", "bucket", "owns"]

Lane = Literal["main", "canary"]
#: The `Onceflow-Rollout` header value of a split marker.
SPLIT_MARKER_VALUE: Final = "split"


class SplitMarker(BaseModel):
    """A split marker's body: the table's earlier entries and the weight it sets (its sequence is its own).

    Written by the operator (`natsio.publish_split`), read by both lanes' runners and the operator.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    previous: tuple[tuple[int, int], ...] = ()
    weight: int

    @staticmethod
    def headers() -> dict[str, str]:
        """What tells a runner a message is a marker, not a record."""
        return {ROLLOUT: SPLIT_MARKER_VALUE}

    @staticmethod
    def is_marker(headers: Mapping[str, str] | None) -> bool:
        """True for a split marker's headers."""
        return bool((headers or {}).get(ROLLOUT))

    def to_wire(self) -> bytes:
        return json.dumps({"previous": [list(e) for e in self.previous], "weight": self.weight}).encode()

    @classmethod
    def from_wire(cls, data: bytes) -> SplitMarker:
        """Read a marker body; WireFormatError when it is not one."""
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"]) or "(top level)"
            raise WireFormatError(f"not a valid SplitMarker: {where}: {first['msg']}") from None


def bucket(sequence: int) -> int:
    """A stream sequence's bucket, 0..99, uniform and the same in every process."""
    digest = hashlib.blake2b(sequence.to_bytes(8, "big"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 100


@dataclass(frozen=True)
class SplitTable:
    """(marker sequence, canary weight) in stream order."""

    entries: tuple[tuple[int, int], ...] = ()

    def weight_at(self, sequence: int) -> int | None:
        """The canary weight in force for a record at `sequence`; None before the first marker."""
        weight = None
        for start, value in self.entries:
            if start >= sequence:
                break
            weight = value
        return weight

    def then(self, sequence: int, weight: int) -> SplitTable:
        """The table with one more marker."""
        return SplitTable((*self.entries, (sequence, weight)))

    def marker_payload(self, weight: int) -> bytes:
        """The body of the next marker: the earlier entries plus its weight (its sequence is its own)."""
        return SplitMarker(previous=self.entries, weight=weight).to_wire()

    def compacted(self, ack_floor: int) -> SplitTable:
        """Drop markers that only govern records at or below `ack_floor` (all settled, never judged again)."""
        keep = [
            entry
            for i, entry in enumerate(self.entries)
            if i == len(self.entries) - 1 or self.entries[i + 1][0] > ack_floor
        ]
        return SplitTable(tuple(keep))

    @classmethod
    def from_marker(cls, sequence: int, payload: bytes) -> SplitTable:
        marker = SplitMarker.from_wire(payload)
        return cls((*marker.previous, (sequence, marker.weight)))

    @property
    def last_sequence(self) -> int:
        return self.entries[-1][0] if self.entries else 0

    @property
    def weight(self) -> int:
        return self.entries[-1][1] if self.entries else 0


def owns(lane: Lane, sequence: int, table: SplitTable | None) -> bool:
    """True when the record at `sequence` is this lane's to process."""
    weight = table.weight_at(sequence) if table is not None else None
    if weight is None:
        return lane == "main"
    in_canary = bucket(sequence) < weight
    return in_canary if lane == "canary" else not in_canary
