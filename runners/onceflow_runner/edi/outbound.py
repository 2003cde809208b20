"""The EDI outbound side of a partner's pod: documents sent once, 997s matched, silence made visible.

Why in the partner's EDI pod and not in the Integration's runner: the pod already holds the
partner's SFTP credentials, host key, envelope, egress rule and the control number allocator; a
`sendEdi` step only checks its record and hands it over on
`onceflow.<ns>.in._edi_outbound.<connector>.<set>` (JetStream, keyed by business key and step),
so every Integration that sends to a partner shares one sender and one number sequence.

Sending one document (`send`), so that a redelivery never sends a second document with a new
control number:

1. The business key's entry `out.<partner>.<hash>` in the EDI KV bucket says whether it was sent
   already (nothing to do), or built and numbered but maybe not uploaded (upload the same bytes
   again under the same name).
2. Otherwise the document is built and checked with pyx12 against its set's map before any
   number is drawn (a document pyx12 refuses is an exception and uses no number).
3. ISA13/GS06/ST02 are drawn from the allocator, the document built with them and stored in the
   entry (compare-and-set: of two replicas racing, one entry wins and both upload its bytes).
4. It is written to the partner's drop folder under a temporary name and renamed
   (`SftpSession.write`), noted as `sent.<partner>.<ISA13>`, and awaited under
   `awaiting.<partner>.<GS06>` with its deadline; then the entry is marked sent.

A partner's 997 (`match`) is read group by group (AK1 names our GS06): the awaited document is
marked acknowledged; a set the 997 rejects becomes an exception a person sees. `overdue` turns
each document past its `acknowledgmentDeadline` without a 997 into an exception, once.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import BadRequestError, KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError

from onceflow_runner.adapters.control_numbers import ControlNumberStore
from onceflow_runner.adapters.sftp import SftpSession
from onceflow_runner.contract import headers as h
from onceflow_runner.contract.edi import EdiPartnerPlan
from onceflow_runner.contract.keys import bounded_id, kv_token
from onceflow_runner.contract.messages import ParkedRecord
from onceflow_runner.contract.subjects import exceptions_subject
from onceflow_runner.errors import InvalidRecord
from onceflow_runner.payloads.edi.ack import ControlNumbers, GroupAcknowledgment
from onceflow_runner.payloads.edi.outbound import build_document, document_findings

__all__ = ["EdiOutbound", "SentDocument"]

log = logging.getLogger("onceflow.edi")
#: Control numbers the pre-check builds with: numbers do not change what pyx12 judges.
_TRIAL = ControlNumbers(1, 1, (1,))


class SentDocument(dict[str, Any]):
    """The KV entry of one sent document: kind, business key, numbers, state, bytes (base64)."""

    @property
    def data(self) -> bytes:
        return base64.b64decode(str(self["document"]))

    @property
    def file_name(self) -> str:
        return f"{self['kind']}_{self['connector']}_{int(self['interchange']):09d}.x12"


class EdiOutbound:
    """One partner's outbound documents and the 997s that answer them."""

    def __init__(
        self,
        plan: EdiPartnerPlan,
        *,
        js: JetStreamContext,
        numbers: ControlNumberStore,
        clock: Callable[[], float],
    ) -> None:
        self.plan, self.js, self.numbers, self.clock = plan, js, numbers, clock
        self.partner = kv_token(plan.connector)

    # -- keys ------------------------------------------------------------------------------------------

    def _out_key(self, business_key: str) -> str:
        return f"out.{self.partner}.{hashlib.sha256(business_key.encode()).hexdigest()[:40]}"

    def _awaiting_key(self, group: int) -> str:
        return f"awaiting.{self.partner}.{group:09d}"

    async def _get(self, key: str) -> tuple[dict[str, Any] | None, int]:
        try:
            entry = await self.numbers.kv.get(key)
        except (KeyNotFoundError, KeyDeletedError):
            return None, 0
        value = json.loads(entry.value or b"{}")
        return (value if isinstance(value, dict) else None), int(entry.revision or 0)

    # -- sending ---------------------------------------------------------------------------------------

    async def send(self, session: SftpSession, kind: str, record: Any, business_key: str) -> SentDocument:
        """Send `kind` built from `record` once per business key (see the module's docstring).

        InvalidRecord when the record cannot make a document the set's map accepts (no number used).
        """
        if kind not in self.plan.send:
            raise InvalidRecord(
                f"Connector {self.plan.connector!r} does not send {kind}: add it to spec.edi.send", step=kind
            )
        key = self._out_key(business_key)
        found, _ = await self._get(key)
        if found is not None and found.get("state") == "sent":
            return SentDocument(found)
        entry = SentDocument(found) if found is not None else await self._number(kind, record, business_key, key)
        target = str(PurePosixPath(self.plan.sftp.drop) / entry.file_name)
        await session.write(target, entry.data)
        interchange, group = int(entry["interchange"]), int(entry["group"])
        sent_at = datetime.fromtimestamp(float(entry["at"]), UTC).isoformat()
        await self.numbers.record_sent(
            self.plan.connector,
            interchange,
            {"kind": kind, "direction": "out", "businessKey": business_key, "group": group, "at": sent_at},
        )
        awaiting = {
            "kind": kind,
            "businessKey": business_key,
            "interchange": interchange,
            "set": int(entry["set"]),
            "file": entry.file_name,
            "sentAt": float(entry["at"]),
            "deadline": float(entry["at"]) + self.plan.acknowledgment_deadline_seconds,
            "state": "waiting",
        }
        current, _ = await self._get(self._awaiting_key(group))
        if current is None:  # a retry after the 997 came must not wait for it again
            await self.numbers.kv.put(self._awaiting_key(group), json.dumps(awaiting).encode())
        entry["state"] = "sent"
        await self.numbers.kv.put(key, json.dumps(entry).encode())
        log.info(
            "edi document sent",
            extra={"connector": self.plan.connector, "document": kind, "interchange": interchange, "file": target},
        )
        return entry

    async def _number(self, kind: str, record: Any, business_key: str, key: str) -> SentDocument:
        """Build, check, number and store the document of `business_key` (or take the entry a racer stored)."""
        trial = build_document(kind, record, self.plan.envelope, _TRIAL, datetime.now(UTC), step=kind)
        findings = await asyncio.to_thread(document_findings, trial)
        if findings:
            raise InvalidRecord(
                f"the {kind} built from this record fails its map: " + "; ".join(findings[:5]), step=kind
            )
        drawn = await self.numbers.allocate(self.plan.connector, interchanges=1, groups=1, sets=1)
        at = self.clock()
        numbers = ControlNumbers(drawn.interchanges[0], drawn.groups[0], drawn.sets)
        data = build_document(kind, record, self.plan.envelope, numbers, datetime.fromtimestamp(at, UTC), step=kind)
        entry = SentDocument(
            kind=kind,
            connector=self.plan.connector,
            businessKey=business_key,
            interchange=numbers.interchange,
            group=numbers.group,
            set=numbers.sets[0],
            at=at,
            state="numbered",
            document=base64.b64encode(data).decode(),
        )
        try:
            await self.numbers.kv.create(key, json.dumps(entry).encode())
        except (KeyWrongLastSequenceError, BadRequestError):
            # Another replica numbered the same business key first: its document is the one sent;
            # the numbers drawn here stay unused, a visible gap (no `sent` note), never a reuse.
            won, _ = await self._get(key)
            if won is None:
                raise
            log.info("another replica numbered this document first", extra={"connector": self.plan.connector})
            return SentDocument(won)
        return entry

    # -- acknowledgments -------------------------------------------------------------------------------

    async def match(self, groups: list[GroupAcknowledgment], *, source: str) -> list[str]:
        """Mark what a partner's 997 acknowledges; park the sets it rejects. Returns what became exceptions."""
        parked: list[str] = []
        for ack in groups:
            if not ack.group.isdigit():
                log.warning("997 names a group that is no number", extra={"connector": self.plan.connector})
                continue
            key = self._awaiting_key(int(ack.group))
            waiting, _ = await self._get(key)
            if waiting is None:
                log.warning(
                    "997 for a group we have no record of sending",
                    extra={"connector": self.plan.connector, "group": ack.group},
                )
                continue
            rejected = ack.rejected or (() if ack.code in {"A", "E", "P"} else ack.sets)
            code = "R" if rejected or ack.code == "R" else ack.code
            note = await self.numbers.sent(self.plan.connector, int(waiting["interchange"])) or {}
            await self.numbers.record_sent(
                self.plan.connector,
                int(waiting["interchange"]),
                {**note, "acknowledged": code, "acknowledgedAt": datetime.fromtimestamp(self.clock(), UTC).isoformat()},
            )
            if code == "R":
                detail = (
                    "; ".join(
                        f"AK5 {s.code}{' ' + s.error_code if s.error_code else ''} for {s.set_id} {s.control}"
                        + (f" ({' '.join(s.notes)})" if s.notes else "")
                        for s in rejected
                    )
                    or f"AK9 {ack.code}"
                )
                await self._park(
                    waiting,
                    "RejectedByPartner",
                    f"{self.plan.connector} rejected {waiting['kind']} {waiting['file']} in its 997: {detail}; "
                    "correct the source record and send it again",
                    source=source,
                )
                parked.append(str(waiting["businessKey"]))
            await self.numbers.kv.delete(key)
        return parked

    async def overdue(self) -> list[str]:
        """Park every document whose 997 is late, once each; returns their business keys."""
        now = self.clock()
        late: list[str] = []
        keys = await self._awaiting_keys()
        for key in keys:
            waiting, revision = await self._get(key)
            if waiting is None or waiting.get("state") != "waiting" or float(waiting["deadline"]) > now:
                continue
            try:
                await self.numbers.kv.update(key, json.dumps({**waiting, "state": "overdue"}).encode(), last=revision)
            except (KeyWrongLastSequenceError, BadRequestError):
                continue  # a 997 or another replica got there first
            waited = (now - float(waiting["sentAt"])) / 3600
            await self._park(
                waiting,
                "AcknowledgmentOverdue",
                f"no 997 from {self.plan.connector} for {waiting['kind']} {waiting['file']} after {waited:.1f} h "
                f"(deadline {self.plan.acknowledgment_deadline_seconds / 3600:g} h): ask the partner whether it "
                "arrived; its file is still in their folder or in their archive",
                source="",
            )
            late.append(str(waiting["businessKey"]))
        return late

    async def _awaiting_keys(self) -> list[str]:
        """The partner's awaited documents: filtered by the server (KeyValue.keys reads the whole bucket)."""
        watcher = await self.numbers.kv.watch(f"awaiting.{self.partner}.>", ignore_deletes=True, meta_only=True)
        keys: list[str] = []
        try:
            async for entry in watcher:
                if entry is None:
                    break
                keys.append(entry.key)
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]
        return keys

    async def _park(self, waiting: dict[str, Any], reason: str, error: str, *, source: str) -> None:
        """An exception in the review queue of this partner (the `integration` is the Connector's name)."""
        parked = ParkedRecord(
            reason=reason,
            error=error,
            step=f"edi.{waiting['kind']}",
            integration=self.plan.connector,
            business_key=str(waiting["businessKey"]),
            original_subject=source,
        )
        out, _ = await self._get(self._out_key(str(waiting["businessKey"])))
        data = SentDocument(out).data if out else b""
        headers = parked.to_headers({h.CONTENT_TYPE: "application/edi-x12"})
        headers[h.NATS_MSG_ID] = bounded_id(f"edi/{self.plan.connector}/{reason}/{int(waiting['interchange']):09d}")
        await self.js.publish(exceptions_subject(self.plan.namespace, self.plan.connector), data, headers=headers)
        log.warning(
            "edi document needs a person", extra={"connector": self.plan.connector, "reason": reason, "error": error}
        )
