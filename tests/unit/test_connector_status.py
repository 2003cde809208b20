"""A Connector's status written by two handlers: the reconcile keeps what the probe last said."""

from __future__ import annotations

from typing import Any

from onceflow_operator.controller.connector import with_probe


def cond(type_: str, status: str, reason: str) -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": reason, "observedGeneration": 1}


def test_a_reconcile_on_a_status_read_before_the_probe_writes_the_probes_conditions_again() -> None:
    read_before_probe = {"conditions": [cond("Ready", "True", "Configured"), cond("Reachable", "True", "Answered")]}
    probed = {
        "conditions": [
            cond("Ready", "False", "Stale"),  # not the probe's: never taken from it
            cond("Reachable", "True", "Answered"),
            cond("Authenticated", "False", "AuthFailed"),
        ],
        "lastProbeTime": "2026-11-30T04:00:00Z",
        "lastHttpStatus": 401,
    }
    status = with_probe(read_before_probe, probed)
    by_type = {c["type"]: c["reason"] for c in status["conditions"]}
    assert by_type == {"Ready": "Configured", "Reachable": "Answered", "Authenticated": "AuthFailed"}
    assert status["lastHttpStatus"] == 401
    # The probe's clock is the probe's to write (only when its outcome changes): a reconcile
    # writing it would make every quiet resync a write.
    assert "lastProbeTime" not in status


def test_without_a_probe_the_status_is_kept_as_read() -> None:
    read = {"conditions": [cond("Ready", "True", "Configured")], "endpoint": "http://erp"}
    assert with_probe(read, None) == read
