"""Transaction set maps for pyx12, written as compact tables and rendered to pyx12's XML map format.

Why tables and not hand-written XML: pyx12 (the validator, see docs/edi.md "Library choice")
ships maps for the HIPAA sets and the 997/999 but none for the supply-chain sets a distributor
trades (850, 855, 856, 810). A pyx12 map is an XML implementation guide: which segments a set
may carry, in which order, how often, which elements each requires, their data element numbers
(type and length come from pyx12's own `dataele.xml`) and code lists. Writing that as a table
of a few dozen lines per set keeps the guide readable and reviewable; `render_map` turns it into
the XML pyx12 reads, reusing the ISA/GS envelope definitions from pyx12's own 997 map, so the
envelope rules are pyx12's and only the set body is ours.

Segments a partner sends that the map does not list are errors (pyx12 reports "unexpected
segment", 997 AK3 code 2): extend the table when a partner's guide needs more.
"""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

__all__ = [
    "EXTRA_DATA_ELEMENTS",
    "SET_810",
    "SET_850",
    "SET_855",
    "SET_856",
    "SET_860",
    "SET_875",
    "TRANSACTION_SETS",
    "Element",
    "Loop",
    "Segment",
    "TransactionSet",
]


@dataclass(frozen=True)
class Element:
    """One element of a segment: its X12 data element number, usage (R required, S situational), codes."""

    data_ele: str
    usage: str = "S"
    codes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Segment:
    """A segment in a set: id, usage, how often it may repeat, its elements in order, X12 syntax notes."""

    xid: str
    name: str
    usage: str
    max_use: str
    elements: tuple[Element, ...]
    syntax: tuple[str, ...] = ()


@dataclass(frozen=True)
class Loop:
    """A loop: its first segment opens it; `repeat` bounds how many times it may occur."""

    xid: str
    name: str
    usage: str
    repeat: str
    children: tuple[Segment | Loop, ...]


@dataclass(frozen=True)
class TransactionSet:
    """A set's map: its id (ST01), functional identifier (GS01), version (GS08) and its three areas."""

    xid: str
    name: str
    functional_id: str
    version: str
    header: tuple[Segment | Loop, ...]
    detail: tuple[Segment | Loop, ...] = ()
    summary: tuple[Segment | Loop, ...] = ()
    notes: tuple[str, ...] = field(default=())


#: Data elements the 850 uses that pyx12's dataele.xml (HIPAA-centred) lacks: number -> (type, min, max, name).
EXTRA_DATA_ELEMENTS: dict[str, tuple[str, int, int, str]] = {
    "92": ("ID", 2, 2, "Purchase Order Type Code"),
    "330": ("R", 1, 15, "Quantity Ordered"),
    "587": ("ID", 2, 2, "Acknowledgment Type"),
    "333": ("ID", 1, 2, "Terms Basis Date Code"),
    "336": ("ID", 2, 2, "Terms Type Code"),
    "370": ("DT", 8, 8, "Terms Discount Due Date"),
    "351": ("N0", 1, 3, "Terms Discount Days Due"),
    "446": ("DT", 8, 8, "Terms Net Due Date"),
    "386": ("N0", 1, 3, "Terms Net Days"),
    "146": ("ID", 2, 2, "Shipment Method of Payment"),
    "133": ("ID", 1, 2, "Routing Sequence Code"),
    "91": ("ID", 1, 2, "Transportation Method/Type Code"),
    "387": ("AN", 1, 35, "Routing"),
    "356": ("N0", 1, 6, "Pack"),
    "357": ("R", 1, 8, "Size"),
    # The outbound sets (855, 856, 810):
    "668": ("ID", 2, 2, "Line Item Status Code"),
    "76": ("AN", 1, 22, "Invoice Number"),
    "396": ("AN", 2, 30, "Shipment Identification"),
    "382": ("R", 1, 10, "Number of Units Shipped"),
    "80": ("N0", 1, 7, "Lading Quantity"),
    "88": ("ID", 1, 2, "Marks and Numbers Qualifier"),
    "87": ("AN", 1, 48, "Marks and Numbers"),
    "327": ("AN", 1, 8, "Change Order Sequence Number"),
    "670": ("ID", 2, 2, "Change or Response Type Code"),
    "671": ("R", 1, 9, "Quantity Left to Receive"),
    "963": ("ID", 2, 2, "Tax Type Code"),
    # The 875 grocery order:
    "473": ("ID", 1, 1, "Order Status Code"),
    "441": ("ID", 1, 1, "Tax Exempt Code"),
    "474": ("AN", 1, 22, "Master Reference (Link) Number"),
    "472": ("N0", 6, 6, "Link Sequence Number"),
    "432": ("ID", 2, 2, "Date Qualifier"),
    "176": ("ID", 1, 1, "Time Qualifier"),
    "369": ("AN", 1, 45, "Free-form Description"),
    "237": ("R", 1, 9, "Item List Cost"),
    "438": ("AN", 12, 12, "U.P.C. Case Code"),
    "398": ("R", 1, 10, "Order Sizing Factor"),
}

_REF = Segment(
    "REF", "Reference Identification", "S", ">1", (Element("128", "R"), Element("127"), Element("352")), ("R0203",)
)
_PER = Segment(
    "PER",
    "Administrative Communications Contact",
    "S",
    "3",
    (Element("366", "R"), Element("93"), Element("365"), Element("364"), Element("365"), Element("364")),
    ("P0304", "P0506"),
)
_DTM = Segment(
    "DTM", "Date/Time Reference", "S", "10", (Element("374", "R"), Element("373"), Element("337")), ("R020305",)
)
_PRODUCT_IDS = tuple(e for _ in range(5) for e in (Element("235"), Element("234")))
#: The PO line as the 850 orders it and the 855 acknowledges it (the same segment in both sets).
_PO1 = Segment(
    "PO1",
    "Baseline Item Data",
    "R",
    "1",
    (
        Element("350"),
        Element("330", "R"),
        Element("355", "R"),
        Element("212"),
        Element("639"),
        Element("235", "R"),
        Element("234", "R"),
        *_PRODUCT_IDS[2:],
    ),
    ("C0302", "C0504", "P0607", "P0809", "P1011", "P1213", "P1415"),
)

#: 850 Purchase Order, version 004010: the segments a distributor takes from its trading partners.
#: Quantity, unit and a product id are required on every PO1 (the order cannot be filled without them).
SET_850 = TransactionSet(
    xid="850",
    name="Purchase Order",
    functional_id="PO",
    version="004010",
    header=(
        Segment(
            "BEG",
            "Beginning Segment for Purchase Order",
            "R",
            "1",
            (
                Element("353", "R", ("00", "01", "05", "06", "07")),
                Element("92", "R"),
                Element("324", "R"),
                Element("328"),
                Element("373", "R"),
                Element("367"),
                Element("587"),
            ),
        ),
        Segment("CUR", "Currency", "S", "1", (Element("98", "R"), Element("100", "R"), Element("280"))),
        _REF,
        _PER,
        Segment("FOB", "F.O.B. Related Instructions", "S", ">1", (Element("146", "R"), Element("309"), Element("352"))),
        Segment(
            "ITD",
            "Terms of Sale/Deferred Terms of Sale",
            "S",
            ">1",
            tuple(Element(n) for n in ("336", "333", "338", "370", "351", "446", "386")),
        ),
        _DTM,
        Segment(
            "TD5",
            "Carrier Details (Routing Sequence/Transit Time)",
            "S",
            "12",
            (Element("133"), Element("66"), Element("67"), Element("91"), Element("387")),
            ("P0203",),
        ),
        Loop(
            "N1_LOOP",
            "Name",
            "S",
            "200",
            (
                Segment(
                    "N1",
                    "Name",
                    "R",
                    "1",
                    (Element("98", "R"), Element("93"), Element("66"), Element("67")),
                    ("R0203", "P0304"),
                ),
                Segment("N2", "Additional Name Information", "S", "2", (Element("93", "R"), Element("93"))),
                Segment("N3", "Address Information", "S", "2", (Element("166", "R"), Element("166"))),
                Segment(
                    "N4",
                    "Geographic Location",
                    "S",
                    "1",
                    (Element("19"), Element("156"), Element("116"), Element("26")),
                ),
                _REF,
                _PER,
            ),
        ),
    ),
    detail=(
        Loop(
            "PO1_LOOP",
            "Baseline Item Data",
            "R",
            "100000",
            (
                _PO1,
                Segment(
                    "PID",
                    "Product/Item Description",
                    "S",
                    "1000",
                    (Element("349", "R"), Element("750"), Element("559"), Element("751"), Element("352")),
                ),
                Segment("PO4", "Item Physical Details", "S", "1", (Element("356"), Element("357"), Element("355"))),
                _REF,
                _DTM,
            ),
        ),
    ),
    summary=(
        Loop(
            "CTT_LOOP",
            "Transaction Totals",
            "S",
            "1",
            (
                Segment("CTT", "Transaction Totals", "R", "1", (Element("354", "R"), Element("347"))),
                Segment("AMT", "Monetary Amount", "S", "1", (Element("522", "R"), Element("782", "R"))),
            ),
        ),
    ),
)

_N1_LOOP = SET_850.header[-1]
_CTT = Segment("CTT", "Transaction Totals", "R", "1", (Element("354", "R"), Element("347")))
#: The product ids after the first pair (PO1/IT1/LIN carry up to ten of them in 235/234 pairs).
_MORE_PRODUCT_IDS = _PRODUCT_IDS[2:]

#: 855 Purchase Order Acknowledgment, version 004010: BAK, then per line the PO1 as ordered and an
#: ACK saying what happens to it (accepted, rejected, backordered, changed).
SET_855 = TransactionSet(
    xid="855",
    name="Purchase Order Acknowledgment",
    functional_id="PR",
    version="004010",
    header=(
        Segment(
            "BAK",
            "Beginning Segment for Purchase Order Acknowledgment",
            "R",
            "1",
            (
                Element("353", "R", ("00", "06")),
                Element("587", "R", ("AC", "AD", "AE", "AK", "RD", "RJ")),
                Element("324", "R"),
                Element("373", "R"),
                Element("328"),
            ),
        ),
        Segment("CUR", "Currency", "S", "1", (Element("98", "R"), Element("100", "R"))),
        _REF,
        _DTM,
        _N1_LOOP,
    ),
    detail=(
        Loop(
            "PO1_LOOP",
            "Baseline Item Data",
            "R",
            "100000",
            (
                _PO1,
                Segment(
                    "ACK",
                    "Line Item Acknowledgment",
                    "R",
                    "104",
                    (
                        Element("668", "R", ("IA", "IB", "IC", "IR", "IQ", "ID", "IP")),
                        Element("380"),
                        Element("355"),
                        Element("374"),
                        Element("373"),
                    ),
                    ("P0203", "C0405"),
                ),
            ),
        ),
    ),
    summary=(Loop("CTT_LOOP", "Transaction Totals", "S", "1", (_CTT,)),),
)

#: 856 Ship Notice/Manifest, version 004010, in the Shipment/Order/Pack/Item (SOPI) hierarchy: one
#: HL loop per level, each level carrying only its own segments (the map allows them all; the
#: builder writes TD1/TD5/REF/DTM/N1 at S, PRF at O, MAN*GM with the SSCC-18 at P, LIN/SN1 at I).
SET_856 = TransactionSet(
    xid="856",
    name="Ship Notice/Manifest",
    functional_id="SH",
    version="004010",
    header=(
        Segment(
            "BSN",
            "Beginning Segment for Ship Notice",
            "R",
            "1",
            (
                Element("353", "R", ("00", "06")),
                Element("396", "R"),
                Element("373", "R"),
                Element("337", "R"),
                Element("1005", "S", ("0001", "0002", "0004")),
            ),
        ),
        _DTM,
    ),
    detail=(
        Loop(
            "HL_LOOP",
            "Hierarchical Level",
            "R",
            "200000",
            (
                Segment(
                    "HL",
                    "Hierarchical Level",
                    "R",
                    "1",
                    (
                        Element("628", "R"),
                        Element("734"),
                        Element("735", "R", ("S", "O", "P", "T", "I")),
                        Element("736"),
                    ),
                ),
                Segment(
                    "LIN",
                    "Item Identification",
                    "S",
                    "1",
                    (Element("350"), Element("235", "R"), Element("234", "R"), *_MORE_PRODUCT_IDS),
                    ("P0405", "P0607", "P0809", "P1011", "P1213"),
                ),
                Segment(
                    "SN1",
                    "Item Detail (Shipment)",
                    "S",
                    "1",
                    (Element("350"), Element("382", "R"), Element("355", "R")),
                ),
                Segment(
                    "PRF",
                    "Purchase Order Reference",
                    "S",
                    "1",
                    (Element("324", "R"), Element("328"), Element("327"), Element("373")),
                ),
                Segment("TD1", "Carrier Details (Quantity and Weight)", "S", "20", (Element("103"), Element("80"))),
                Segment(
                    "TD5",
                    "Carrier Details (Routing Sequence/Transit Time)",
                    "S",
                    "12",
                    (Element("133"), Element("66"), Element("67"), Element("91"), Element("387")),
                    ("P0203",),
                ),
                _REF,
                Segment(
                    "MAN",
                    "Marks and Numbers",
                    "S",
                    ">1",
                    (Element("88", "R", ("GM", "CP", "UC", "AA")), Element("87", "R")),
                ),
                _DTM,
                _N1_LOOP,
            ),
        ),
    ),
    summary=(Loop("CTT_LOOP", "Transaction Totals", "S", "1", (_CTT,)),),
)

#: 810 Invoice, version 004010: BIG, an IT1 per line, TDS (the total in cents), the taxes (TXI) and
#: charges or allowances (SAC) the total holds, and CTT.
SET_810 = TransactionSet(
    xid="810",
    name="Invoice",
    functional_id="IN",
    version="004010",
    header=(
        Segment(
            "BIG",
            "Beginning Segment for Invoice",
            "R",
            "1",
            (Element("373", "R"), Element("76", "R"), Element("373"), Element("324")),
        ),
        Segment("CUR", "Currency", "S", "1", (Element("98", "R"), Element("100", "R"))),
        _REF,
        _N1_LOOP,
        Segment(
            "ITD",
            "Terms of Sale/Deferred Terms of Sale",
            "S",
            ">1",
            tuple(Element(n) for n in ("336", "333", "338", "370", "351", "446", "386")),
        ),
        _DTM,
    ),
    detail=(
        Loop(
            "IT1_LOOP",
            "Baseline Item Data (Invoice)",
            "R",
            "200000",
            (
                Segment(
                    "IT1",
                    "Baseline Item Data (Invoice)",
                    "R",
                    "1",
                    (
                        Element("350"),
                        Element("358", "R"),
                        Element("355", "R"),
                        Element("212", "R"),
                        Element("639"),
                        Element("235", "R"),
                        Element("234", "R"),
                        *_MORE_PRODUCT_IDS,
                    ),
                    ("P0607", "P0809", "P1011", "P1213", "P1415"),
                ),
                Segment(
                    "PID",
                    "Product/Item Description",
                    "S",
                    "1000",
                    (Element("349", "R"), Element("750"), Element("559"), Element("751"), Element("352")),
                ),
            ),
        ),
    ),
    summary=(
        Segment("TDS", "Total Monetary Value Summary", "R", "1", (Element("610", "R"),)),
        Segment("TXI", "Tax Information", "S", "10", (Element("963", "R"), Element("782", "R"))),
        Loop(
            "SAC_LOOP",
            "Service, Promotion, Allowance, or Charge Information",
            "S",
            "25",
            (
                Segment(
                    "SAC",
                    "Service, Promotion, Allowance, or Charge Information",
                    "S",
                    "1",
                    (Element("248", "R", ("A", "C")), Element("1300"), Element("559"), Element("1301"), Element("610")),
                    ("R0203",),
                ),
            ),
        ),
        _CTT,
    ),
)

#: 860 Purchase Order Change Request - Buyer Initiated, version 004010: BCH (01 cancels the order,
#: 04 changes it), then a POC per changed line saying how (add, delete, quantity or price change).
SET_860 = TransactionSet(
    xid="860",
    name="Purchase Order Change Request - Buyer Initiated",
    functional_id="PC",
    version="004010",
    header=(
        Segment(
            "BCH",
            "Beginning Segment for Purchase Order Change",
            "R",
            "1",
            (
                Element("353", "R", ("01", "04", "05")),
                Element("92", "R"),
                Element("324", "R"),
                Element("328"),
                Element("327"),
                Element("373", "R"),
            ),
        ),
        Segment("CUR", "Currency", "S", "1", (Element("98", "R"), Element("100", "R"), Element("280"))),
        _REF,
        _PER,
        _DTM,
        _N1_LOOP,
    ),
    detail=(
        Loop(
            "POC_LOOP",
            "Line Item Change",
            "S",
            "100000",
            (
                Segment(
                    "POC",
                    "Line Item Change",
                    "R",
                    "1",
                    (
                        Element("350", "R"),
                        Element("670", "R", ("AI", "DI", "QI", "QD", "PC", "CA", "RZ", "CT")),
                        Element("330"),
                        Element("671"),
                        Element("355"),
                        Element("212"),
                        Element("639"),
                        Element("235"),
                        Element("234"),
                        *_PRODUCT_IDS[2:],
                    ),
                    ("P0809", "P1011", "P1213", "P1415", "P1617"),
                ),
                Segment(
                    "PID",
                    "Product/Item Description",
                    "S",
                    "1000",
                    (Element("349", "R"), Element("750"), Element("559"), Element("751"), Element("352")),
                ),
                _REF,
                _DTM,
            ),
        ),
    ),
    summary=(Loop("CTT_LOOP", "Transaction Totals", "S", "1", (_CTT,)),),
)

#: Every set this module maps, by ST01.
#: 875 Grocery Products Purchase Order, version 004010: G50 (status, date, PO number), a G68 per
#: line (quantity, unit, list cost, the U.P.C. case code and product ids), G76 (the totals).
SET_875 = TransactionSet(
    xid="875",
    name="Grocery Products Purchase Order",
    functional_id="OG",
    version="004010",
    header=(
        Segment(
            "G50",
            "Purchase Order Identification",
            "R",
            "1",
            (
                Element("473", "R"),
                Element("373", "R"),
                Element("324", "R"),
                Element("441"),
                Element("474"),
                Element("472"),
                Element("92"),
            ),
            ("P0506",),
        ),
        Segment("N9", "Reference Identification", "S", ">1", (Element("128", "R"), Element("127"), Element("369"))),
        Segment("G61", "Contact", "S", "3", (Element("366", "R"), Element("93", "R"), Element("365"), Element("364"))),
        Segment("G62", "Date/Time", "S", "10", (Element("432"), Element("373"), Element("176"), Element("337"))),
        Segment("NTE", "Note/Special Instruction", "S", "20", (Element("363"), Element("352", "R"))),
        _N1_LOOP,
    ),
    detail=(
        Loop(
            "G68_LOOP",
            "Line Item Detail - Product",
            "R",
            "9999",
            (
                Segment(
                    "G68",
                    "Line Item Detail - Product",
                    "R",
                    "1",
                    (
                        Element("330", "R"),
                        Element("355", "R"),
                        Element("237"),
                        Element("438"),
                        Element("235"),
                        Element("234"),
                        Element("235"),
                        Element("234"),
                    ),
                    ("P0506", "P0708"),
                ),
                Segment("G69", "Line Item Detail - Description", "S", "5", (Element("352", "R"),)),
                Segment("N9", "Reference Identification", "S", ">1", (Element("128", "R"), Element("127"))),
            ),
        ),
    ),
    summary=(
        Segment(
            "G76",
            "Total Purchase Order",
            "R",
            "1",
            (
                Element("330", "R"),
                Element("355", "R"),
                Element("81"),
                Element("355"),
                Element("183"),
                Element("355"),
                Element("398"),
                Element("610"),
            ),
            ("P0304", "P0506"),
        ),
    ),
)

TRANSACTION_SETS: dict[str, TransactionSet] = {s.xid: s for s in (SET_850, SET_855, SET_856, SET_810, SET_860, SET_875)}


def _text(parent: ET.Element, tag: str, value: str) -> ET.Element:
    child = ET.SubElement(parent, tag)
    child.text = value
    return child


def _segment(parent: ET.Element, seg: Segment, pos: int, names: dict[str, str]) -> None:
    node = ET.SubElement(parent, "segment", xid=seg.xid)
    _text(node, "name", seg.name)
    _text(node, "usage", seg.usage)
    _text(node, "pos", f"{pos:03d}")
    _text(node, "max_use", seg.max_use)
    for rule in seg.syntax:
        _text(node, "syntax", rule)
    for seq, element in enumerate(seg.elements, start=1):
        ele = ET.SubElement(node, "element", xid=f"{seg.xid}{seq:02d}")
        _text(ele, "data_ele", element.data_ele)
        _text(ele, "name", names.get(element.data_ele, element.data_ele))
        _text(ele, "usage", element.usage)
        _text(ele, "seq", f"{seq:02d}")
        if element.codes:
            codes = ET.SubElement(ele, "valid_codes")
            for code in element.codes:
                _text(codes, "code", code)


def _children(parent: ET.Element, children: tuple[Segment | Loop, ...], names: dict[str, str]) -> None:
    for index, child in enumerate(children, start=1):
        pos = index * 10
        if isinstance(child, Segment):
            _segment(parent, child, pos, names)
            continue
        loop = ET.SubElement(parent, "loop", xid=child.xid, type="explicit")
        _text(loop, "name", child.name)
        _text(loop, "usage", child.usage)
        _text(loop, "pos", f"{pos:03d}")
        _text(loop, "repeat", child.repeat)
        _children(loop, child.children, names)


def render_map(spec: TransactionSet, envelope_map: ET.Element, names: dict[str, str]) -> ET.Element:
    """The pyx12 XML map of `spec`, its ISA/GS/GE/IEA taken from `envelope_map` (pyx12's 997 map).

    `names` gives each data element's name (pyx12 prints them in its error messages).
    """
    root = copy.deepcopy(envelope_map)
    root.set("xid", spec.xid)
    name = root.find("name")
    if name is not None:
        name.text = f"{spec.name} - {spec.xid}"
    gs01 = root.find("./loop[@xid='ISA_LOOP']/loop[@xid='GS_LOOP']/segment[@xid='GS']/element[@xid='GS01']")
    if gs01 is not None:
        for old in gs01.findall("valid_codes"):
            gs01.remove(old)
        _text(ET.SubElement(gs01, "valid_codes"), "code", spec.functional_id)
    st_loop = root.find("./loop[@xid='ISA_LOOP']/loop[@xid='GS_LOOP']/loop[@xid='ST_LOOP']")
    if st_loop is None:
        raise ValueError("the envelope map has no ST_LOOP")
    st01_codes = st_loop.find("./segment[@xid='ST']/element[@xid='ST01']/valid_codes")
    if st01_codes is not None:
        for old in list(st01_codes):
            st01_codes.remove(old)
        _text(st01_codes, "code", spec.xid)
    se = st_loop.find("./segment[@xid='SE']")
    for area in st_loop.findall("loop"):
        st_loop.remove(area)
    if se is not None:
        st_loop.remove(se)
    for pos, (xid, children) in enumerate(
        (("HEADER", spec.header), ("DETAIL", spec.detail), ("FOOTER", spec.summary)), start=1
    ):
        area = ET.SubElement(st_loop, "loop", xid=xid, type="wrapper")
        _text(area, "name", xid.title())
        _text(area, "usage", "R" if xid != "FOOTER" else "S")
        _text(area, "pos", f"{pos * 10:03d}")
        _text(area, "repeat", "1")
        _children(area, children, names)
    if se is not None:
        se.find("pos").text = "900"  # type: ignore[union-attr]
        st_loop.append(se)
    return root
