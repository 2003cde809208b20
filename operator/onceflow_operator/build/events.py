"""Kubernetes Events that repeat are counted, not multiplied (pure).

`kubectl describe` and `kubectl get events` read a core/v1 Event's `count`, `firstTimestamp` and
`lastTimestamp` to show "(x42 over 70s)". client-go's event recorder keeps them that way: an
Event with the same source, object, type, reason and message as an earlier one updates that
Event instead of creating another. Onceflow does the same, and names an Event by a digest of
exactly those fields, so the earlier Event is found by name (one GET) even after the operator
restarted, and a different message (a different problem) is a different Event.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

__all__ = ["MAX_MESSAGE", "event_name", "new_event", "repeated_event"]

#: Longest message an Event carries (the API server's own limit for `note` is 1 kB).
MAX_MESSAGE = 1024


def event_name(involved: Mapping[str, Any], *, reason: str, message: str, warning: bool, component: str) -> str:
    """The Event's name: the object's name and a digest of what makes two occurrences the same."""
    meta = involved["metadata"]
    identity = "\x00".join(
        str(part)
        for part in (
            component,
            involved.get("apiVersion"),
            involved.get("kind"),
            meta.get("namespace"),
            meta["name"],
            meta.get("uid"),
            "Warning" if warning else "Normal",
            reason,
            message[:MAX_MESSAGE],
        )
    )
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return f"{str(meta['name'])[:236]}.{digest}"


def new_event(
    involved: Mapping[str, Any], *, reason: str, message: str, warning: bool, component: str, now: str
) -> dict[str, Any]:
    """The first occurrence: a core/v1 Event with count 1."""
    meta = involved["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": event_name(involved, reason=reason, message=message, warning=warning, component=component),
            "namespace": meta["namespace"],
        },
        "involvedObject": {
            "apiVersion": involved["apiVersion"],
            "kind": involved["kind"],
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid"),
        },
        "reason": reason,
        "message": message[:MAX_MESSAGE],
        "type": "Warning" if warning else "Normal",
        "source": {"component": component},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


def repeated_event(count: int, now: str) -> dict[str, Any]:
    """The merge patch for one more occurrence of an Event seen `count` times so far."""
    return {"count": count + 1, "lastTimestamp": now}
