"""Why a review action could not be done: one small tree, caught by the CLI and the console.

    ReviewError                 a decision or a read cannot be done; the message says why
    ├── AlreadyDecided          someone decided this exception first (who, what, when)
    └── StreamUnreadable        a stream could not be read to its end; nothing is shown cut short

The CLI prints the message and exits 1; the console answers 409 (decisions) or 503 (reads).
"""

from __future__ import annotations

from onceflow_runner.contract.messages import ReviewDecision

__all__ = ["AlreadyDecided", "ReviewError", "StreamUnreadable"]


class ReviewError(Exception):
    """A decision cannot be made (or a record cannot be read); the message says why."""


class AlreadyDecided(ReviewError):
    """The exception has a decision already: the first one stands, and nothing more is sent."""

    def __init__(self, decision: ReviewDecision) -> None:
        super().__init__(
            f"exception {decision.exception_sequence} was already decided: "
            f"{decision.action} by {decision.who} at {decision.time}; nothing was sent"
        )
        self.decision = decision


class StreamUnreadable(ReviewError):
    """A stream stopped answering before every message was read; a partial list would mislead."""
