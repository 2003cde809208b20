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
from onceflow_runner.payloads.edi.inbound import GroupOutcome, InterchangeOutcome

__all__ = ["ControlNumbers", "acknowledgment", "isa_segment", "needed_numbers", "needs_acknowledgment"]


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
