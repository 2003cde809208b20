"""Helpers for the data-plane tests: sandboxes, example manifests, signed senders, ledgers."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nats
import yaml

from onceflow_operator.dev.localrun import LocalRun
from onceflow_runner.gateway.signatures import SignatureConfig, sign
from onceflow_runner.testing.sandbox import ErpSandbox, RecorderSandbox

ROOT = Path(__file__).resolve().parents[2]
CRM_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@dataclass
class Sandboxes:
    erp: ErpSandbox
    wms: RecorderSandbox
    shop: RecorderSandbox
    portal: RecorderSandbox
    accounting: RecorderSandbox

    def base_urls(self) -> dict[str, str]:
        return {
            "erp": self.erp.url,
            "wms": self.wms.url,
            "shop-api": self.shop.url,
            "portal": self.portal.url,
            "accounting": self.accounting.url,
        }

    async def stop(self) -> None:
        for server in (self.erp, self.wms, self.shop, self.portal, self.accounting):
            await server.stop()


async def start_sandboxes() -> Sandboxes:
    boxes = Sandboxes(
        ErpSandbox(),
        RecorderSandbox("wms"),
        RecorderSandbox("shop"),
        RecorderSandbox("portal"),
        RecorderSandbox("accounting"),
    )
    for server in (boxes.erp, boxes.wms, boxes.shop, boxes.portal, boxes.accounting):
        await server.start()
    return boxes


def example_documents(*folders: str) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for folder in ("common", *folders):
        for path in sorted((ROOT / "examples" / folder).glob("*.yaml")):
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def new_namespace() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


async def start_local_run(docs: list[dict[str, Any]], namespace: str, nats_url: str, boxes: Sandboxes) -> LocalRun:
    from onceflow_operator.dev.controlplane import free_port

    run = LocalRun.from_documents(
        docs, namespace=namespace, nats_url=nats_url, first_port=free_port(), base_urls=boxes.base_urls()
    )
    # Ports are handed out sequentially from a free one; re-pick any that are taken.
    for table in (run.gateways, run.runners):
        for name, (plan, _) in list(table.items()):
            table[name] = (plan, free_port())
    await asyncio.to_thread(run.start)
    return run


def crm_customer_event(tax_id: str, name: str = "Acme Industrial GmbH", **changes: Any) -> dict[str, Any]:
    data = {
        "company_name": name,
        "tax_id": tax_id,
        "email": "ap@acme.test",
        "credit_limit": 50000,
        "currency": "EUR",
        "address": {"line1": "Hauptstr. 1", "city": "Berlin", "postal_code": "10115", "country": "DE"},
    }
    data.update(changes)
    return {"type": "customer.approved", "timestamp": "2026-11-27T10:00:00Z", "data": data}


def signed_post(
    client: httpx.AsyncClient, url: str, scheme: str, secret: str, body: bytes, delivery_id: str, **cfg: Any
) -> Any:
    headers = sign(SignatureConfig(scheme, **cfg), secret, body, delivery_id=delivery_id, timestamp=int(time.time()))
    headers["Content-Type"] = "application/json"
    return client.post(url, content=body, headers=headers)


async def eventually(check: Callable[[], Any], *, within: float = 20.0, interval: float = 0.05) -> Any:
    """Wait until `check()` returns a truthy value (awaiting it if needed); fail with the last value."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {within}s; last value: {last!r}")


async def stream_messages(nats_url: str, stream: str, subject: str) -> list[Any]:
    """Every message stored on `subject` in `stream` (read directly, no consumer left behind)."""
    nc = await nats.connect(nats_url.split(","))  # one URL, or a cluster's (comma separated)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream, subjects_filter=subject)
        out = []
        if not info.state.subjects:
            return out
        seq = info.state.first_seq
        while seq <= info.state.last_seq:
            try:
                msg = await js.get_msg(stream, seq)
            except nats.js.errors.NotFoundError:
                seq += 1
                continue
            if _matches(subject, msg.subject):
                out.append(msg)
            seq += 1
        return out
    finally:
        await nc.close()


def _matches(pattern: str, subject: str) -> bool:
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token != s[i]):
            return False
    return len(p) == len(s)


async def sandbox_effects(box: ErpSandbox | RecorderSandbox) -> dict[str, int]:
    async with httpx.AsyncClient() as client:
        state = (await client.get(f"{box.url}/_sandbox/state")).json()
    return dict(state["effects"])


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def signature_headers(scheme: str, secret: str, body: bytes, delivery_id: str, **cfg: Any) -> dict[str, str]:
    return sign(SignatureConfig(scheme, **cfg), secret, body, delivery_id=delivery_id, timestamp=int(time.time()))


def session_members(sid: int) -> list[int]:
    """PIDs whose session is `sid` (what `dev up` starts lives in one session), read from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # after "pid (comm)": state, ppid, pgrp, session
            members.append(int(stat.parent.name))
    return members
