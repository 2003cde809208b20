"""Business keys on the wire and in the key store (pure): bounded, collision-free, and their state.

Why: a business key comes from the sender's data (CEL over the payload), so it can be 4 KB long,
hold a newline or non-ASCII letters. It travels into NATS subjects (the key store), JetStream
`Nats-Msg-Id`s, NATS headers and the outbound `Idempotency-Key`, each with its own limits; a
subject over the server's control line closes the connection *after* the effect happened.
So every key is passed through `bounded_key` once, where the runner computes it:

- a short, printable ASCII key is kept as it is (so keys stored before this existed still match);
- any other key becomes `<readable prefix>~sha256:<hex of the whole key>`. A kept key never holds
  `~sha256:` (such a key is hashed too), so two different keys never share a bounded form.

`bounded_id` does the same for a `Nats-Msg-Id` built from a key and other names. `KeyState` is
what the key store holds per business key: a claim with a lease while one record works on it,
or done once the record had its effect (see the runner's module docstring).
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Final, Literal, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from onceflow_runner.errors import WireFormatError

__all__ = [
    "HASH_MARK",
    "MAX_KEY_CHARS",
    "MAX_MSG_ID_CHARS",
    "KeyState",
    "bounded_id",
    "bounded_key",
    "kv_token",
]

#: Longest business key kept as it is; longer ones are hashed.
MAX_KEY_CHARS: Final = 200
#: Longest Nats-Msg-Id written; longer ones are hashed.
MAX_MSG_ID_CHARS: Final = 256
HASH_MARK: Final = "~sha256:"
_PREFIX_CHARS = 48
_UNSAFE = re.compile(r"[^A-Za-z0-9._/:=@+-]")


def _hashed(text: str, limit: int) -> str:
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    prefix = _UNSAFE.sub("_", text[: min(_PREFIX_CHARS, limit - len(HASH_MARK) - len(digest))])
    return f"{prefix}{HASH_MARK}{digest}"


def _kept(text: str, limit: int) -> bool:
    return len(text) <= limit and text.isascii() and text.isprintable() and HASH_MARK not in text


def bounded_key(key: str) -> str:
    """The business key as every header, message id and key-store entry carries it (see above)."""
    return key if _kept(key, MAX_KEY_CHARS) else _hashed(key, MAX_KEY_CHARS)


def bounded_id(msg_id: str) -> str:
    """A `Nats-Msg-Id` of at most MAX_MSG_ID_CHARS; different ids stay different (never truncated)."""
    return msg_id if _kept(msg_id, MAX_MSG_ID_CHARS) else _hashed(msg_id, MAX_MSG_ID_CHARS)


def kv_token(business_key: str) -> str:
    """One key-store token for a business key: base64url of its bounded form (at most 268 chars)."""
    return base64.urlsafe_b64encode(bounded_key(business_key).encode()).decode()


class KeyState(BaseModel):
    """What the key store holds for one business key of one Integration.

    `claimed`: a record works on it until `lease_until` (epoch seconds), renewed while it works.
    `done`: a record had its effect. Entries written before claims existed have no `state` and
    read as done; one of those whose outcome is `filtered` never had an effect and reads as free.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    state: Literal["claimed", "done"] = "done"
    outcome: str = ""
    revision: str = ""
    at: float = 0.0
    owner: str = ""
    lease_until: float = 0.0

    @property
    def is_done(self) -> bool:
        """True when the key had its effect: later records with it are duplicates."""
        return self.state == "done" and self.outcome != "filtered"

    def lease_left(self, now: float) -> float:
        """Seconds left on a claim's lease (0 when it expired, or for a done key)."""
        return max(0.0, self.lease_until - now) if self.state == "claimed" else 0.0

    def to_wire(self) -> bytes:
        return self.model_dump_json(exclude_defaults=True).encode()

    @classmethod
    def from_wire(cls, data: bytes | None) -> Self:
        """Read an entry; WireFormatError when it is not one."""
        try:
            return cls.model_validate_json(data or b"{}")
        except ValidationError as exc:
            raise WireFormatError(f"not a valid KeyState: {exc.errors(include_url=False)[0]['msg']}") from None
