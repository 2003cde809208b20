"""X12 850 files for the EDI tests: interchanges of purchase orders, as a partner would send them."""

from __future__ import annotations

from onceflow_runner.contract.edi import EdiPartnerPlan
from onceflow_runner.payloads.edi.envelope import split_file


def partner_plan(namespace: str = "sales", *, port: int = 22, connector: str = "acme-edi") -> EdiPartnerPlan:
    return EdiPartnerPlan.model_validate(
        {
            "namespace": namespace,
            "connector": connector,
            "system": "acme",
            "envelope": {
                "ours": {"qualifier": "ZZ", "id": "ONCEDIST", "applicationCode": "ONCEDIST"},
                "partner": {"qualifier": "ZZ", "id": "ACMEBUY", "applicationCode": "ACMEBUY"},
            },
            "sftp": {
                "host": "127.0.0.1",
                "port": port,
                "username": "acme",
                "password": {"name": "acme-sftp", "key": "password"},
                "knownHosts": {"name": "acme-sftp", "key": "known_hosts"},
                "pickup": "/to-onceflow",
                "drop": "/from-onceflow",
                "pollSeconds": 0.2,
                "leaseSeconds": 60,
            },
        }
    )


def purchase_order(st02: int, po: str, lines: int = 2) -> list[str]:
    segments = [
        f"ST*850*{st02:04d}",
        f"BEG*00*SA*{po}**20261130",
        "CUR*BY*USD",
        "N1*BY*Acme Retail*92*ACME01",
        "N1*ST*Acme DC 7*92*DC7",
        "N3*7 Dock Rd",
        "N4*Joliet*IL*60431*US",
    ]
    for line in range(1, lines + 1):
        segments += [
            f"PO1*{line}*{line * 2}*EA*{9.5 + line:.2f}**BP*SKU-{line:05d}*UP*036000291452",
            f"PID*F****Widget {line}",
        ]
    segments.append(f"CTT*{lines}")
    segments.append(f"SE*{len(segments) + 1}*{st02:04d}")
    return segments


def interchange(control: int, orders: list[list[str]], *, sender: str = "ACMEBUY", iea: int | None = None) -> str:
    segments = [
        f"ISA*00*          *00*          *ZZ*{sender:<15}*ZZ*{'ONCEDIST':<15}*261130*0349*U*00401*{control:09d}*0*P*>",
        f"GS*PO*{sender}*ONCEDIST*20261130*0349*{control}*X*004010",
    ]
    for order in orders:
        segments += order
    segments += [f"GE*{len(orders)}*{control}", f"IEA*1*{(iea if iea is not None else control):09d}"]
    return "~\n".join(segments) + "~\n"


def malformed_order(st02: int, po: str) -> list[str]:
    """An 850 whose first line has no quantity (PO102): the validator rejects this set only."""
    order = purchase_order(st02, po)
    order[7] = order[7].replace("PO1*1*2*EA", "PO1*1**EA")
    return order


def two_interchanges_one_bad_set(base: int = 1) -> bytes:
    """2 interchanges x 3 sets; the second set of the first interchange is malformed."""
    first = interchange(
        base, [purchase_order(1, f"PO-{base}-1"), malformed_order(2, f"PO-{base}-2"), purchase_order(3, f"PO-{base}-3")]
    )
    second = interchange(base + 1, [purchase_order(i, f"PO-{base + 1}-{i}") for i in (1, 2, 3)])
    return (first + second).encode()


def partner_997(control: int, *, acknowledged_group: int = 17) -> bytes:
    """The partner's 997 for an 855 we sent (group `acknowledged_group`): all accepted."""
    segments = [
        f"ISA*00*          *00*          *ZZ*{'ACMEBUY':<15}*ZZ*{'ONCEDIST':<15}*261130*0400*U*00401*{control:09d}*0*P*>",
        f"GS*FA*ACMEBUY*ONCEDIST*20261130*0400*{control}*X*004010",
        "ST*997*0001",
        f"AK1*PR*{acknowledged_group}",
        "AK2*855*0001",
        "AK5*A",
        "AK9*A*1*1*1",
        "SE*6*0001",
        f"GE*1*{control}",
        f"IEA*1*{control:09d}",
    ]
    return ("~\n".join(segments) + "~\n").encode()


def order_acknowledgment(po: str = "PO-1001") -> dict[str, object]:
    """The canonical order as the ERP confirmed it: one line accepted, one backordered (an 855's source)."""
    return {
        "po_no": po,
        "order_date": "2026-11-29",
        "currency": "USD",
        "lines": [
            {"sku": "WID-1", "quantity": 10, "price": 4.5, "gtin": "00614141000012"},
            {"sku": "WID-2", "quantity": 5, "uom": "CA", "status": "backordered", "ship_date": "2026-12-04"},
        ],
    }


def ship_notice(po: str = "PO-1001", note: str = "DN-0042") -> dict[str, object]:
    """A shipment of two cartons, SSCCs to be computed from the company prefix and serials (an 856's source)."""
    return {
        "delivery_note": note,
        "po_no": po,
        "ship_date": "2026-12-01",
        "carrier": "UPSN",
        "tracking_number": "1Z999AA10123456784",
        "gs1_company_prefix": "00614141",
        "packs": [
            {"serial": 1, "items": [{"sku": "WID-1", "quantity": 6}]},
            {"serial": 2, "items": [{"sku": "WID-1", "quantity": 4}, {"sku": "WID-2", "quantity": 5, "uom": "CA"}]},
        ],
    }


def invoice(po: str = "PO-1001", number: str = "INV-7") -> dict[str, object]:
    """A posted invoice for the shipped lines (an 810's source)."""
    return {
        "invoice_number": number,
        "invoice_date": "2026-12-01",
        "po_no": po,
        "currency": "USD",
        "total": 67.5,
        "lines": [
            {"sku": "WID-1", "quantity": 10, "price": 4.5},
            {"sku": "WID-2", "quantity": 5, "uom": "CA", "price": 4.5},
        ],
    }


def partner_997_for(document: bytes, control: int, *, code: str = "A") -> bytes:
    """The partner's 997 for one document we sent (AK1 names its GS06, AK2 its ST02); R rejects it (AK5 R 5)."""
    group = split_file(document).interchanges[0].groups[0]
    st = group.sets[0]
    body = ["AK1*" + group.functional_id + "*" + group.control, f"AK2*{st.set_id}*{st.control}"]
    body += ["AK5*A"] if code == "A" else ["AK3*TDS*5**8", "AK5*R*5"]
    body.append(f"AK9*{code}*1*1*{1 if code == 'A' else 0}")
    segments = [
        f"ISA*00*          *00*          *ZZ*{'ACMEBUY':<15}*ZZ*{'ONCEDIST':<15}*261130*0400*U*00401*{control:09d}*0*P*>",
        f"GS*FA*ACMEBUY*ONCEDIST*20261130*0400*{control}*X*004010",
        "ST*997*0001",
        *body,
        f"SE*{len(body) + 2}*0001",
        f"GE*1*{control}",
        f"IEA*1*{control:09d}",
    ]
    return ("~\n".join(segments) + "~\n").encode()


def change_order(st02: int, po: str, *, line_change: str = "QI") -> list[str]:
    """An 860 changing PO `po`: line 1's quantity (POC02 `line_change`), line 3 added, line 2 deleted."""
    segments = [
        f"ST*860*{st02:04d}",
        f"BCH*04*SA*{po}**1*20261130",
        "CUR*BY*USD",
        "N1*BY*Acme Retail*92*ACME01",
        f"POC*1*{line_change}*12*10*EA*10.50**BP*SKU-00001",
        "POC*2*DI*0*0*EA***BP*SKU-00002",
        "POC*3*AI*5**CA*40**BP*SKU-00003*UP*036000291452",
        "CTT*3",
    ]
    segments.append(f"SE*{len(segments) + 1}*{st02:04d}")
    return segments


def grocery_order(st02: int, po: str, *, total: int = 30) -> list[str]:
    """An 875 for two lines of cases: one by U.P.C. case code only, one with the vendor's item number too."""
    segments = [
        f"ST*875*{st02:04d}",
        f"G50*N*20261130*{po}",
        "N9*IA*77123",
        "G62*02*20261205",
        "N1*BY*Fresh Valley Markets*92*FV01",
        "N1*ST*Fresh Valley DC 2*92*DC2",
        "N3*12 Market St",
        "N4*Fresno*CA*93721*US",
        "G68*10*CA*18.40*007114103012",
        "G69*Sparkling Water 12x1L",
        "G68*20*CA*9.95*007114103029*VN*SKU-00002",
        f"G76*{total}*CA",
    ]
    segments.append(f"SE*{len(segments) + 1}*{st02:04d}")
    return segments
