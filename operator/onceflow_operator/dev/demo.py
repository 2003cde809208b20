"""`onceflow dev demo`: the whole system on one machine, the three scenarios played, a summary.

Starts a real kube-apiserver + etcd, a nats-server, the sandbox systems, the operator (its own
process) and the local executor; applies the CRDs and `examples/` (REST Connectors pointed at
the sandboxes; `examples/erps`, Connectors for real ERPs, is left out); waits until everything
is Ready; plays each scenario through the real gateways (and, for the ERP, which sends no
webhooks, by changing its invoices for the poller to find; for the EDI partner of
`examples/edi-partner`, by dropping an 850 on a local SFTP server, whose folder is the partner's
side); prints what was sent and what arrived where, from the sandboxes' own books; stops
everything. Development and evaluation only.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

from onceflow_operator.clients.kube import KubeClient
from onceflow_operator.dev.controlplane import ControlPlane
from onceflow_operator.dev.executor import LocalExecutor, spawn_operator
from onceflow_operator.dev.natsserver import NatsServer
from onceflow_operator.review.exceptions import list_exceptions
from onceflow_runner.gateway.signatures import SignatureConfig, sign
from onceflow_runner.testing.sandbox import ErpSandbox, RecorderSandbox
from onceflow_runner.testing.sftp import SftpSandbox

__all__ = ["Environment", "environment", "main_demo", "main_serve", "run_demo", "serve"]

NAMESPACE = "demo"
#: The ERP effects the scenarios must produce, one each.
EXPECTED_ERP = {
    "customer/DE811907980/createInErp",
    "order/shop/1001/createSalesOrder",
    "order/edi/PO-7781/createSalesOrder",
    "shipment/MAT-DN-00042/picked/updateErp",
    "shipment/MAT-DN-00042/shipped/updateErp",
    "order/edi/PO-8801/createSalesOrder",
}
CRM_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
X12 = (
    "ISA*00*          *00*          *ZZ*ACME           *ZZ*DISTRIBUTOR    *261127*1200*U*00401*000000905*0*P*>~"
    "GS*PO*ACME*DIST*20261127*1200*905*X*004010~ST*850*0001~BEG*00*SA*PO-7781**20261127~CUR*BY*EUR~"
    "N1*BY*Acme Retail*92*ACME01~PO1*1*10*EA*12.50**BP*SKU-1*UP*036000291452~CTT*1~SE*7*0001~GE*1*905~IEA*1*000000905~"
)

#: The 850 the demo's EDI partner drops on its SFTP server (examples/edi-partner's envelope).
PARTNER_850 = (
    "ISA*00*          *00*          *ZZ*ACMEBUY        *ZZ*ONCEDIST       *261127*1200*U*00401*000000881*0*P*>~\n"
    "GS*PO*ACMEBUY*ONCEDIST*20261127*1200*881*X*004010~\nST*850*0001~\nBEG*00*SA*PO-8801**20261127~\n"
    "CUR*BY*USD~\nN1*BY*Acme Retail*92*ACME01~\nPO1*1*24*EA*12.50**BP*SKU-1*UP*036000291452~\n"
    "PO1*2*6*CA*40**BP*SKU-2~\nCTT*2~\nSE*8*0001~\nGE*1*881~\nIEA*1*000000881~\n"
)


def _kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    kubectl = str(Path(sys.executable).parent / "kubectl")
    proc = subprocess.run(
        [kubectl, f"--kubeconfig={kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return proc.stdout


def _say(text: str) -> None:
    print(text, flush=True)


#: How often the demo's scheduled Integrations poll the sandboxes (the examples say 30s).
DEMO_POLL_INTERVAL = "2s"


def _docs(examples: Path, urls: dict[str, str], partner: SftpSandbox | None = None) -> list[dict[str, Any]]:
    docs = []
    # examples/erps are Connectors for real ERPs (docs/connecting-erps.md), not the sandboxes.
    for path in sorted(p for p in examples.rglob("*.yaml") if not {"fixtures", "erps"} & set(p.parts)):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            doc.setdefault("metadata", {})["namespace"] = NAMESPACE
            if doc.get("kind") == "Connector" and doc["metadata"]["name"] in urls:
                rest = doc["spec"]["rest"]
                old = rest["baseURL"]
                rest["baseURL"] = urls[doc["metadata"]["name"]]
                oauth = rest.get("auth", {}).get("oauth2")
                if oauth:
                    oauth["tokenURL"] = oauth["tokenURL"].replace(old, rest["baseURL"])
            schedule = (
                (doc.get("spec", {}).get("trigger") or {}).get("schedule") if doc.get("kind") == "Integration" else None
            )
            if schedule and schedule.get("interval"):
                # As the partner's SFTP listing below: the sandbox ERP's changes are found within
                # seconds of playing them, not after the half minute a real ERP is asked every.
                schedule["interval"] = DEMO_POLL_INTERVAL
            docs.append(doc)
    return _pointed_at_partner(docs, partner) if partner is not None else docs


def _pointed_at_partner(docs: list[dict[str, Any]], partner: SftpSandbox) -> list[dict[str, Any]]:
    """EDI Connectors pointed at the demo's SFTP server; their Secrets hold its login and host key."""
    secrets: dict[str, dict[str, str]] = {}
    for doc in docs:
        if doc.get("kind") == "Connector" and doc["spec"].get("type") == "EDI":
            sftp = doc["spec"]["edi"]["sftp"]
            sftp.update(host="127.0.0.1", port=partner.port, username=partner.username, pollInterval="1s")
            secrets.setdefault(sftp["passwordRef"]["name"], {})[sftp["passwordRef"]["key"]] = partner.password
            secrets.setdefault(sftp["knownHostsRef"]["name"], {})[sftp["knownHostsRef"]["key"]] = partner.known_hosts()
    for doc in docs:
        if doc.get("kind") == "Secret" and doc["metadata"]["name"] in secrets:
            doc["stringData"] = secrets[doc["metadata"]["name"]]
    return docs


async def _wait(what: str, check: Callable[[], Any], within: float = 120) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:  # polled: the condition spans several systems
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.3)
    raise TimeoutError(f"gave up waiting for {what}")


async def _post(
    client: httpx.AsyncClient, url: str, scheme: str, secret: str, body: bytes, delivery: str, **extra: str
) -> int:
    config = SignatureConfig(scheme, header=extra.pop("signature_header", ""))
    headers = sign(config, secret, body, delivery_id=delivery, timestamp=int(time.time())) | extra
    return (await client.post(url, content=body, headers=headers)).status_code


async def _play(executor: LocalExecutor, erp: ErpSandbox, nats_url: str, partner: SftpSandbox) -> list[tuple[str, str]]:
    """Send each scenario's records; return (scenario, what was sent) lines."""

    def port(connector: str) -> int:
        return executor.port_of(NAMESPACE, f"{connector}-gateway")

    sent: list[tuple[str, str]] = []
    async with httpx.AsyncClient(timeout=10) as client:
        customer: dict[str, Any] = {
            "type": "customer.approved",
            "data": {
                "company_name": "Nordwind Logistik GmbH",
                "tax_id": "DE811907980",
                "email": "ap@nordwind.test",
                "credit_limit": 50000,
                "currency": "EUR",
                "address": {"city": "Hamburg", "postal_code": "20095", "country": "DE"},
            },
        }
        body = json.dumps(customer).encode()
        for _ in range(2):
            await _post(
                client,
                f"http://127.0.0.1:{port('crm-webhooks')}/crm",
                "standard-webhooks",
                CRM_SECRET,
                body,
                "crm-evt-1",
            )
        sent.append(("1 customer onboarding", "customer.approved Nordwind Logistik (sent twice: a CRM retry)"))
        bad = {
            **customer,
            "data": {
                **customer["data"],
                "company_name": "Typo Trading",
                "tax_id": "DE999000111",
                "address": {"postal_code": "1", "country": "XX"},
            },
        }
        await _post(
            client,
            f"http://127.0.0.1:{port('crm-webhooks')}/crm",
            "standard-webhooks",
            CRM_SECRET,
            json.dumps(bad).encode(),
            "crm-evt-2",
        )
        sent.append(("1 customer onboarding", "customer.approved Typo Trading with country XX (invalid)"))

        order = {
            "id": 1001,
            "name": "#1001",
            "email": "buyer@acme.test",
            "currency": "EUR",
            "line_items": [{"sku": "SKU-1", "quantity": 3, "price": "12.50", "title": "Widget"}],
            "customer": {"email": "buyer@acme.test"},
        }
        for _ in range(2):
            await _post(
                client,
                f"http://127.0.0.1:{port('shop-webhooks')}/shop",
                "shopify",
                "sandbox-shopify-secret",
                json.dumps(order).encode(),
                "shop-wh-1001",
                **{"X-Shopify-Topic": "orders/create"},
            )
        sent.append(("2 order capture", "shop order #1001 (sent twice: a Shopify retry)"))
        await _post(
            client,
            f"http://127.0.0.1:{port('edi-partner')}/edi/acme",
            "hmac",
            "sandbox-edi-secret",
            X12.encode(),
            "isa-905",
            signature_header="X-Signature",
        )
        sent.append(("2 order capture", "EDI X12 850 PO-7781"))

        for i, event in enumerate(
            [
                {"delivery_note": "MAT-DN-00042", "milestone": "picked"},
                {
                    "delivery_note": "MAT-DN-00042",
                    "milestone": "shipped",
                    "carrier": "DHL",
                    "tracking": "JD0146000012345",
                },
            ]
        ):
            await _post(
                client,
                f"http://127.0.0.1:{port('tpl-webhooks')}/3pl",
                "hmac",
                "sandbox-3pl-secret",
                json.dumps(event).encode(),
                f"3pl-{i}",
                signature_header="X-3PL-Signature",
            )
        sent.append(("3 shipments, invoices", "3PL milestones picked, shipped (MAT-DN-00042)"))
    # The ERP cannot send webhooks: an invoice is drafted, then submitted, as a person does in the
    # ERP; the invoices-from-erp Integration polls it and finds the submitted version.
    invoice: dict[str, Any] = {
        "name": "ACC-SINV-2026-00017",
        "customer": "Nordwind Logistik GmbH",
        "currency": "EUR",
        "grand_total": "1250.00",
        "due_date": "2026-12-27",
        "docstatus": 0,
    }
    erp.seed("Sales Invoice", invoice)
    erp.touch("Sales Invoice", invoice["name"], docstatus=1)
    sent.append(("3 shipments, invoices", "ERP invoice ACC-SINV-2026-00017 submitted (found by polling the ERP)"))
    # The EDI partner uploads under a temporary name and renames, as partners do.
    pickup = partner.root / "to-onceflow"
    pickup.mkdir(parents=True, exist_ok=True)
    (pickup / "po-8801.x12.part").write_text(PARTNER_850)
    (pickup / "po-8801.x12.part").rename(pickup / "po-8801.x12")
    sent.append(("4 EDI partner", "X12 850 PO-8801 dropped on the partner's SFTP server"))
    return sent


def _partner_files(partner: SftpSandbox) -> list[str]:
    """What Onceflow dropped for the partner (997s, 855s, ...), by name."""
    folder = partner.root / "from-onceflow"
    return sorted(p.name for p in folder.glob("*.x12")) if folder.exists() else []


@dataclass
class Environment:
    """Everything `environment()` started, for the demo and for `dev up`."""

    kubeconfig: Path
    nats_url: str
    erp: ErpSandbox
    receivers: dict[str, RecorderSandbox]
    executor: LocalExecutor
    kube: KubeClient
    run: Callable[..., str]
    #: The EDI partner's SFTP server (examples/edi-partner's Connector points at it).
    partner: SftpSandbox

    def urls(self) -> dict[str, str]:
        return {"erp": self.erp.url, **{name: box.url for name, box in self.receivers.items()}}


@asynccontextmanager
async def environment(examples: Path) -> AsyncIterator[Environment]:
    """Start the control plane, nats-server, sandboxes, operator and executor; apply the examples; wait for Ready."""
    _say("== starting: kube-apiserver + etcd, nats-server, sandboxes, operator, local executor")
    nats_server = NatsServer()
    nats_server.start()
    erp = ErpSandbox()
    erp.clock = lambda: datetime.now(UTC).replace(tzinfo=None)  # the example reads ERP times as UTC
    receivers = {name: RecorderSandbox(name) for name in ("wms", "shop-api", "portal", "accounting")}
    for box in (erp, *receivers.values()):
        await box.start()
    erp.seed(
        "Item Price",
        {"name": "IP-SKU-1", "item_code": "SKU-1", "price_list": "Standard Selling", "price_list_rate": 12.5},
    )
    erp.seed("Delivery Note", {"name": "MAT-DN-00042", "customer": "Acme", "status": "To Deliver"})
    urls = {"erp": erp.url, **{name: box.url for name, box in receivers.items()}}
    partner = SftpSandbox(Path(tempfile.mkdtemp(prefix="onceflow-edi-partner-")))
    await partner.start()
    operator: subprocess.Popen[bytes] | None = None
    try:
        with ControlPlane() as cp:

            def run(*args: str, stdin: str | None = None) -> str:
                return _kubectl(cp.kubeconfig, *args, stdin=stdin)

            run("apply", "--server-side", "-k", str(examples.parent / "crds"))
            run(
                "wait",
                "--for=condition=Established",
                "crd/integrations.onceflow.io",
                "crd/connectors.onceflow.io",
                "crd/syncpolicies.onceflow.io",
            )
            run("create", "namespace", NAMESPACE)
            operator = spawn_operator(cp.kubeconfig, nats_server.url, resync_seconds=2)
            kube = KubeClient.from_environment(str(cp.kubeconfig))
            executor = LocalExecutor(kube, nats_server.url, namespace=NAMESPACE)
            stop = asyncio.Event()
            exec_task = asyncio.create_task(executor.run(stop))
            try:
                _say(f"== applying {examples} (Connectors pointed at the sandboxes and the partner's SFTP server)")
                docs = _docs(examples, urls, partner)
                run("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(docs))
                await _wait("every Integration, webhook and EDI Connector to be Ready", lambda: _all_ready(kube), 180)
                yield Environment(cp.kubeconfig, nats_server.url, erp, receivers, executor, kube, run, partner)
            finally:
                stop.set()
                await exec_task
                await kube.close()
                if operator is not None:
                    operator.terminate()
                    operator.wait(timeout=30)
    finally:
        for box in (erp, *receivers.values()):
            await box.stop()
        await partner.stop()
        shutil.rmtree(partner.root, ignore_errors=True)
        nats_server.close()


async def _all_ready(kube: KubeClient) -> bool:
    items = [
        *await kube.list("onceflow.io/v1alpha1", "Integration", NAMESPACE),
        *await kube.list("onceflow.io/v1alpha1", "Connector", NAMESPACE),
    ]
    hooks = [i for i in items if i["kind"] == "Connector" and i["spec"]["type"] in ("Webhook", "EDI")]
    flows = [i for i in items if i["kind"] == "Integration"]
    ready = [
        i
        for i in hooks + flows
        for c in i.get("status", {}).get("conditions", [])
        if c["type"] == "Ready" and c["status"] == "True"
    ]
    return bool(flows) and len(ready) == len(hooks) + len(flows)


async def run_demo(examples: Path) -> int:
    """Run the demo; return 0 when every scenario's records arrived exactly once."""
    async with environment(examples) as env:
        _say("== everything is Ready; playing the scenarios")
        sent = await _play(env.executor, env.erp, env.nats_url, env.partner)
        for scenario, what in sent:
            _say(f"   sent [{scenario}] {what}")

        def arrived() -> bool:
            dropped = _partner_files(env.partner)
            return (
                set(env.erp.effects) >= EXPECTED_ERP
                and len(env.receivers["portal"].effects) >= 2
                and bool(env.receivers["accounting"].effects)
                and any(n.startswith("997_") for n in dropped)
                and any(n.startswith("855_") for n in dropped)
            )

        await _wait("the records to arrive", arrived, within=90)
        polled = await _wait("the ERP poll in invoices-from-erp's status", lambda: _poll_status(env), within=60)
        _say(f"   polled [3 shipments, invoices] invoices-from-erp status.figures.poll: {polled}")
        await asyncio.sleep(2)  # a late double would show up now
        table = env.run("get", "onceflow", "-n", NAMESPACE)
        return await _summary(env.erp, env.receivers, env.nats_url, table, _partner_files(env.partner))


def _poll_status(env: Environment) -> str:
    """The polling Integration's `status.figures.poll` as one line, once it shows a watermark ("" before)."""
    raw = env.run("get", "integration", "invoices-from-erp", "-n", NAMESPACE, "-o", "jsonpath={.status.figures.poll}")
    poll = json.loads(raw) if raw.strip() else {}
    if not poll.get("watermark"):
        return ""
    return f"watermark {poll['watermark']}, {poll.get('polls', 0)} poll(s), {poll.get('errors', 0)} error(s)"


async def serve(examples: Path, state: Path) -> None:
    """`dev up`'s background process: bring everything up, write state.json, run until SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with environment(examples) as env:
        kubeconfig = state / "kubeconfig"
        shutil.copy(env.kubeconfig, kubeconfig)
        doc = {"pid": os.getpid(), "kubeconfig": str(kubeconfig), "nats": env.nats_url, "namespace": NAMESPACE}
        doc |= {"examples": str(examples), "sandboxes": env.urls(), "gateways": await _gateways(env)}
        doc["ediPartner"] = {"folder": str(env.partner.root), "sftp": f"127.0.0.1:{env.partner.port}"}
        (state / "state.json.tmp").write_text(json.dumps(doc, indent=2))
        (state / "state.json.tmp").rename(state / "state.json")
        await stop.wait()


async def _gateways(env: Environment) -> dict[str, dict[str, Any]]:
    """Each webhook Connector's gateway as a sender needs it: full URL (with the path), scheme, Secret."""
    gateways = {}
    for connector in await env.kube.list("onceflow.io/v1alpha1", "Connector", NAMESPACE):
        name, hook = connector["metadata"]["name"], connector["spec"].get("webhook")
        if connector["spec"]["type"] != "Webhook" or not hook:
            continue
        port = env.executor.port_of(NAMESPACE, f"{name}-gateway")
        signature = hook["signature"]
        gateways[name] = {
            "url": f"http://127.0.0.1:{port}{hook['path']}",
            "scheme": signature["scheme"],
            "secret": {"name": signature["secretRef"]["name"], "key": signature["secretRef"]["key"]},
        }
    return gateways


async def _summary(
    erp: ErpSandbox, receivers: dict[str, RecorderSandbox], nats_url: str, table: str, partner_files: list[str]
) -> int:
    import nats

    _say("\n== what arrived where (from each sandbox's own books: effects per business key)")
    doubled = 0
    for name, box in (("ERP", erp), *receivers.items()):
        effects = dict(box.effects)
        doubled += sum(1 for n in effects.values() if n > 1)
        _say(f"   {name:11s} {len(effects)} effect(s): " + ", ".join(f"{k} x{n}" for k, n in sorted(effects.items())))
    _say(f"   EDI partner {len(partner_files)} file(s) in its folder: " + ", ".join(partner_files))
    nc = await nats.connect(nats_url)
    try:
        waiting = await list_exceptions(nc.jetstream(), NAMESPACE)
    finally:
        await nc.close()
    _say(f"\n== exceptions waiting for a person ({len(waiting)}): onceflow exceptions list -n {NAMESPACE}")
    for record in waiting:
        error = textwrap.shorten(record.error, 90, placeholder=" …")
        _say(f"   #{record.sequence} {record.integration} {record.reason} at {record.step}: {error}")
    _say("\n== kubectl get onceflow -n demo")
    _say("   " + table.strip().replace("\n", "\n   "))
    missing = EXPECTED_ERP - set(erp.effects)
    edi = [n.split("_")[0] for n in partner_files]
    ok = not doubled and not missing and len(waiting) == 1 and sorted(edi) == ["855", "997"]
    lost = ", ".join(sorted(missing)) or "none"
    _say(f"\n== {'every record arrived exactly once' if ok else 'PROBLEM'}: doubled {doubled}, missing {lost}")
    return 0 if ok else 1


def main_demo(examples: Path) -> int:
    """Entry point for the CLI."""
    return asyncio.run(run_demo(examples))


def main_serve(examples: Path, state: Path) -> None:
    """Entry point of `onceflow dev serve` (what `dev up` starts in the background)."""
    asyncio.run(serve(examples, state))
