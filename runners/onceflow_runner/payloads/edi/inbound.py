"""An inbound EDI file judged set by set: which sets become records, which are rejected, and why.

Pure: bytes and the partner's plan in, outcomes out. `envelope.split_file` cuts the file; each
interchange addressed to us by the partner the plan names is validated group by group with
pyx12 (`validation.py`) and each accepted set is decoded into the canonical order by the same
decoder webhooks use (`payloads.x12.decode_x12`), so a set the 997 accepts is one the runner
can read. Each set keeps its own bytes: the partner's ISA and GS, the set's ST ... SE as it
came, and GE/IEA trailers counting that one set, which makes each record a complete one-set
interchange (its original bytes for the exception queue and for `onceflow trace`).

Envelope errors reject the interchange (TA1), group errors every set of the group, set errors
that set (997 AK5 R); other sets go on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from onceflow_runner.contract.edi import EdiPartnerPlan
from onceflow_runner.errors import MalformedInput
from onceflow_runner.payloads.edi.envelope import Group, Interchange, TransactionSet, split_file
from onceflow_runner.payloads.edi.maps import TRANSACTION_SETS, Loop, Segment
from onceflow_runner.payloads.edi.maps import TransactionSet as MapSet
from onceflow_runner.payloads.edi.validation import ValidationResult, validate_interchange
from onceflow_runner.payloads.x12 import decode_x12

__all__ = [
    "ACKNOWLEDGMENT_SETS",
    "FileAssessment",
    "GroupOutcome",
    "InterchangeOutcome",
    "SetOutcome",
    "assess_file",
    "business_key",
]

#: Sets that acknowledge documents we sent: taken from every partner (validated against pyx12's
#: 997 map) and, as X12 says, never acknowledged themselves.
ACKNOWLEDGMENT_SETS = frozenset({"997"})
#: GS01 of a group of acknowledgments.
ACKNOWLEDGMENT_GROUP = "FA"

#: AK3/AK4 detail kept per set in the 997 (the rest is in the record's reason).
MAX_SEGMENT_ERRORS = 20


@dataclass
class SetOutcome:
    """One transaction set: accepted (A/E) into a record, or rejected (R) with the 997's codes."""

    set_id: str
    control: str
    code: str
    original: bytes
    business_key: str
    reason: str = ""
    #: 997 AK5 error code (718) when rejected.
    error_code: str | None = None
    #: (segment id, position, segment code, element position, element code, text) for AK3/AK4.
    errors: tuple[tuple[str, int, str, int | None, str | None, str], ...] = ()

    @property
    def accepted(self) -> bool:
        return self.code in ("A", "E")


@dataclass
class GroupOutcome:
    """One functional group and its sets' outcomes (one 997 acknowledges it)."""

    group: Group
    sets: list[SetOutcome] = field(default_factory=list)

    @property
    def acknowledged(self) -> bool:
        """False for a group of acknowledgments (GS01 FA): a 997 is never answered with a 997."""
        return self.group.functional_id != ACKNOWLEDGMENT_GROUP

    @property
    def code(self) -> str:
        """AK9 01: A all accepted, E all accepted with errors, P some, R none."""
        if self.group.error_code is not None or not self.sets:
            return "R"
        accepted = [s for s in self.sets if s.accepted]
        if len(accepted) == len(self.sets):
            return "E" if any(s.code == "E" for s in accepted) else "A"
        return "P" if accepted else "R"


@dataclass
class InterchangeOutcome:
    """One interchange: rejected whole (TA1) or judged group by group."""

    interchange: Interchange
    groups: list[GroupOutcome] = field(default_factory=list)

    @property
    def rejected(self) -> bool:
        return self.interchange.error_code is not None


@dataclass
class FileAssessment:
    """Everything one file held."""

    interchanges: list[InterchangeOutcome] = field(default_factory=list)
    #: Parts of the file that are no interchange at all (nothing to acknowledge them to).
    problems: list[str] = field(default_factory=list)

    @property
    def sets(self) -> list[SetOutcome]:
        return [s for i in self.interchanges for g in i.groups for s in g.sets]


def business_key(plan: EdiPartnerPlan, interchange: Interchange, group: Group, transaction: TransactionSet) -> str:
    """Partner + ISA13 + GS06 + ST02: unique per set for as long as the partner never reuses numbers."""
    partner = f"{interchange.sender_qualifier}:{interchange.sender_id}"
    return f"{plan.namespace}/{plan.connector}/{partner}/{interchange.control}/{group.control}/{transaction.control}"


def _one_set_interchange(interchange: Interchange, group: Group, transaction: TransactionSet) -> bytes:
    seps = interchange.separators
    trailers = (
        f"GE{seps.element}1{seps.element}{group.control}{seps.segment}\n"
        f"IEA{seps.element}1{seps.element}{interchange.control}{seps.segment}\n"
    )
    text = interchange.header + group.header + transaction.text
    if not text.endswith("\n"):
        text += "\n"
    return (text + trailers).encode("latin-1")


def _identity_problem(plan: EdiPartnerPlan, interchange: Interchange) -> tuple[str, str] | None:
    """A TA1 note code and text when the interchange is not from our partner to us, as configured."""
    env = plan.envelope
    checks = (
        ("005", interchange.sender_qualifier, env.partner.qualifier, "ISA05 sender qualifier"),
        ("006", interchange.sender_id, env.partner.id, "ISA06 sender id"),
        ("007", interchange.receiver_qualifier, env.ours.qualifier, "ISA07 receiver qualifier"),
        ("008", interchange.receiver_id, env.ours.id, "ISA08 receiver id"),
        ("014", interchange.usage, env.usage, "ISA15 usage indicator"),
    )
    for code, found, expected, what in checks:
        if found != expected:
            return code, f"{what} is {found!r}; this partner is configured with {expected!r}"
    if interchange.version != env.version:
        return "017", f"ISA12 version is {interchange.version!r}; this partner is configured with {env.version!r}"
    return None


def _judge_set(
    plan: EdiPartnerPlan,
    interchange: Interchange,
    group: Group,
    transaction: TransactionSet,
    verdicts: ValidationResult | None,
) -> SetOutcome:
    original = _one_set_interchange(interchange, group, transaction)
    outcome = SetOutcome(
        transaction.set_id, transaction.control, "A", original, business_key(plan, interchange, group, transaction)
    )

    def reject(code: str, reason: str) -> SetOutcome:
        outcome.code, outcome.error_code, outcome.reason = "R", code, reason
        return outcome

    if group.error_code is not None:
        return reject("5", f"group {group.control}: {group.error}")
    if transaction.error_code is not None:
        return reject(transaction.error_code, transaction.error or "set envelope error")
    if not _taken(plan, transaction.set_id):
        return reject("1", f"transaction set {transaction.set_id!r} is not accepted from this partner")
    verdict = verdicts.sets.get((group.control, transaction.control)) if verdicts else None
    if verdicts is not None and (verdicts.interchange_errors or verdicts.group_errors.get(group.control)):
        problems = verdicts.interchange_errors + verdicts.group_errors.get(group.control, [])
        return reject("5", "; ".join(problems)[:2000])
    if verdict is None:
        expected = TRANSACTION_SETS[transaction.set_id].functional_id if transaction.set_id in TRANSACTION_SETS else ""
        if expected and expected != group.functional_id:  # pyx12 has no map for the pair, and says nothing
            return reject(
                "5",
                f"an {transaction.set_id} travels in a group with GS01 {expected}, not {group.functional_id}: "
                f"send it in its own GS group",
            )
        return reject("5", "the validator did not report on this set")
    outcome.errors = verdict.errors[:MAX_SEGMENT_ERRORS]
    if verdict.code == "R":
        reasons = _said(transaction.set_id, verdict.errors) or "rejected by the validator"
        return reject("5", reasons[:2000])
    if transaction.set_id in ("850", "860", "875"):
        try:
            decode_x12(original)
        except MalformedInput as exc:
            return reject("5", str(exc))
    outcome.code = verdict.code if verdict.code in ("A", "E") else "A"
    return outcome


def _said(set_id: str, errors: tuple[tuple[str, int, str, int | None, str | None, str], ...]) -> str:
    """pyx12's findings as the reason a person reads; a segment our map does not take there says so.

    pyx12 words it "Segment G66*M not found", which reads as if the segment were missing; the
    first such finding also lists the segments the set's map takes.
    """
    said: list[str] = []
    listed = False
    for segment, position, code, _, _, text in errors:
        if code in ("1", "2") and text.startswith(f"Segment {segment}*") and set_id in TRANSACTION_SETS:
            text = f"the {set_id} does not take a {segment} segment here"
            if not listed:
                text += f"; it takes {', '.join(_segment_ids(TRANSACTION_SETS[set_id]))} in that order"
                listed = True
        said.append(f"{segment} at {position}: {text}")
    return "; ".join(said)


def _segment_ids(spec: MapSet) -> list[str]:
    """The segment ids a set's map takes, in map order, each once."""
    found: list[str] = []

    def walk(children: tuple[Segment | Loop, ...]) -> None:
        for child in children:
            if isinstance(child, Loop):
                walk(child.children)
            elif child.xid not in found:
                found.append(child.xid)

    walk((*spec.header, *spec.detail, *spec.summary))
    return found


def _taken(plan: EdiPartnerPlan, set_id: str) -> bool:
    """Whether sets of this id are taken from this partner (and validated by a map we have)."""
    return set_id in ACKNOWLEDGMENT_SETS or (set_id in plan.accept and set_id in TRANSACTION_SETS)


def assess_file(data: bytes, plan: EdiPartnerPlan) -> FileAssessment:
    """Every set of every interchange in `data`, accepted or rejected, with the reasons (never raises)."""
    split = split_file(data)
    result = FileAssessment(problems=list(split.problems))
    for interchange in split.interchanges:
        outcome = InterchangeOutcome(interchange)
        result.interchanges.append(outcome)
        if interchange.error_code is None:
            problem = _identity_problem(plan, interchange)
            if problem is not None:
                interchange.error_code, interchange.error = problem
        if interchange.error_code is not None:
            continue
        seps = interchange.separators
        for group in interchange.groups:
            verdicts: ValidationResult | None = None
            if group.error_code is None and any(t.error_code is None and _taken(plan, t.set_id) for t in group.sets):
                # pyx12 judges one group at a time, so one group it has no map for cannot sink the others.
                sound = [t for t in group.sets if t.error_code is None and _taken(plan, t.set_id)]
                text = (
                    interchange.header
                    + group.header
                    + "".join(t.text for t in sound)
                    + f"GE{seps.element}{len(sound)}{seps.element}{group.control}{seps.segment}"
                    + f"IEA{seps.element}1{seps.element}{interchange.control}{seps.segment}"
                )
                verdicts = validate_interchange(text)
            outcome.groups.append(
                GroupOutcome(group, [_judge_set(plan, interchange, group, t, verdicts) for t in group.sets])
            )
    return result
