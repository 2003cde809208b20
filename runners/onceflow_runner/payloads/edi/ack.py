"""997 functional acknowledgments and TA1 interchange acknowledgments for what a file held.

Pure: outcomes (`inbound.assess_file`), the partner's envelope and control numbers in, the
acknowledgment interchange's bytes out. Codes follow X12 4010: AK5 (718) per set, AK9 (715/716)
per group, TA1 (I18 note codes) for an interchange rejected as a whole. The control numbers
come from the allocator (`adapters/control_numbers.py`) and are never reused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from onceflow_runner.contract.edi import EdiEnvelope
from onceflow_runner.payloads.edi.envelope import split_file
from onceflow_runner.payloads.edi.inbound import GroupOutcome, InterchangeOutcome

__all__ = [
    "ControlNumbers",
    "GroupAcknowledgment",
    "SetAcknowledgment",
    "acknowledgment",
    "isa_segment",
    "needed_numbers",
    "needs_acknowledgment",
    "read_997",
]


@dataclass(frozen=True)
class ControlNumbers:
    """ISA13, GS06 and the ST02s of one acknowledgment interchange."""

    interchange: int
    group: int
    sets: tuple[int, ...]


def _answered(outcome: InterchangeOutcome) -> list[GroupOutcome]:
    """The groups a 997 answers: all but groups of acknowledgments, and none of a rejected interchange."""
    return [] if outcome.rejected else [g for g in outcome.groups if g.acknowledged]


def needs_acknowledgment(outcome: InterchangeOutcome) -> bool:
    """False for an interchange holding only acknowledgments (and asking no TA1): nothing is sent back."""
    return outcome.rejected or outcome.interchange.ack_requested == "1" or bool(_answered(outcome))


def needed_numbers(outcome: InterchangeOutcome) -> tuple[int, int]:
    """(groups, sets) the acknowledgment of `outcome` needs: one 997 per group answered, none for a TA1 only."""
    answered = _answered(outcome)
    return (1, len(answered)) if answered else (0, 0)


def isa_segment(env: EdiEnvelope, control: int, now: datetime) -> list[str]:
    """Our ISA for `env`: our identity as sender, the partner as receiver, no TA1 asked (ISA14 0)."""
    return [
        "ISA",
        "00",
        " " * 10,
        "00",
        " " * 10,
        env.ours.qualifier,
        env.ours.id.ljust(15),
        env.partner.qualifier,
        env.partner.id.ljust(15),
        now.strftime("%y%m%d"),
        now.strftime("%H%M"),
        "U",
        env.version,
        f"{control:09d}",
        "0",
        env.usage,
        env.component_separator,
    ]


def _ak9(group: GroupOutcome) -> list[str]:
    received = len(group.sets)
    declared = group.group.declared_sets if group.group.declared_sets is not None else received
    accepted = sum(1 for s in group.sets if s.accepted)
    ak9 = ["AK9", group.code, str(declared), str(received), str(accepted)]
    if group.group.error_code is not None:
        ak9.append(group.group.error_code)
    return ak9


def _997(group: GroupOutcome, control: int) -> list[list[str]]:
    st02 = f"{control:04d}"
    body: list[list[str]] = [["ST", "997", st02], ["AK1", group.group.functional_id, group.group.control]]
    for item in group.sets:
        body.append(["AK2", item.set_id, item.control])
        noted: tuple[str, int] | None = None
        for seg_id, position, seg_code, element, element_code, _text in item.errors:
            if (seg_id, position) != noted:  # one AK3 per segment in error, then its elements' AK4s
                body.append(["AK3", seg_id, str(position), "", seg_code])
                noted = (seg_id, position)
            if element is not None and element_code is not None:
                body.append(["AK4", str(element), "", element_code])
        body.append(["AK5", item.code, item.error_code] if item.error_code else ["AK5", item.code])
    body.append(_ak9(group))
    body.append(["SE", str(len(body) + 1), st02])
    return body


def acknowledgment(outcome: InterchangeOutcome, env: EdiEnvelope, numbers: ControlNumbers, now: datetime) -> bytes:
    """The interchange that acknowledges `outcome`: a TA1 when rejected (or asked for), then one 997 per group."""
    received = outcome.interchange
    segments: list[list[str]] = [isa_segment(env, numbers.interchange, now)]
    if outcome.rejected or received.ack_requested == "1":
        code = "R" if outcome.rejected else "A"
        note = received.error_code if outcome.rejected and received.error_code else "000"
        segments.append(["TA1", received.control, received.date, received.time, code, note])
    groups = 0
    answered = _answered(outcome)
    if answered:
        groups = 1
        segments.append(
            [
                "GS",
                "FA",
                env.ours.application_code,
                env.partner.application_code,
                now.strftime("%Y%m%d"),
                now.strftime("%H%M"),
                str(numbers.group),
                "X",
                "004010",
            ]
        )
        for group, control in zip(answered, numbers.sets, strict=True):
            segments.extend(_997(group, control))
        segments.append(["GE", str(len(answered)), str(numbers.group)])
    segments.append(["IEA", str(groups), f"{numbers.interchange:09d}"])
    sep, end = env.element_separator, env.segment_terminator
    return "".join(sep.join(seg) + end + "\n" for seg in segments).encode("latin-1")


@dataclass(frozen=True)
class SetAcknowledgment:
    """What a partner's 997 says of one set we sent: AK2 (set id, ST02) and AK5 (code, first error code)."""

    set_id: str
    control: str
    code: str
    error_code: str = ""
    #: The AK3/AK4 lines about the set, as text, for the person who looks at a rejection.
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class GroupAcknowledgment:
    """What a partner's 997 says of one group we sent: AK1 (functional id, GS06), AK9 code, per set."""

    functional_id: str
    group: str
    code: str
    sets: tuple[SetAcknowledgment, ...]

    @property
    def rejected(self) -> tuple[SetAcknowledgment, ...]:
        """The sets the partner refused (AK5 R or M; all of them when AK9 is R and no AK2 says more)."""
        return tuple(s for s in self.sets if s.code in {"R", "M", "W", "X"})


def read_997(data: bytes) -> list[GroupAcknowledgment]:
    """The groups a partner's 997 interchange acknowledges; an unreadable part yields nothing for it."""
    found: list[GroupAcknowledgment] = []
    for interchange in split_file(data).interchanges:
        seps = interchange.separators
        for group in interchange.groups:
            for item in group.sets:
                if item.set_id != "997" or item.error_code:
                    continue
                found.extend(_read_one_997(item.text, seps.element, seps.segment))
    return found


def _read_one_997(text: str, element: str, terminator: str) -> list[GroupAcknowledgment]:
    segments = [s.strip().split(element) for s in text.split(terminator) if s.strip()]
    ak1: list[str] | None = None
    sets: list[SetAcknowledgment] = []
    current: list[str] | None = None
    notes: list[str] = []
    groups: list[GroupAcknowledgment] = []
    for seg in segments:
        tag = seg[0]
        if tag == "AK1" and len(seg) > 2:
            ak1, sets = seg, []
        elif tag == "AK2" and len(seg) > 2:
            current, notes = seg, []
        elif tag in {"AK3", "AK4"}:
            notes.append(element.join(seg))
        elif tag == "AK5" and current is not None and len(seg) > 1:
            error = seg[2] if len(seg) > 2 else ""
            sets.append(SetAcknowledgment(current[1], current[2], seg[1], error, tuple(notes)))
            current = None
        elif tag == "AK9" and ak1 is not None and len(seg) > 1:
            groups.append(GroupAcknowledgment(ak1[1], ak1[2], seg[1], tuple(sets)))
            ak1 = None
    return groups
