"""Reading the review streams: every message, page by page, or one message by its subject.

Why: the review page, the operator's gauges and `onceflow trace` read whole streams. A read
that stops at a fixed count makes decided records look undecided once a stream grows past it,
without a word. Here a read pages until JetStream says nothing is pending, and fails loudly
(`StreamUnreadable`) rather than return part of a stream. Where one message is wanted (the
decision about one exception), it is fetched by subject, with no scan at all.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from onceflow_operator.review.errors import StreamUnreadable
from onceflow_runner.adapters.natsio import StoredMessage

__all__ = ["PAGE", "first_on", "read_all"]

#: Messages asked for per fetch; a read goes on page after page until nothing is pending.
PAGE = 256
#: How long one page may take before the read gives up (and says so).
PAGE_SECONDS = 5.0


async def read_all(
    js: JetStreamContext, stream: str, subject: str, *, page: int = PAGE, page_seconds: float = PAGE_SECONDS
) -> list[StoredMessage]:
    """Every message on `subject` (wildcards allowed) in `stream`, oldest first, without acking anything.

    Raises:
        StreamUnreadable: the server stopped delivering while messages were still pending.
    """
    config = ConsumerConfig(
        ack_policy=AckPolicy.NONE,
        deliver_policy=DeliverPolicy.ALL,
        filter_subject=subject,
        inactive_threshold=30.0,
        mem_storage=True,
    )
    sub = await js.pull_subscribe(subject, stream=stream, config=config)
    out: list[StoredMessage] = []
    try:
        pending = (await sub.consumer_info()).num_pending or 0
        while pending > 0:
            try:
                batch = await sub.fetch(min(page, pending), timeout=page_seconds)
            except TimeoutError:
                pending = (await sub.consumer_info()).num_pending or 0
                if pending == 0:
                    break
                raise StreamUnreadable(
                    f"{stream} stopped answering after {len(out)} message(s) on {subject} with {pending} "
                    "still pending; try again"
                ) from None
            for msg in batch:
                md = msg.metadata
                out.append(
                    StoredMessage(
                        stream,
                        md.sequence.stream,
                        msg.subject,
                        dict(msg.headers or {}),
                        msg.data,
                        md.timestamp.isoformat() if md.timestamp else "",
                    )
                )
            pending = batch[-1].metadata.num_pending if batch else pending
    finally:
        await sub.unsubscribe()
    return out


async def first_on(js: JetStreamContext, stream: str, subject: str) -> StoredMessage | None:
    """The oldest message stored on exactly `subject` (no wildcards), or None: one request, no scan."""
    try:
        msg = await js.get_msg(stream, seq=1, subject=subject, next=True)
    except NotFoundError:
        return None
    stamp = msg.time.isoformat() if msg.time else ""
    return StoredMessage(stream, msg.seq or 0, msg.subject or subject, dict(msg.headers or {}), msg.data or b"", stamp)
