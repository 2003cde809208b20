"""docs/edi.md's partner, applied as written: kubectl -> operator -> `<connector>-edi` Deployment run by
the local executor -> a real SFTP server on loopback -> 850s into the sandbox ERP, a 997 back."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from onceflow_operator.dev.executor import LocalExecutor
from tests.conftest import Kubectl
from tests.integration.edi_harness import PASSWORD, SftpServer, sftp
from tests.integration.scenario import Sandboxes, eventually, example_documents, sandbox_effects
from tests.unit.edi_files import two_interchanges_one_bad_set

__all__ = ["sftp"]  # the fixture, imported for pytest

pytestmark = pytest.mark.controlplane
ROOT = Path(__file__).resolve().parents[2]


def documented_partner(server: SftpServer) -> list[dict[str, Any]]:
    """The YAML block of docs/edi.md, pointed at the test's SFTP server."""
    block = re.search(r"```yaml\n(.*?)```", (ROOT / "docs" / "edi.md").read_text(), re.S)
    assert block is not None
    docs = [d for d in yaml.safe_load_all(block.group(1)) if d]
    for doc in docs:
        if doc["kind"] == "Secret":
            public = server.host_key.export_public_key().decode().strip()
            doc["stringData"] = {"password": PASSWORD, "known_hosts": f"[127.0.0.1]:{server.port} {public}"}
        if doc["kind"] == "Connector":
            doc["spec"]["edi"]["sftp"].update(host="127.0.0.1", port=server.port, username="acme", pollInterval="500ms")
    return docs


def pointed_at(docs: list[dict[str, Any]], boxes: Sandboxes) -> list[dict[str, Any]]:
    urls = boxes.base_urls()
    for doc in docs:
        if doc.get("kind") == "Connector" and doc["metadata"]["name"] in urls:
            doc["spec"]["rest"]["baseURL"] = urls[doc["metadata"]["name"]]
    return docs


async def test_the_documented_partner_takes_850s_from_sftp_into_the_erp_and_answers_997s(
    kubectl: Kubectl, operator_running: None, executor: LocalExecutor, boxes: Sandboxes, sftp: SftpServer
) -> None:
    pickup, drop = sftp.root / "to-onceflow", sftp.root / "from-onceflow"
    pickup.mkdir()
    kubectl.apply(*pointed_at(example_documents(), boxes), *documented_partner(sftp))
    await asyncio.to_thread(
        kubectl.run,
        "wait",
        "--for=condition=Ready",
        "connector/acme-edi",
        "integration/acme-orders",
        "--timeout=180s",
    )
    connector = kubectl.get("connector", "acme-edi")
    assert connector["status"]["endpoint"] == f"sftp://127.0.0.1:{sftp.port}/to-onceflow"
    deployment = kubectl.get("deployment", "acme-edi-edi")
    assert deployment["spec"]["replicas"] == 2
    (pickup / "orders.x12").write_bytes(two_interchanges_one_bad_set())

    async def five_orders() -> dict[str, int] | None:
        effects = await sandbox_effects(boxes.erp)
        return effects if len(effects) >= 5 else None

    effects = await eventually(five_orders, within=120)
    assert effects == {
        f"order/edi/{po}/createSalesOrder": 1 for po in ("PO-1-1", "PO-1-3", "PO-2-1", "PO-2-2", "PO-2-3")
    }
    acks = await eventually(
        lambda: sorted(drop.glob("997_acme-edi_*.x12")) if len(list(drop.glob("997_*"))) == 2 else None, within=60
    )
    texts = [p.read_text() for p in acks]
    assert sum(t.count("AK5*A~") for t in texts) == 5
    assert sum(t.count("AK5*R*5~") for t in texts) == 1
    # The file moves to done/ after its 997 is dropped: wait for the move rather than race it.
    done = await eventually(lambda: list((pickup / "done").iterdir()) or None, within=60)
    assert [p.name.endswith("_orders.x12") for p in done] == [True]
