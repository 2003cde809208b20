"""The EDI inbound poller: partner files from SFTP into JetStream, one record per set, a 997 back.

One pass (`poll_once`), in this order, so that no file is lost or taken twice:

1. Files in the claim folder whose lease ran out (a poller died holding them) are claimed anew.
2. The pickup folder is listed; a file is taken only when its size and mtime are the same as in
   the previous listing (it is not being written any more) and its name has no temporary
   suffix (`.tmp`, `.part`, ...).
3. It is claimed by renaming it into the claim folder under a name carrying the lease deadline
   and this replica: SFTP rename fails for all but one of two replicas.
4. Its bytes are published to `onceflow.<ns>.in.<connector>.file` with Nats-Msg-Id = the bytes'
   SHA-256 (the file's original bytes, kept), then each set as its own record (accepted sets
   under the set id, e.g. `.850`, rejected ones under `.rejected.850` with the reason), each
   with Nats-Msg-Id = partner + ISA13 + GS06 + ST02.
5. The acknowledgments (997, TA1) are built with control numbers allocated once per file and
   kept in the KV bucket under the file's hash, dropped in the partner's folder, and noted as
   sent; the file's entry is then marked done.
6. Only then is the file moved to the done folder.

A file whose hash is already done is a duplicate: it is moved to done with no second effect. A
poller killed anywhere in 4-6 leaves the claimed file behind; after the lease another pass takes
it and repeats 4-6, which JetStream's duplicate detection and the file's KV entry make harmless
(the same control numbers, the same 997 bytes, the same file name).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, NotFoundError

from onceflow_runner.adapters import natsio
from onceflow_runner.adapters.control_numbers import ControlNumberStore
from onceflow_runner.adapters.sftp import SftpSession, SftpUnavailable, open_session
from onceflow_runner.contract import headers as h
from onceflow_runner.contract import subjects
from onceflow_runner.contract.edi import EdiPartnerPlan
from onceflow_runner.contract.keys import bounded_id
from onceflow_runner.contract.messages import ParkedRecord, RecordHeaders
from onceflow_runner.contract.subjects import IN_STREAM, exceptions_subject, inbound_prefix
from onceflow_runner.edi.outbound import EdiOutbound
from onceflow_runner.errors import InvalidRecord, PlanError
from onceflow_runner.metrics import EdiMetrics
from onceflow_runner.payloads.edi.ack import (
    ControlNumbers,
    acknowledgment,
    needed_numbers,
    needs_acknowledgment,
    read_997,
)
from onceflow_runner.payloads.edi.inbound import FileAssessment, assess_file

__all__ = ["CONTENT_TYPE", "EdiInbound", "claimed_name", "parse_claimed"]

log = logging.getLogger("onceflow.edi")
CONTENT_TYPE = "application/edi-x12"
_CLAIMED = re.compile(r"^(?P<deadline>[0-9]{10,})~(?P<owner>[A-Za-z0-9_.-]{1,64})~(?P<name>.+)$")


def claimed_name(name: str, owner: str, deadline: float) -> str:
    """The name a claimed file carries: its lease deadline (epoch seconds), the claiming replica, its name."""
    return f"{int(deadline):010d}~{owner}~{name}"


def parse_claimed(name: str) -> tuple[float, str, str] | None:
    """(deadline, owner, original name) of a claimed file's name; None for a name that is not a claim."""
    found = _CLAIMED.match(name)
    if found is None:
        return None
    return float(found["deadline"]), found["owner"], found["name"]


class EdiInbound:
    """One partner's inbound poller (one per replica; replicas share the folders safely)."""

    def __init__(
        self,
        plan: EdiPartnerPlan,
        *,
        nc: Client,
        secrets_dir: Path,
        owner: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.plan, self.nc, self.secrets_dir = plan, nc, secrets_dir
        self.owner = re.sub(r"[^A-Za-z0-9_.-]", "-", owner or os.environ.get("HOSTNAME", "") or f"pid{os.getpid()}")[
            :64
        ]
        self.clock = clock
        self.js: JetStreamContext = nc.jetstream(timeout=5)
        self.numbers: ControlNumberStore | None = None
        self.outbound: EdiOutbound | None = None
        #: name -> (size, mtime) at the previous listing: a file is taken when it did not change since.
        self._seen: dict[str, tuple[int, int]] = {}
        self.prefix = inbound_prefix(plan.namespace, plan.connector)
        sftp = plan.sftp
        self.pickup = sftp.pickup.rstrip("/") or "/"
        self.claim_folder = str(PurePosixPath(self.pickup) / sftp.claim_folder)
        self.done_folder = str(PurePosixPath(self.pickup) / sftp.done_folder)
        #: Files this poller finished (original names), and an event set at each one (for waiting on it).
        self.processed: list[str] = []
        self.finished = asyncio.Event()
        self.metrics = EdiMetrics()
        #: Why the last pass failed (None after a pass that worked); None before the first pass too.
        self.last_error: str | None = None
        self.passes = 0
        self._waiting_logged = False

    @property
    def outbound_consumer(self) -> str:
        """The durable consumer of the documents `sendEdi` steps hand to this partner."""
        return subjects.edi_outbound_consumer(self.plan.namespace, self.plan.connector)

    async def start(self) -> None:
        await natsio.bind_stream(self.js, IN_STREAM)
        self.numbers = await ControlNumberStore.open(self.js, self.plan.namespace)
        self.outbound = EdiOutbound(self.plan, js=self.js, numbers=self.numbers, clock=self.clock)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until `stop` is set; SFTP trouble is logged and retried at the next interval, nothing is lost."""
        await self.start()
        while not stop.is_set():
            try:
                await self.poll_once()
            except SftpUnavailable as exc:
                self.last_error = str(exc)
                self.metrics.sftp_failures.labels(connector=self.plan.connector).inc()
                log.warning("sftp unavailable; retrying", extra={"connector": self.plan.connector, "reason": str(exc)})
            except PlanError as exc:
                self.last_error = str(exc)
                log.error("sftp settings unusable", extra={"connector": self.plan.connector, "reason": str(exc)})
            except Exception as exc:  # NATS or SFTP trouble mid-pass: the claimed file is taken again after its lease
                self.last_error = f"pass failed: {type(exc).__name__}: {str(exc)[:200]}"
                log.warning(
                    "pass failed; retrying", extra={"connector": self.plan.connector, "reason": self.last_error}
                )
            else:
                self.last_error = None
            self.passes += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.plan.sftp.poll_seconds)

    async def poll_once(self) -> int:
        """One pass over the folders (see the module's docstring); returns the files finished."""
        if self.numbers is None:
            await self.start()
        async with await open_session(self.plan.sftp, self.secrets_dir) as session:
            try:
                return await self._pass(session)
            except (OSError, TimeoutError) as exc:
                raise SftpUnavailable(f"sftp connection lost: {type(exc).__name__}: {exc}") from None

    async def _pass(self, session: SftpSession) -> int:
        for folder in (self.pickup, self.claim_folder, self.done_folder, self.plan.sftp.drop):
            await session.ensure_folder(folder)
        finished = 0
        now = self.clock()
        for held in await session.files(self.claim_folder):
            claim = parse_claimed(held.name)
            if claim is None or claim[0] > now:
                continue
            mine = self._claim_path(claim[2])
            if await session.claim(self._join(self.claim_folder, held.name), mine):
                log.info("reclaimed an expired claim", extra={"connector": self.plan.connector, "file": claim[2]})
                finished += await self._process(session, claim[2], mine)
        listing = await session.files(self.pickup)
        previous, self._seen = self._seen, {f.name: (f.size, f.mtime) for f in listing}
        for remote in listing:
            if remote.name.startswith(".") or remote.name.endswith(self.plan.sftp.temp_suffixes):
                continue
            if previous.get(remote.name) != (remote.size, remote.mtime):
                continue  # new or still growing: look again at the next listing
            mine = self._claim_path(remote.name)
            if not await session.claim(self._join(self.pickup, remote.name), mine):
                continue  # another replica took it
            self._seen.pop(remote.name, None)
            finished += await self._process(session, remote.name, mine)
        if self.plan.send:
            await self._send_pending(session)
        assert self.outbound is not None
        await self.outbound.overdue()
        return finished

    async def _send_pending(self, session: SftpSession) -> int:
        """Send the documents `sendEdi` steps handed over since the last pass; returns how many were settled."""
        assert self.outbound is not None
        try:  # the operator creates the consumer (with the Connector's `send`); until then nothing to send
            await self.js.consumer_info(IN_STREAM, self.outbound_consumer)
        except NotFoundError:
            if not self._waiting_logged:
                log.warning(
                    "waiting for the operator to create consumer %s; documents wait in the stream until then",
                    self.outbound_consumer,
                )
                self._waiting_logged = True
            return 0
        subscription = await self.js.pull_subscribe_bind(self.outbound_consumer, stream=IN_STREAM)
        settled = 0
        try:
            while settled < 500:
                try:
                    batch = await subscription.fetch(batch=50, timeout=0.5)
                except TimeoutError:
                    break
                for msg in batch:
                    await self._send_one(session, msg)
                    settled += 1
        finally:
            await subscription.unsubscribe()
        return settled

    def _integration_of(self, headers: dict[str, str]) -> str:
        """The sending Integration (its exception subject); this Connector when the header is no Kubernetes name."""
        name = headers.get(h.INTEGRATION, "")
        return name if re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", name) else self.plan.connector

    async def _send_one(self, session: SftpSession, msg: Any) -> None:
        assert self.outbound is not None
        found = dict(msg.headers or {})
        kind = msg.subject.rsplit(".", 1)[-1]
        key = found.get(h.BUSINESS_KEY) or found.get(h.NATS_MSG_ID) or ""
        try:
            record = json.loads(msg.data)
            await self.outbound.send(session, kind, record, key)
        except (ValueError, InvalidRecord) as exc:
            parked = ParkedRecord(
                reason="InvalidRecord",
                error=str(exc) if isinstance(exc, InvalidRecord) else f"not a JSON record: {exc}",
                step=found.get(h.STEP, f"edi.{kind}"),
                integration=self._integration_of(found),
                business_key=key,
                original_subject=msg.subject,
                stream_sequence=msg.metadata.sequence.stream,
                deliveries=msg.metadata.num_delivered,
            )
            headers = parked.to_headers(found)
            headers[h.NATS_MSG_ID] = bounded_id(f"edi/{self.plan.connector}/invalid/{msg.metadata.sequence.stream}")
            target = exceptions_subject(self.plan.namespace, parked.integration)
            await self.js.publish(target, msg.data, headers=headers)
            self.metrics.documents.labels(connector=self.plan.connector, document=kind[:8], outcome="invalid").inc()
            await msg.ack()
            return
        except BaseException:
            with contextlib.suppress(Exception):  # unacknowledged, it comes back after ack_wait anyway
                await msg.nak(delay=self.plan.sftp.poll_seconds)
            raise
        self.metrics.documents.labels(connector=self.plan.connector, document=kind[:8], outcome="sent").inc()
        await msg.ack()

    @staticmethod
    def _join(folder: str, name: str) -> str:
        return str(PurePosixPath(folder) / name)

    def _claim_path(self, name: str) -> str:
        deadline = self.clock() + self.plan.sftp.lease_seconds
        return self._join(self.claim_folder, claimed_name(name, self.owner, deadline))

    async def _process(self, session: SftpSession, name: str, claimed: str) -> int:
        data = await session.read(claimed, limit=min(self.plan.sftp.max_file_bytes, self.nc.max_payload - 4096))
        if data is None:
            log.error(
                "file larger than allowed; left in the claim folder for a person",
                extra={"connector": self.plan.connector, "file": name},
            )
            return 0
        digest = hashlib.sha256(data).hexdigest()
        entry = await self._file_entry(digest)
        if entry.get("state") != "done":
            await self._publish(name, data, digest)
            # pyx12 takes seconds on a large file: off the event loop, so probes and NATS keep answering.
            assessment = await asyncio.to_thread(assess_file, data, self.plan)
            await self._publish_sets(assessment, digest)
            entry = await self._acknowledge(session, assessment, digest, entry)
            self.metrics.files.labels(connector=self.plan.connector, outcome="processed").inc()
        else:
            log.info("duplicate file: already processed", extra={"connector": self.plan.connector, "file": name})
            self.metrics.files.labels(connector=self.plan.connector, outcome="duplicate").inc()
        stamp = datetime.fromtimestamp(self.clock(), UTC).strftime("%Y%m%dT%H%M%S")
        await session.move(claimed, self._join(self.done_folder, f"{stamp}_{digest[:12]}_{name}"))
        self.processed.append(name)
        self.finished.set()
        return 1

    # -- JetStream -------------------------------------------------------------------------------------

    def _file_key(self, digest: str) -> str:
        return f"file.{self.plan.connector}.{digest}"

    async def _file_entry(self, digest: str) -> dict[str, Any]:
        assert self.numbers is not None
        try:
            found = await self.numbers.kv.get(self._file_key(digest))
        except KeyNotFoundError:
            return {}
        value = json.loads(found.value or b"{}")
        return value if isinstance(value, dict) else {}

    def _headers(self, msg_id: str, delivery: str, event: str) -> dict[str, str]:
        record = RecordHeaders(
            msg_id=bounded_id(msg_id),
            delivery_id=bounded_id(delivery),
            origin=self.plan.connector,
            origin_system=self.plan.system or None,
            event=event,
            content_type=CONTENT_TYPE,
            traceparent=f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01",
        )
        return record.to_headers()

    async def _publish(self, name: str, data: bytes, digest: str) -> None:
        headers = self._headers(f"{self.plan.namespace}/{self.plan.connector}/file/{digest}", digest, "file")
        headers[h.ONCEFLOW_PREFIX + "File-Name"] = re.sub(r"[\r\n]", "_", name)[:255]
        await self.js.publish(f"{self.prefix}.file", data, headers=headers)

    async def _publish_sets(self, assessment: FileAssessment, digest: str) -> None:
        for item in assessment.sets:
            event = item.set_id if item.accepted else f"rejected.{item.set_id or 'unknown'}"
            event = re.sub(r"[^A-Za-z0-9_.]", "_", event)
            headers = self._headers(item.business_key, item.business_key, event)
            headers[h.BUSINESS_KEY] = bounded_id(item.business_key)
            if not item.accepted:
                headers[h.REASON] = f"997 AK5 R {item.error_code or ''}".strip()
                headers[h.ERROR] = re.sub(r"[\r\n]", " ", item.reason)[:1024]
            subject = f"{self.prefix}.{event}"
            await self.js.publish(subject, item.original, headers=headers)
            if not item.accepted:
                await self._park_rejected(subject, item.original, headers, item.reason, item.business_key)
            elif item.set_id == "997" and self.outbound is not None:
                await self.outbound.match(read_997(item.original), source=subject)
            outcome = "accepted" if item.accepted else "rejected"
            self.metrics.sets.labels(connector=self.plan.connector, set=item.set_id[:8], outcome=outcome).inc()
        for problem in assessment.problems:
            log.error("file part is not an interchange", extra={"connector": self.plan.connector, "problem": problem})

    async def _park_rejected(
        self, subject: str, original: bytes, headers: dict[str, str], reason: str, key: str
    ) -> None:
        """A set we rejected is also an exception a person sees (the partner was told in the 997)."""
        parked = ParkedRecord(
            reason="RejectedSet",
            error=f"{reason}; the partner was sent a 997 rejecting it: ask them to correct and resend the set",
            step="edi.inbound",
            integration=self.plan.connector,
            business_key=key,
            original_subject=subject,
        )
        parked_headers = parked.to_headers(headers)
        parked_headers[h.NATS_MSG_ID] = bounded_id(f"edi/{self.plan.connector}/rejected/{key}")
        await self.js.publish(
            exceptions_subject(self.plan.namespace, self.plan.connector), original, headers=parked_headers
        )

    async def _acknowledge(
        self, session: SftpSession, assessment: FileAssessment, digest: str, entry: dict[str, Any]
    ) -> dict[str, Any]:
        """Allocate (once per file), write and note the acknowledgments; mark the file done."""
        assert self.numbers is not None
        partner = self.plan.connector
        acks: list[dict[str, Any]] = entry.get("acks") or []
        if not acks:
            for outcome in assessment.interchanges:
                if not needs_acknowledgment(outcome):
                    acks.append({"interchange": 0, "group": 0, "sets": []})  # acknowledgments only: none back
                    continue
                groups, sets = needed_numbers(outcome)
                drawn = await self.numbers.allocate(partner, interchanges=1, groups=groups, sets=sets)
                acks.append(
                    {
                        "interchange": drawn.interchanges[0],
                        "group": drawn.groups[0] if drawn.groups else 0,
                        "sets": list(drawn.sets),
                    }
                )
            entry = {"state": "allocated", "acks": acks or [{"interchange": 0}], "at": self.clock()}
            await self.numbers.keep(self._file_key(digest), json.dumps(entry).encode())
        at = datetime.fromtimestamp(float(str(entry.get("at") or self.clock())), UTC)
        for outcome, numbers in zip(assessment.interchanges, acks, strict=False):
            if not numbers.get("interchange"):
                continue
            control = ControlNumbers(int(numbers["interchange"]), int(numbers["group"]), tuple(numbers["sets"]))
            document = acknowledgment(outcome, self.plan.envelope, control, at)
            kind = "TA1" if outcome.rejected else "997"
            target = self._join(self.plan.sftp.drop, f"{kind}_{partner}_{control.interchange:09d}.x12")
            await session.write(target, document)
            self.metrics.acknowledgments.labels(connector=partner, kind=kind).inc()
            await self.numbers.record_sent(
                partner,
                control.interchange,
                {"kind": kind, "file": digest, "acknowledges": outcome.interchange.control, "at": at.isoformat()},
            )
        entry = {**entry, "state": "done"}
        await self.numbers.keep(self._file_key(digest), json.dumps(entry).encode())
        return entry
