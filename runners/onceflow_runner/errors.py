"""The runner's error tree, and how each branch is settled.

    OnceflowError
    ├── PlanError            the plan cannot be run (exit code 2 at start)
    ├── PermanentFailure     the record is wrong or refused: exception queue, never retried blindly
    │   ├── InvalidRecord    canonical schema or CEL rule violated
    │   ├── RejectedByTarget 4xx other than 401/403/408/409/429 from a Connector, or a failure
    │   │                    a step's answer rules read in the answer (JSON-RPC's `error`)
    │   ├── MalformedInput   the bytes cannot be decoded (JSON, X12 envelope or counts)
    │   └── ExpressionBudgetExceeded  a CEL expression outran its deadline or memory on this record
    ├── TransientFailure     worth another delivery: nak with a delay (5xx, 429, 408, timeouts)
    │   └── CredentialsRefused  a target refused the Connector's credentials (401/403, a failed
    │                        login): the record is held with the longest backoff, not blamed
    └── WireFormatError      a message on NATS is not what its contract says (`contract.messages`);
                             the reader refuses it by name instead of guessing

Routing lives in one place (the runner's settle step) so that "nothing lost, nothing doubled"
can be read off one function.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CredentialsRefused",
    "ExpressionBudgetExceeded",
    "InvalidRecord",
    "MalformedInput",
    "OnceflowError",
    "PermanentFailure",
    "PlanError",
    "RejectedByTarget",
    "TransientFailure",
    "WireFormatError",
]


class OnceflowError(Exception):
    """Base of every error the runner raises on purpose."""


class PlanError(OnceflowError):
    """The plan is unknown, invalid, or needs a secret that is not there."""


class PermanentFailure(OnceflowError):
    """Retrying the same bytes cannot help; a person must look.

    Attributes:
        step: name of the step that failed ("" before the first step).
        reason: one CamelCase word for filters and dashboards.
    """

    reason = "PermanentFailure"

    def __init__(self, message: str, *, step: str = "", suggestion: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.step = step
        #: {"field": payload path, "value": proposed value}: offered to the reviewer, never applied here.
        self.suggestion = suggestion


class InvalidRecord(PermanentFailure):
    """The record breaks the canonical schema or a CEL rule."""

    reason = "InvalidRecord"


class RejectedByTarget(PermanentFailure):
    """A Connector answered with a 4xx that retrying will not change."""

    reason = "RejectedByTarget"

    def __init__(self, message: str, *, step: str = "", status: int = 0) -> None:
        super().__init__(message, step=step)
        self.status = status


class MalformedInput(PermanentFailure):
    """The payload cannot be decoded into a record."""

    reason = "MalformedInput"


class ExpressionBudgetExceeded(PermanentFailure):
    """A CEL expression ran past its deadline or memory on this record; its worker was killed.

    Permanent for these bytes under this plan: the same record would time out again. A person
    raises `spec.expressionTimeout` or simplifies the expression, then retries the exception.
    """

    reason = "ExpressionBudgetExceeded"


class TransientFailure(OnceflowError):
    """Another delivery may succeed; `delay` is the wait the target asked for, if any."""

    def __init__(self, message: str, *, step: str = "", delay: float | None = None) -> None:
        super().__init__(message)
        self.step = step
        self.delay = delay


class CredentialsRefused(TransientFailure):
    """A Connector's credentials were refused: a 401 or 403 (after one new login), or a failed login.

    Transient, not the record's fault: every record would fail the same way until a person fixes
    the Secret or the account, so records wait (the longest backoff of the error policy) instead
    of filling the exception queue with the target's error page. `connector` names the Connector
    for its status (AuthFailed) and for the runner's metrics.
    """

    reason = "AuthFailed"

    def __init__(self, message: str, *, connector: str, step: str = "", status: int = 0) -> None:
        super().__init__(message, step=step)
        self.connector = connector
        self.status = status


class WireFormatError(OnceflowError, ValueError):
    """A message read from NATS does not match its typed contract; the message says which and why."""
