"""Tenancy of an Integration's trigger: a namespace consumes only its own subjects (pure).

Why: a namespace is a client (an MSP runs many). An Integration in namespace A that could set
`trigger.subject: onceflow.B.in.>` would receive B's webhooks, and a reviewer in A approving such
a record would send it back into B. The CRD cannot refuse it by itself (CEL validation rules see
`metadata.name` and `generateName`, never `metadata.namespace`), so its rule checks the form
(a literal namespace token) and this check, run by the planner (the operator's Stalled
condition), `onceflow validate` and `local run`, checks that the namespace is the Integration's own.
"""

from __future__ import annotations

from typing import Final

from onceflow_runner.contract import subjects

__all__ = ["TRIGGER_SUBJECT_PATH", "trigger_subject"]

TRIGGER_SUBJECT_PATH: Final = "spec.trigger.subject"


def trigger_subject(subject: str, namespace: str) -> tuple[str, str | None]:
    """The full trigger subject of an Integration in `namespace`, and what is wrong if it lies outside it.

    A subject written relative to the namespace (`events.invoice.posted`) is put under
    `onceflow.<namespace>.`; a full one must name this very namespace, never a wildcard or another.
    """
    root = subjects.namespace_root(namespace)
    if not subject.startswith(f"{subjects.ROOT}."):
        return f"{root}.{subject}", None
    tokens = subject.split(".")
    if len(tokens) >= 3 and tokens[1] == namespace:
        return subject, None
    return subject, (
        f"{subject!r} lies outside this Integration's namespace {namespace!r} (it names {tokens[1]!r}); "
        f"an Integration consumes only subjects under {root}. — write {root}.<area>... or the subject "
        "relative to it (e.g. events.invoice.posted)"
    )
