"""Records JetStream gave up on: max-delivery advisories of this lane's consumer -> dead letters.

Why: a delivery that no runner settled (the process crashed on it, or lost NATS, every time)
is dropped by JetStream after maxDeliver with nothing but an advisory. The ADVISORIES stream
keeps those; each lane's runners read their own consumer's through a durable consumer, read the
record by its stream sequence and dead-letter it with its original bytes. The dead letter has the
same `Nats-Msg-Id` as the one a runner writes itself, and a record whose key is done is left
alone, so handling an advisory twice, or one for a record that had its effect, adds nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import nats.errors
from nats.aio.msg import Msg

from onceflow_runner.contract.messages import MaxDeliveriesAdvisory
from onceflow_runner.contract.split import SplitMarker
from onceflow_runner.errors import WireFormatError
from onceflow_runner.runner.settle import Settler

__all__ = ["dead_letter_advisories"]

log = logging.getLogger("onceflow.runner")


async def dead_letter_advisories(settler: Settler, stopping: asyncio.Event) -> None:
    """Until `stopping`: turn every max-delivery advisory of the lane's consumer into a dead letter."""
    sub = await settler.wiring.subscribe_advisories()
    try:
        while not stopping.is_set():
            try:
                msgs = await sub.fetch(16, timeout=2.0)
            except (nats.errors.TimeoutError, TimeoutError):
                continue
            except nats.errors.Error as exc:
                log.warning("advisory fetch failed; retrying", extra={"error": type(exc).__name__})
                await asyncio.sleep(0.5)
                continue
            for msg in msgs:
                try:
                    await _handle(settler, msg)
                except Exception as exc:  # left unacked: JetStream offers the advisory again
                    log.warning("advisory not handled yet", extra={"error": type(exc).__name__})
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


async def _handle(settler: Settler, msg: Msg) -> None:
    try:
        advisory = MaxDeliveriesAdvisory.from_wire(msg.data)
    except WireFormatError as exc:
        log.warning("not a max-delivery advisory; skipped", extra={"error": str(exc)})
        await msg.ack()
        return
    stored = await settler.wiring.stored(advisory.stream, advisory.stream_seq)
    if stored is None:
        log.error(
            "a record ran out of deliveries and is no longer stored",
            extra={"stream": advisory.stream, "sequence": advisory.stream_seq},
        )
    elif not SplitMarker.is_marker(stored.headers):
        await settler.dead_letter_unsettled(stored, advisory.deliveries)
    await msg.ack()
