"""The applied intent of an object the operator owns: a hash of exactly what it would apply (pure).

Why: a level-based reconcile computes every owned object again on each pass. Sending each one
as a server-side apply that changes nothing still costs a write request (and etcd a read and
a compare) per object per resync, which at a thousand Integrations is most of the API server's
work. The hash of the desired object goes into the object itself (`onceflow.io/applied-intent`),
so comparing it with what the operator's watch already holds says whether anything would change
without asking the API server.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from onceflow_operator.api.names import INTENT_ANNOTATION

__all__ = ["INTENT_ANNOTATION", "intent_of", "with_intent"]


def _digest(obj: Mapping[str, Any]) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def with_intent(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `obj` annotated with the hash of everything else in it (the same object, the same hash)."""
    result = copy.deepcopy(dict(obj))
    meta = result.setdefault("metadata", {})
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != INTENT_ANNOTATION}
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    digest = _digest(result)
    meta["annotations"] = {**annotations, INTENT_ANNOTATION: digest}
    return result


def intent_of(obj: Mapping[str, Any] | None) -> str:
    """The intent hash an object carries ("" when none: never applied by this release, or not ours)."""
    return str((((obj or {}).get("metadata") or {}).get("annotations") or {}).get(INTENT_ANNOTATION, ""))
