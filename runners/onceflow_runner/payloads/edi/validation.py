"""Per-set validation with pyx12: each transaction set checked against its map, A/E/R per set.

Why pyx12 (docs/edi.md, "Library choice"): it is the one permissively licensed (BSD), maintained
X12 validator that checks segment and element requirements per transaction set (usage, order,
repeats, lengths, types, code lists, X12 syntax rules such as "if PO104 then PO105"), not only
envelopes. It ships maps for the 997/999 and the HIPAA sets; the supply-chain sets come from
`maps.py`, rendered once per process into a private map folder beside pyx12's own envelope
maps, data element dictionary (with the few elements it lacks added) and code lists.

pyx12 reads one interchange at a time here: `envelope.split_interchanges` has already cut the
file and rejected what is not an interchange, so pyx12 only judges the sets. Whatever pyx12
raises on input it cannot read becomes a rejection of that interchange with pyx12's message,
never an exception out of this module.
"""

from __future__ import annotations

import atexit
import io
import json
import logging
import shutil
import tempfile
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import pyx12.errors
import pyx12.params
import pyx12.x12n_document

from onceflow_runner.payloads.edi.maps import EXTRA_DATA_ELEMENTS, TRANSACTION_SETS, render_map

__all__ = ["SetResult", "ValidationResult", "map_folder", "validate_interchange"]

#: pyx12's own files the private map folder reuses as they are.
_COPIED = ("codes.xml", "x12.control.00401.xml")
#: What pyx12's 997 map lists for AK101/AK201 is HIPAA only: the supply-chain ids are added.
ACKNOWLEDGED_GROUPS = ("PO", "PR", "SH", "IN", "PC", "OG")
ACKNOWLEDGED_SETS = ("850", "855", "856", "810", "860", "875")
_lock = threading.Lock()
_folder: Path | None = None
# pyx12 logs every finding at ERROR with the partner's data; the findings come back in the result.
logging.getLogger("pyx12").setLevel(logging.CRITICAL)


@dataclass(frozen=True)
class SetResult:
    """pyx12's verdict on one set: A accepted, E accepted with errors, R rejected; AK3/AK4 details."""

    set_id: str
    control: str
    code: str
    #: (segment id, position in the set, segment error code, element position, element error code, text)
    errors: tuple[tuple[str, int, str, int | None, str | None, str], ...] = ()


@dataclass
class ValidationResult:
    """What pyx12 found in one interchange: per set, by (GS06, ST02); or why it could not read it."""

    sets: dict[tuple[str, str], SetResult] = field(default_factory=dict)
    #: Group-level findings by GS06 (AK9 codes), and interchange-level text (envelope problems).
    group_errors: dict[str, list[str]] = field(default_factory=dict)
    interchange_errors: list[str] = field(default_factory=list)


def map_folder() -> Path:
    """The private pyx12 map folder of this process (built on first use)."""
    global _folder
    with _lock:
        if _folder is None:
            # Under /tmp (an emptyDir in pods, whose root filesystem is read-only); removed at exit.
            created = Path(tempfile.mkdtemp(prefix="onceflow-x12-maps-"))
            atexit.register(shutil.rmtree, created, True)
            _folder = _build_folder(created)
        return _folder


def _build_folder(folder: Path) -> Path:
    source = files("pyx12").joinpath("map")
    for name in _COPIED:
        (folder / name).write_bytes(source.joinpath(name).read_bytes())
    dictionary = ET.fromstring(source.joinpath("dataele.xml").read_bytes())
    known = {e.get("ele_num") for e in dictionary.iter("data_ele")}
    for number, (kind, low, high, name) in EXTRA_DATA_ELEMENTS.items():
        if number not in known:
            ET.SubElement(
                dictionary, "data_ele", ele_num=number, data_type=kind, min_len=str(low), max_len=str(high), name=name
            )
    ET.ElementTree(dictionary).write(folder / "dataele.xml", encoding="utf-8", xml_declaration=True)
    names = {str(e.get("ele_num")): str(e.get("name")) for e in dictionary.iter("data_ele")}
    envelope = ET.fromstring(source.joinpath("997.4010.xml").read_bytes())
    acknowledgment = ET.fromstring(source.joinpath("997.4010.xml").read_bytes())
    for xid, codes in (("AK101", ACKNOWLEDGED_GROUPS), ("AK201", ACKNOWLEDGED_SETS)):
        for valid in acknowledgment.iterfind(f".//element[@xid='{xid}']/valid_codes"):
            for code in codes:
                ET.SubElement(valid, "code").text = code
    ET.ElementTree(acknowledgment).write(folder / "997.4010.xml", encoding="utf-8", xml_declaration=True)
    index = ET.Element("maps")
    version = ET.SubElement(index, "version", icvn="00401")
    for spec in TRANSACTION_SETS.values():
        filename = f"{spec.xid}.4010.xml"
        ET.ElementTree(render_map(spec, envelope, names)).write(
            folder / filename, encoding="utf-8", xml_declaration=True
        )
        ET.SubElement(version, "map", vriic=spec.version, fic=spec.functional_id, abbr=spec.xid).text = filename
    ET.SubElement(version, "map", vriic="004010", fic="FA", abbr="997").text = "997.4010.xml"
    ET.SubElement(version, "map", vriic="", fic="", abbr="X12").text = "x12.control.00401.xml"
    ET.ElementTree(index).write(folder / "maps.xml", encoding="utf-8", xml_declaration=True)
    return folder


def _segment_errors(segments: list[dict[str, Any]]) -> tuple[tuple[str, int, str, int | None, str | None, str], ...]:
    found: list[tuple[str, int, str, int | None, str | None, str]] = []
    for seg in segments:
        seg_id, position = str(seg.get("seg_id") or "?"), int(seg.get("seg_count") or 0)
        for err in seg.get("errors") or []:
            found.append((seg_id, position, str(err.get("err_cde") or "8"), None, None, str(err.get("err_str") or "")))
        for ele in seg.get("elements") or []:
            for err in ele.get("errors") or []:
                found.append(
                    (
                        seg_id,
                        position,
                        "8",
                        int(ele.get("ele_pos") or 0) or None,
                        str(err.get("err_cde") or "7"),
                        str(err.get("err_str") or ""),
                    )
                )
    return tuple(found)


def validate_interchange(text: str) -> ValidationResult:
    """Validate one interchange (ISA ... IEA) against the maps; never raises for bad input."""
    result = ValidationResult()
    report, ack = io.StringIO(), io.StringIO()
    try:
        pyx12.x12n_document.x12n_document(
            pyx12.params.params(), io.StringIO(text), ack, None, None, report, map_path=str(map_folder())
        )
    except (pyx12.errors.X12Error, pyx12.errors.EngineError) as exc:
        result.interchange_errors.append(f"the validator could not read the interchange: {exc}")
        return result
    except Exception as exc:  # pyx12 on hostile input: a rejection with its reason, never a crash
        result.interchange_errors.append(f"the validator could not read the interchange ({type(exc).__name__})")
        return result
    try:
        document = json.loads(report.getvalue() or "{}")
    except ValueError:
        result.interchange_errors.append("the validator produced no report")
        return result
    for isa in document.get("interchanges") or []:
        result.interchange_errors.extend(str(e.get("err_str") or e) for e in isa.get("errors") or [])
        for gs in isa.get("groups") or []:
            control = str(gs.get("gs_control_num") or "")
            errors = [str(e.get("err_str") or e) for e in gs.get("errors") or []]
            if errors:
                result.group_errors[control] = errors
            for st in gs.get("transactions") or []:
                key = (control, str(st.get("trn_set_control_num") or ""))
                set_errors = _segment_errors(st.get("segments") or [])
                set_errors += tuple(
                    ("ST", 1, "8", None, None, str(e.get("err_str") or e)) for e in st.get("errors") or []
                )
                result.sets[key] = SetResult(
                    set_id=str(st.get("trn_set_id") or ""),
                    control=key[1],
                    code=str(st.get("ack_code") or ("R" if set_errors else "A")),
                    errors=set_errors,
                )
    return result
