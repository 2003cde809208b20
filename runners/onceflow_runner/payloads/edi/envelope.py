"""X12 envelopes: a file cut into interchanges, functional groups and transaction sets, with byte spans.

Why our own code and not the validator's reader: the envelope decides what can be acknowledged
and what becomes a record, and it must hold on any bytes a partner (or a broken VAN) drops in a
folder. This module reads the separators from each ISA (fixed width, 106 characters), walks the
segments once, and returns every set with the exact bytes it came in, so a record's original
bytes are the partner's own. It never raises on content: what it cannot read is reported as a
problem with a code the acknowledgment can carry.

Where a problem lands follows X12:
- interchange (TA1 note codes): unreadable ISA, missing or mismatched IEA, wrong group count,
  unexpected sender or receiver, or bytes outside any group -> the whole interchange is rejected;
- group (997 AK9 codes): GE missing, GE01 count or GE02 control number wrong -> every set in it;
- set (997 AK5 codes): SE missing, SE01 count or SE02 control number wrong -> that set only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "ISA_LENGTH",
    "Group",
    "Interchange",
    "Separators",
    "SplitFile",
    "TransactionSet",
    "split_file",
]

ISA_LENGTH = 106
#: ISA element widths (ISA01..ISA16), as the standard fixes them.
_ISA_WIDTHS = (2, 10, 2, 10, 2, 15, 2, 15, 6, 4, 1, 5, 9, 1, 1, 1)
_WHITESPACE = "\r\n\t "


@dataclass(frozen=True)
class Separators:
    """The delimiters an ISA declares: element (ISA 4th char), repetition (ISA11 in 5010), component, segment."""

    element: str
    component: str
    segment: str
    repetition: str


@dataclass
class TransactionSet:
    """One ST ... SE, with its text exactly as received and the first set-level problem, if any."""

    set_id: str
    control: str
    text: str
    #: Position of the ST segment in the group (1 = first segment after GS), for the 997.
    position: int
    segment_count: int
    #: 997 AK5 syntax error code (718) and text, when the set's own envelope is wrong.
    error_code: str | None = None
    error: str | None = None


@dataclass
class Group:
    """One GS ... GE."""

    functional_id: str
    sender: str
    receiver: str
    control: str
    version: str
    header: str
    declared_sets: int | None = None
    sets: list[TransactionSet] = field(default_factory=list)
    #: 997 AK9 functional group syntax error code (716) and text.
    error_code: str | None = None
    error: str | None = None


@dataclass
class Interchange:
    """One ISA ... IEA."""

    header: str
    separators: Separators
    sender_qualifier: str
    sender_id: str
    receiver_qualifier: str
    receiver_id: str
    date: str
    time: str
    version: str
    control: str
    ack_requested: str
    usage: str
    text: str
    groups: list[Group] = field(default_factory=list)
    #: TA1 interchange note code (I18) and text, when the interchange is rejected as a whole.
    error_code: str | None = None
    error: str | None = None


@dataclass
class SplitFile:
    """Every interchange found, and what could not be read as one (with its offset in the file)."""

    interchanges: list[Interchange] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _read_isa(text: str, at: int) -> tuple[list[str], Separators] | str:
    """The ISA's 17 fields and its separators, or why it is not an ISA."""
    header = text[at : at + ISA_LENGTH]
    if len(header) < ISA_LENGTH:
        return f"offset {at}: an ISA must be {ISA_LENGTH} characters, found {len(header)}"
    element, component, segment = header[3], header[104], header[105]
    if element.isalnum() or element in _WHITESPACE:
        return f"offset {at}: ISA's element separator {element!r} is a letter, digit or space"
    fields = header[: ISA_LENGTH - 1].split(element)
    if len(fields) != 17:
        return f"offset {at}: ISA has {len(fields) - 1} elements where 16 of fixed width are required"
    for number, (value, width) in enumerate(zip(fields[1:], _ISA_WIDTHS, strict=True), start=1):
        if len(value) != width:
            return f"offset {at}: ISA{number:02d} must be {width} characters wide, found {len(value)}"
    if len({element, component, segment}) != 3 or segment.isalnum() or component.isalnum():
        return f"offset {at}: ISA's separators {element!r}, {component!r}, {segment!r} must differ and not be letters"
    repetition = fields[11] if fields[12] >= "00402" and not fields[11].isalnum() else ""
    return fields, Separators(element, component, segment, repetition)


def _segments(text: str, start: int, terminator: str) -> list[tuple[int, int, str]]:
    """(start, end including the terminator and trailing line breaks, body) of each segment from `start`."""
    found: list[tuple[int, int, str]] = []
    pos, size = start, len(text)
    while pos < size:
        while pos < size and text[pos] in _WHITESPACE:
            pos += 1
        if pos >= size:
            break
        end = text.find(terminator, pos)
        stop = size if end < 0 else end + 1
        body = text[pos : end if end >= 0 else size]
        while stop < size and text[stop] in "\r\n":
            stop += 1
        found.append((pos, stop, body))
        pos = stop
        if body.startswith("IEA"):
            break
    return found


def _count(value: str) -> int | None:
    return int(value) if value.isdigit() and len(value) <= 9 else None


def _interchange(text: str, at: int, fields: list[str], seps: Separators) -> tuple[Interchange, int]:
    """Read one interchange from `at`; return it and the offset after it."""
    isa_end = at + ISA_LENGTH
    while isa_end < len(text) and text[isa_end] in "\r\n":
        isa_end += 1
    found = Interchange(
        header=text[at:isa_end],
        separators=seps,
        sender_qualifier=fields[5],
        sender_id=fields[6].strip(),
        receiver_qualifier=fields[7],
        receiver_id=fields[8].strip(),
        date=fields[9],
        time=fields[10],
        version=fields[12],
        control=fields[13],
        ack_requested=fields[14],
        usage=fields[15],
        text="",
    )
    group: Group | None = None
    current: tuple[int, list[str], int] | None = None  # ST start offset, ST elements, position in group
    position = 0
    end = len(text)
    closed = False

    def reject(code: str, message: str) -> None:
        if found.error is None:
            found.error_code, found.error = code, message

    for seg_start, seg_end, body in _segments(text, isa_end, seps.segment):
        elements = body.split(seps.element)
        tag = elements[0]
        end = seg_end
        if group is not None:
            position += 1
        if tag == "IEA":
            closed = True
            if group is not None:
                group.error_code, group.error = "2", "functional group trailer GE missing"
                found.groups.append(group)
            declared = _count(elements[1]) if len(elements) > 1 else None
            if len(elements) < 3 or elements[2] != found.control:
                reject("001", f"IEA02 {elements[2:3]} does not match ISA13 {found.control!r}")
            elif declared != len(found.groups):
                reject("021", f"IEA01 says {elements[1]} group(s) but the interchange has {len(found.groups)}")
            break
        if tag == "GS":
            if group is not None:
                reject("024", f"GS at offset {seg_start} opens a group before the previous one ended with GE")
                found.groups.append(group)
            group = Group(
                functional_id=elements[1] if len(elements) > 1 else "",
                sender=elements[2] if len(elements) > 2 else "",
                receiver=elements[3] if len(elements) > 3 else "",
                control=elements[6] if len(elements) > 6 else "",
                version=elements[8] if len(elements) > 8 else "",
                header=text[seg_start:seg_end],
            )
            if len(elements) < 9 or not group.control:
                group.error_code, group.error = "1", "GS must have 8 elements with a control number in GS06"
            position = 0
            current = None
            continue
        if group is None:
            reject("024", f"segment {tag[:3]!r} at offset {seg_start} is outside any functional group")
            continue
        if tag == "ST":
            if current is not None:
                st = current[1]
                group.sets.append(
                    TransactionSet(
                        st[1] if len(st) > 1 else "",
                        st[2] if len(st) > 2 else "",
                        text[current[0] : seg_start],
                        current[2],
                        position - current[2],
                        "2",
                        "transaction set trailer SE missing",
                    )
                )
            current = (seg_start, elements, position)
            continue
        if tag == "SE":
            if current is None:
                group.error_code = group.error_code or "1"
                group.error = group.error or f"SE at offset {seg_start} without an ST"
                continue
            st, count = current[1], position - current[2] + 1
            transaction = TransactionSet(
                st[1] if len(st) > 1 else "",
                st[2] if len(st) > 2 else "",
                text[current[0] : seg_end],
                current[2],
                count,
            )
            if len(st) < 3 or not st[2]:
                transaction.error_code, transaction.error = "3", "ST02 control number missing"
            elif len(elements) < 3 or elements[2] != st[2]:
                transaction.error_code = "3"
                transaction.error = f"SE02 {elements[2:3]} does not match ST02 {st[2]!r}"
            elif _count(elements[1]) != count:
                transaction.error_code = "4"
                transaction.error = f"SE01 says {elements[1]} segment(s) but the set has {count}"
            group.sets.append(transaction)
            current = None
            continue
        if tag == "GE":
            if current is not None:
                st = current[1]
                group.sets.append(
                    TransactionSet(
                        st[1] if len(st) > 1 else "",
                        st[2] if len(st) > 2 else "",
                        text[current[0] : seg_start],
                        current[2],
                        position - current[2],
                        "2",
                        "transaction set trailer SE missing",
                    )
                )
                current = None
            group.declared_sets = _count(elements[1]) if len(elements) > 1 else None
            if group.error is None:
                if len(elements) < 3 or elements[2] != group.control:
                    group.error_code = "4"
                    group.error = f"GE02 {elements[2:3]} does not match GS06 {group.control!r}"
                elif group.declared_sets != len(group.sets):
                    group.error_code = "5"
                    group.error = f"GE01 says {elements[1]} set(s) but the group has {len(group.sets)}"
            found.groups.append(group)
            group = None
            continue
        if current is None:
            group.error_code = group.error_code or "1"
            group.error = group.error or f"segment {tag[:3]!r} at offset {seg_start} is outside any transaction set"
    if not closed:
        if group is not None:
            found.groups.append(group)
        reject("023", "the file ends before the interchange's IEA (improper end of file)")
    found.text = text[at:end]
    return found, end


def split_file(data: bytes) -> SplitFile:
    """Cut a file into interchanges (one file may hold several, back to back, with line breaks between).

    Characters are read as ISO-8859-1, one per byte, so every offset is a byte offset and no byte
    is lost or replaced; a set's UTF-8 text is decoded where it is mapped.
    """
    text = data.decode("latin-1")
    result = SplitFile()
    at, size = 0, len(text)
    while True:
        while at < size and text[at] in _WHITESPACE:
            at += 1
        if at >= size:
            break
        if not text.startswith("ISA", at):
            result.problems.append(f"offset {at}: expected an interchange (ISA); the rest of the file is not read")
            break
        read = _read_isa(text, at)
        if isinstance(read, str):
            result.problems.append(f"{read}; the rest of the file is not read")
            break
        interchange, at = _interchange(text, at, *read)
        result.interchanges.append(interchange)
    if not result.interchanges and not result.problems:
        result.problems.append("the file is empty")
    return result
