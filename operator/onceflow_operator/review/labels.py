"""Reviewers' verdicts on parked duplicates, read back as labelled record pairs for matching.

A person deciding a possible duplicate may say it is the same record as one candidate ("same",
decided as reject or discard) or none of them ("notSame", decided as approve or edit). The
verdict is part of the decision (`ReviewDecision.verdict`, `same_as`), so it is as durable as the
decisions stream and written once per exception, compare-and-set. Nothing else stores labels.

Each verdict becomes labels `{left, right, same}`: left is the record as the dedupe step matched
it (canonical), right a candidate row as the target system has it. "same" labels the named
candidate only (another candidate may be a duplicate too; the reviewer did not say); "notSame"
labels every candidate. A labels file holds one `Label.to_dict` JSON object a line (no command
writes one yet: `onceflow match` is issue #15 item 2).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from nats.js import JetStreamContext

from onceflow_operator.review.records import ExceptionRecord, list_exceptions, with_candidates

__all__ = ["Label", "labels_of", "read_labels"]


@dataclass(frozen=True)
class Label:
    """One labelled pair: whether `left` (the parked record) and `right` (a candidate) are the same."""

    left: Any
    right: Any
    same: bool
    integration: str
    entity: str
    #: The exception the verdict was given on (its stream sequence), and by whom.
    exception: int
    who: str

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of one line of a labels file."""
        return {
            "left": self.left,
            "right": self.right,
            "same": self.same,
            "integration": self.integration,
            "entity": self.entity,
            "exception": self.exception,
            "who": self.who,
        }


def _left(record: ExceptionRecord) -> Any:
    """The record as matched; its original bytes (decoded) when the runner did not store it."""
    if record.matched is not None:
        return record.matched
    try:
        return json.loads(record.payload)
    except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth: its text
        return record.payload.decode(errors="replace")


def labels_of(record: ExceptionRecord) -> Iterator[Label]:
    """The labels one decided exception gives (none without a verdict or candidates)."""
    decision = record.decision
    if decision is None or decision.verdict is None or not record.candidates:
        return
    left = _left(record)
    for index, candidate in enumerate(record.candidates):
        if decision.verdict == "same" and index != decision.same_as:
            continue
        yield Label(
            left=left,
            right=candidate.get("candidate"),
            same=decision.verdict == "same",
            integration=record.integration,
            entity=record.entity,
            exception=record.sequence,
            who=decision.who,
        )


async def read_labels(js: JetStreamContext, namespace: str, *, integration: str | None = None) -> list[Label]:
    """Every label reviewers gave in a namespace (or one Integration), oldest exception first.

    Reads the exceptions with their decisions, then the candidates of those with a verdict only
    (one direct read each).
    """
    out: list[Label] = []
    for record in await list_exceptions(js, namespace, integration=integration, include_decided=True):
        if record.decision is None or record.decision.verdict is None:
            continue
        out.extend(labels_of(await with_candidates(js, namespace, record)))
    return out
